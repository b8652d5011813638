"""The predictor API shared by every completion method, and the one registry of predictors.

A predictor is fitted once on the known rows of a forgetting matrix (``fit``); a new task is then
folded in from the forgetting measured on a few upstream examples (``predict``), which returns the
whole row aligned with the fitted matrix's ``example_ids``. Every predictor takes the same arguments:
side information that some methods use (example texts, the new task's name or inputs, the model a
slice belongs to) is passed by keyword to all of them, and the others ignore it, so callers never
branch on the class. ``save_pretrained`` / ``from_pretrained`` use the format of
:mod:`hf_forgetting.format.predictor`; nothing is pickled.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ForgettingMatrixError, PredictorFormatError, RepoKindError, UnknownExampleError
from ..files import atomic_write, atomic_write_text
from ..format.matrix import HEADER_FILE as MATRIX_HEADER_FILE
from ..format.predictor import CONFIG_FILE, WEIGHTS_FILE, PredictorHeader, finite_number, read_arrays, write_arrays
from ..matrix import ForgettingMatrix
from .calibration import PINNED_LOADING, CompletedRow, anchor_to_probes

# Forgetting is a difference of mean token NLLs (nats) or of exact match: no measurement comes near this.
MAX_KNOWN_MAGNITUDE = 1e6

# name -> class; every concrete subclass registers itself under its ``name``.
PREDICTORS: dict[str, type[ForgettingPredictor]] = {}


class NotFittedError(RuntimeError):
    """``predict`` or ``save_pretrained`` was called before ``fit``."""


def predictor_class(name: str) -> type[ForgettingPredictor]:
    """The predictor registered as ``name`` (e.g. ``"mf"``) or with that class name (``"MFPredictor"``)."""
    by_class = {cls.__name__: cls for cls in PREDICTORS.values()}
    found = PREDICTORS.get(name) or by_class.get(name)
    if found is None:
        raise ValueError(f"Unknown predictor {name!r}; choose from {sorted(PREDICTORS)}")
    return found


class ForgettingPredictor:
    """Base class of the predictors.

    Subclasses set `name` (their registry key) and `config_fields`, and implement `_fit`, `_fold_in`,
    `_arrays` and `_load` (and `_state` for small JSON state).
    """

    name: ClassVar[str | None] = None
    config_fields: ClassVar[tuple[str, ...]] = ()
    # False for baselines that ignore the known entries: their row is not shrunk toward them
    anchors_to_probes: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            PREDICTORS[cls.name] = cls

    def __init__(self):
        self.example_ids: list[str] | None = None
        self.metric: str | None = None
        # what the fitted matrix measured (base_model, score_max_length), for users to check against
        self.source: dict = {}
        self._index: dict[str, int] = {}

    # -- public API -----------------------------------------------------------------------------

    def fit(
        self,
        data: ForgettingMatrix | Mapping[str, ForgettingMatrix],
        *,
        example_texts: Mapping[str, str] | None = None,
    ) -> ForgettingPredictor:
        """Fit on every observed entry of the known rows.

        Args:
            data (`ForgettingMatrix` or `Mapping[str, ForgettingMatrix]`):
                The known tasks' rows; several matrices (one per base model or checkpoint, over the same
                examples) only for predictors that model them jointly (`TensorPredictor`).
            example_texts (`Mapping[str, str]`, *optional*):
                Text of each upstream example, for predictors that use it (default: reloaded from the
                sources the matrix's metadata names); ignored by the others.

        Returns:
            `self`.
        """
        matrix = self._one_matrix(data)
        if matrix.mask.sum() == 0:
            raise ValueError("Cannot fit on a matrix with no observed entries")
        self._set_examples(matrix.example_ids, matrix.metric)
        settings = matrix.metadata.get("settings") or {}
        self.source = {"base_model": matrix.metadata.get("base_model"),
                       "score_max_length": (settings.get("collect") or {}).get("score_max_length")}
        self._fit(matrix.values.astype(np.float64), matrix)
        return self

    def predict(
        self,
        known_example_ids: Sequence[str],
        known_values,
        *,
        task: str | None = None,
        model: str | None = None,
        task_inputs: Sequence[str] | None = None,
        calibrated: bool = True,
    ) -> np.ndarray:
        """The predicted forgetting of every example for a new task measured on a few of them.

        The row is calibrated to the known entries (see :mod:`hf_forgetting.completion.calibration`):
        its loading on the example effects is the new task's own, and it is shrunk toward the known
        entries' mean as far as they fail to support it. :meth:`complete_row` also returns intervals.

        Args:
            known_example_ids (`Sequence[str]`):
                Upstream examples whose forgetting was measured for the new task.
            known_values (`Sequence[float]`):
                Their measured forgetting.
            task (`str`, *optional*):
                The new task's name, for predictors that use it (a task slice of `TensorPredictor`, or the
                task whose inputs `EmbeddingSimilarityPredictor` reloads); ignored by the others.
            model (`str`, *optional*):
                The base model or checkpoint the row belongs to (`TensorPredictor`); ignored by the others.
            task_inputs (`Sequence[str]`, *optional*):
                A few inputs of the new task (`EmbeddingSimilarityPredictor`); ignored by the others.
            calibrated (`bool`, *optional*, defaults to `True`):
                `False`: the row at the matrix's strength (loading 1 on the example effects, not shrunk toward
                the known entries): what replay orders examples by. Calibration fits a new row's values; a
                loading fitted to probes measured early in a run (the online switch) weakens the example
                effects in the ordering (docs/results/replay-experiment.md).

        Returns:
            `np.ndarray` of float32 `[N]`, aligned with `example_ids`.
        """
        if not calibrated:
            columns, values = self.validate_known(known_example_ids, known_values)
            fold_in = self._row_function(task=task, model=model, task_inputs=task_inputs, calibrated=False)
            return np.asarray(fold_in(columns, values), dtype=np.float32)
        return self.complete_row(known_example_ids, known_values, task=task, model=model, task_inputs=task_inputs).values

    def complete_row(
        self,
        known_example_ids: Sequence[str],
        known_values,
        *,
        task: str | None = None,
        model: str | None = None,
        task_inputs: Sequence[str] | None = None,
    ) -> CompletedRow:
        """The predicted row (as :meth:`predict`) with a 95% interval for each value, the weight given to
        the predictor against the known entries' mean, and whether the known entries show forgetting
        beyond their noise. Same arguments as :meth:`predict`."""
        columns, values = self.validate_known(known_example_ids, known_values)
        fold_in = self._row_function(task=task, model=model, task_inputs=task_inputs)
        return anchor_to_probes(fold_in, columns, values, anchored=self.anchors_to_probes)

    def _row_function(self, *, task=None, model=None, task_inputs=None, calibrated=True):
        """``(columns, values) -> row`` for a new task with this side information (default: `_fold_in`, with the
        new task's loading on the example effects held at 1 when not ``calibrated``, for the predictors that fit one)."""
        if not calibrated and hasattr(self, "loading_prior"):
            return lambda columns, values: self._fold_in(columns, values, loading_prior=PINNED_LOADING)
        return self._fold_in

    def column_indices(self, example_ids: Sequence[str]) -> np.ndarray:
        """Column indices of ``example_ids`` in the fitted matrix."""
        self._check_fitted()
        unknown = [i for i in example_ids if i not in self._index]
        if unknown:
            raise UnknownExampleError(f"{len(unknown)} example id(s) are not in the fitted matrix, e.g. {unknown[:3]}")
        return np.array([self._index[i] for i in example_ids], dtype=np.int64)

    def validate_known(self, known_example_ids: Sequence[str], known_values) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and float64 values of the known entries; clear errors for bad input."""
        self._check_fitted()
        ids = list(known_example_ids)
        values = np.asarray(known_values, dtype=np.float64).reshape(-1)
        if len(ids) != len(values):
            raise ValueError(f"Got {len(ids)} known example ids but {len(values)} known values")
        if not ids:
            raise ValueError("At least one known entry is needed to fold in a new task")
        if len(ids) > len(self.example_ids):
            raise ValueError(f"Got {len(ids)} known entries but the matrix has only {len(self.example_ids)} examples")
        columns = self.column_indices(ids)
        if len(set(ids)) != len(ids):
            raise ValueError("Known example ids contain duplicates")
        if not np.isfinite(values).all():
            raise ValueError("Known values must be finite numbers (no NaN or infinity)")
        if np.abs(values).max() > MAX_KNOWN_MAGNITUDE:  # e.g. 1e308: every prediction would overflow to inf
            raise ValueError(f"Known values must be forgetting measurements, |value| <= {MAX_KNOWN_MAGNITUDE:g}; "
                             f"got {values[np.argmax(np.abs(values))]:g}")
        return columns, values

    def get_config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.config_fields}

    # -- persistence ----------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `predictor.json` and `model.safetensors` into `directory`, each atomically."""
        self._check_fitted()
        directory = Path(directory)
        if (directory / MATRIX_HEADER_FILE).exists():
            raise RepoKindError(f"{directory}: holds a forgetting matrix; save the predictor into another folder")
        arrays = self._arrays()
        atomic_write(directory / WEIGHTS_FILE, lambda tmp: write_arrays(tmp, arrays))
        header = PredictorHeader(type(self).__name__, self.get_config(), self.metric, self.example_ids, self._state(), self.source)
        atomic_write_text(directory / CONFIG_FILE, header.to_json())
        return directory

    def push_to_hub(
        self,
        repo_id: str,
        token: str | None = None,
        private: bool | None = None,
        branch: str | None = None,
        commit_message: str | None = None,
    ):
        """Upload to a Hub dataset repo (`predictor.json`, `model.safetensors` and a card) in one commit.

        The three files replace those of an earlier predictor; nothing is deleted, and a repo that holds
        a matrix is refused. Returns the `CommitInfo`.
        """
        from ..hub.cards import predictor_card
        from ..hub.predictor_repo import push_predictor_folder

        with tempfile.TemporaryDirectory(prefix="hf-forgetting-predictor-") as folder:
            self.save_pretrained(folder)
            card = predictor_card(type(self).__name__, self.get_config(), self.metric, len(self.example_ids), repo_id)
            message = commit_message or f"Upload {type(self).__name__}"
            return push_predictor_folder(Path(folder), repo_id, card, token=token, private=private, branch=branch,
                                         commit_message=message)

    @classmethod
    def from_pretrained(
        cls, path_or_repo_id: str | os.PathLike, revision: str | None = None, token: str | None = None
    ) -> ForgettingPredictor:
        """Load a predictor from a folder written by `save_pretrained` or a Hub repo written by `push_to_hub`.

        Call it on the base class to accept any kind, or on a subclass to require that kind. A string
        `user/name` that is not an existing folder is a Hub repo id.
        """
        directory = Path(path_or_repo_id)
        if _looks_like_repo_id(path_or_repo_id) and not directory.exists():
            from ..hub.predictor_repo import download_predictor

            directory = download_predictor(str(path_or_repo_id), revision, token)
        config_path = directory / CONFIG_FILE
        try:
            text = config_path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{config_path}: file not found (is this a saved predictor?)") from None
        header = PredictorHeader.from_json(text, str(config_path))
        try:
            subclass = predictor_class(header.predictor_class)
        except ValueError:
            raise PredictorFormatError(f"{config_path}: not a predictor this version can read (class {header.predictor_class!r})") from None
        if not issubclass(subclass, cls):
            raise PredictorFormatError(f"{config_path}: holds a {subclass.__name__}, not a {cls.__name__}")
        arrays = read_arrays(directory / WEIGHTS_FILE)
        try:
            predictor = subclass(**header.config)
            predictor._set_examples(header.example_ids, header.metric)
            predictor.source = dict(header.source)
            predictor._load(arrays, header.state, str(directory / WEIGHTS_FILE))
        except (TypeError, KeyError, AttributeError, ValueError, ForgettingMatrixError) as error:
            raise PredictorFormatError(f"{directory}: malformed predictor files ({type(error).__name__}: {error})") from None
        return predictor

    # -- for subclasses -------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if self.example_ids is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(matrix) or from_pretrained first")

    def _one_matrix(self, data) -> ForgettingMatrix:
        """The single matrix this predictor fits (a mapping of one model's matrix is accepted)."""
        if isinstance(data, Mapping) and len(data) == 1:
            data = next(iter(data.values()))
        if isinstance(data, Mapping):
            raise TypeError(f"{type(self).__name__} fits one matrix; TensorPredictor fits several models jointly")
        if not isinstance(data, ForgettingMatrix):
            raise TypeError(f"fit expects a ForgettingMatrix; got {type(data).__name__}")
        return data

    def _set_examples(self, example_ids: Sequence[str], metric: str) -> None:
        self.example_ids, self.metric = list(example_ids), metric
        self._index = {example_id: column for column, example_id in enumerate(self.example_ids)}

    def _fit(self, values: np.ndarray, matrix: ForgettingMatrix) -> None:
        raise NotImplementedError

    def _fitted_rank(self, values: np.ndarray) -> int:
        """The rank fitted: `self.rank`, reduced to what the matrix can hold (a larger rank is unidentified
        and only costs time and memory). `self.rank` stays what was asked, so a refit on a larger matrix
        gets it back."""
        if self.rank > min(values.shape):
            warnings.warn(f"rank {self.rank} reduced to {min(values.shape)}: a {values.shape[0]} x {values.shape[1]} "
                          "matrix holds no more", stacklevel=4)
        return min(self.rank, *values.shape)

    def _fold_in(self, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        """Small JSON-able fitted state beside the arrays (e.g. the global mean)."""
        return {}

    def _load(self, arrays: dict[str, np.ndarray], state: dict[str, Any], source: str) -> None:
        raise NotImplementedError

    def _expect(self, arrays: dict[str, np.ndarray], name: str, shape: tuple, source: str) -> np.ndarray:
        """``arrays[name]`` checked for presence, shape (None = any) and finiteness."""
        if name not in arrays:
            raise ValueError(f"{source}: missing tensor {name!r}")
        array = arrays[name]
        if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
            raise ValueError(f"{source}: tensor {name!r} has shape {array.shape}, expected {shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{source}: tensor {name!r} contains NaN or infinity")
        return array.astype(np.float64)

    def _finite_state(self, state: dict[str, Any], name: str, source: str, positive: bool = False) -> float:
        """``state[name]`` as a finite float (> 0 with ``positive``: a variance, a prior's strength)."""
        value = finite_number(state.get(name), f"state {name!r}", source)
        if positive and not value > 0:
            raise ValueError(f"{source}: state {name!r} must be > 0; got {value}")
        return value


def _looks_like_repo_id(name) -> bool:
    """``user/name`` given as a string (a ``Path`` or an absolute or relative path is a folder)."""
    return isinstance(name, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not name.startswith(".")


class BiasedFactorsPredictor(ForgettingPredictor):
    """Shared storage of models with a global mean, task / example biases and rank-`rank` factors.

    Such a model also places a new task among the known ones: `task_position` is its `[bias, factors]`.
    """

    rank: int

    def task_parameters(self, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def task_position(self, known_example_ids: Sequence[str], known_values) -> np.ndarray:
        """The new task's `[bias, factors]` in the space of the known tasks' `[task_bias, task_factors]`."""
        columns, values = self.validate_known(known_example_ids, known_values)
        return self.task_parameters(columns, values)

    @property
    def fitted_rank(self) -> int:
        """Factors actually fitted: `rank`, or fewer where the matrix could not hold more."""
        self._check_fitted()
        return self.example_factors.shape[1]

    def known_task_positions(self) -> np.ndarray:
        """`[bias, factors]` of each known task, one row each."""
        return np.hstack([self.task_bias[:, None], self.task_factors])

    def _arrays(self):
        return {
            "example_bias": self.example_bias,
            "example_factors": self.example_factors,
            "task_bias": self.task_bias,
            "task_factors": self.task_factors,
        }

    def _state(self):
        return {"mu": self.mu}

    def _load(self, arrays, state, source):
        n = len(self.example_ids)
        self.mu = self._finite_state(state, "mu", source)
        self.example_bias = self._expect(arrays, "example_bias", (n,), source)
        self.example_factors = self._expect(arrays, "example_factors", (n, None), source)
        if not 1 <= self.example_factors.shape[1] <= self.rank:
            raise ValueError(f"{source}: tensor 'example_factors' has {self.example_factors.shape[1]} factors; rank is {self.rank}")
        self.task_bias = self._expect(arrays, "task_bias", (None,), source)
        self.task_factors = self._expect(arrays, "task_factors", (len(self.task_bias), self.example_factors.shape[1]), source)
