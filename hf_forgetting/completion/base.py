"""The predictor API shared by every completion method.

A predictor is fitted once on the known rows of a forgetting matrix (``fit``); a new task is then
folded in from the forgetting measured on a few upstream examples (``predict``), which returns the
whole row aligned with the fitted matrix's ``example_ids``. ``save_pretrained`` writes
``predictor.json`` (class, hyper-parameters, example ids) and ``model.safetensors`` (arrays);
``from_pretrained`` reads them back. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..files import atomic_write, atomic_write_text
from ..matrix import ForgettingMatrix, ForgettingMatrixError, validate_ids

CONFIG_FILE = "predictor.json"
WEIGHTS_FILE = "model.safetensors"
PREDICTOR_FORMAT_VERSION = 1


class NotFittedError(RuntimeError):
    """``predict`` or ``save_pretrained`` was called before ``fit``."""


class ForgettingPredictor:
    """Base class: subclasses set ``config_fields`` and implement ``_fit``, ``_fold_in`` and ``_arrays``."""

    config_fields: ClassVar[tuple[str, ...]] = ()
    registry: ClassVar[dict[str, type[ForgettingPredictor]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("abstract", False):
            ForgettingPredictor.registry[cls.__name__] = cls

    def __init__(self):
        self.example_ids: list[str] | None = None
        self.metric: str | None = None
        self._index: dict[str, int] = {}

    # -- public API -----------------------------------------------------------------------------

    def fit(self, matrix: ForgettingMatrix) -> ForgettingPredictor:
        """Fit on every observed entry of ``matrix`` (its rows are the known tasks). Returns self."""
        if not isinstance(matrix, ForgettingMatrix):
            raise TypeError(f"fit expects a ForgettingMatrix; got {type(matrix).__name__}")
        if matrix.mask.sum() == 0:
            raise ValueError("Cannot fit on a matrix with no observed entries")
        self._set_examples(matrix.example_ids, matrix.metric)
        self._fit(matrix.values.astype(np.float64), matrix)
        return self

    def predict(self, known_example_ids: Sequence[str], known_values) -> np.ndarray:
        """The predicted forgetting of every example (``float32 [N]``, aligned with ``example_ids``)
        for a new task whose forgetting was measured on ``known_example_ids``."""
        columns, values = self.validate_known(known_example_ids, known_values)
        return self._fold_in(columns, values).astype(np.float32)

    def validate_known(self, known_example_ids: Sequence[str], known_values) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and float64 values of the known entries; clear errors for bad input."""
        if self.example_ids is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(matrix) or from_pretrained first")
        ids = list(known_example_ids)
        values = np.asarray(known_values, dtype=np.float64).reshape(-1)
        if len(ids) != len(values):
            raise ValueError(f"Got {len(ids)} known example ids but {len(values)} known values")
        if not ids:
            raise ValueError("At least one known entry is needed to fold in a new task")
        if len(ids) > len(self.example_ids):
            raise ValueError(f"Got {len(ids)} known entries but the matrix has only {len(self.example_ids)} examples")
        unknown = [i for i in ids if i not in self._index]
        if unknown:
            raise KeyError(f"{len(unknown)} known example id(s) are not in the fitted matrix, e.g. {unknown[:3]}")
        if len(set(ids)) != len(ids):
            raise ValueError("Known example ids contain duplicates")
        if not np.isfinite(values).all():
            raise ValueError("Known values must be finite numbers (no NaN or infinity)")
        return np.array([self._index[i] for i in ids], dtype=np.int64), values

    def get_config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.config_fields}

    # -- persistence ----------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``predictor.json`` and ``model.safetensors`` into ``directory``."""
        from safetensors.numpy import save_file

        if self.example_ids is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; nothing to save")
        directory = Path(directory)
        arrays = {name: np.ascontiguousarray(array) for name, array in self._arrays().items()}
        atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(arrays, tmp))
        config = {
            "format_version": PREDICTOR_FORMAT_VERSION,
            "predictor_class": type(self).__name__,
            "config": self.get_config(),
            "metric": self.metric,
            "example_ids": self.example_ids,
            "state": self._state(),
        }
        atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=1))
        return directory

    def push_to_hub(
        self,
        repo_id: str,
        token: str | None = None,
        private: bool | None = None,
        branch: str | None = None,
        commit_message: str | None = None,
    ):
        """Upload to a Hub dataset repo (``predictor.json``, ``model.safetensors`` and a dataset
        card) in one commit, replacing what the repo held. Returns the ``CommitInfo``."""
        import tempfile

        from ..hub import predictor_card, push_folder

        with tempfile.TemporaryDirectory(prefix="hf-forgetting-predictor-") as folder:
            self.save_pretrained(folder)
            message = commit_message or f"Upload {type(self).__name__}"
            card = predictor_card(self, repo_id)
            return push_folder(Path(folder), repo_id, card, token, private, branch, message)

    @classmethod
    def from_pretrained(
        cls, path_or_repo_id: str | os.PathLike, revision: str | None = None, token: str | None = None
    ) -> ForgettingPredictor:
        """Load a predictor saved with :meth:`save_pretrained` from a local folder or pushed with
        :meth:`push_to_hub` to a Hub dataset repo (call it on the base class to accept any kind)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        directory = Path(path_or_repo_id)
        if _looks_like_repo_id(path_or_repo_id) and not directory.exists():
            from ..hub import download_predictor

            directory = download_predictor(str(path_or_repo_id), (CONFIG_FILE, WEIGHTS_FILE), revision, token)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        try:
            config = json.loads(config_path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{config_path}: file not found (is this a saved predictor?)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{config_path}: not valid JSON ({error})") from None
        name = config.get("predictor_class") if isinstance(config, dict) else None
        if config.get("format_version") != PREDICTOR_FORMAT_VERSION or name not in cls.registry:
            raise ValueError(f"{config_path}: not a predictor this version can read (class {name!r})")
        subclass = cls.registry[name]
        if not issubclass(subclass, cls):
            raise ValueError(f"{config_path}: holds a {name}, not a {cls.__name__}")
        try:
            arrays = load_file(str(weights_path))
        except FileNotFoundError:
            raise FileNotFoundError(f"{weights_path}: file not found") from None
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{weights_path}: cannot read ({error})") from None
        try:
            predictor = subclass(**config["config"])
            predictor._set_examples(validate_ids(config["example_ids"], "example_ids"), config["metric"])
            predictor._load(arrays, config.get("state", {}), str(weights_path))
        except (TypeError, KeyError, AttributeError, ForgettingMatrixError) as error:
            raise ValueError(f"{directory}: malformed predictor files ({type(error).__name__}: {error})") from None
        return predictor

    # -- for subclasses -------------------------------------------------------------------------

    def _set_examples(self, example_ids: Sequence[str], metric: str) -> None:
        self.example_ids, self.metric = list(example_ids), metric
        self._index = {example_id: column for column, example_id in enumerate(self.example_ids)}

    def _fit(self, values: np.ndarray, matrix: ForgettingMatrix) -> None:
        raise NotImplementedError

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


def _looks_like_repo_id(name) -> bool:
    """``user/name`` given as a string (a ``Path`` or an absolute or relative path is a folder)."""
    return isinstance(name, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not name.startswith(".")


class BiasedFactorsPredictor(ForgettingPredictor):
    """Shared storage of models with a global mean, task / example biases and rank-``rank`` factors."""

    abstract = True
    rank: int

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
        self.mu = float(state["mu"])
        self.example_bias = self._expect(arrays, "example_bias", (n,), source)
        self.example_factors = self._expect(arrays, "example_factors", (n, self.rank), source)
        self.task_bias = self._expect(arrays, "task_bias", (None,), source)
        self.task_factors = self._expect(arrays, "task_factors", (len(self.task_bias), self.rank), source)
