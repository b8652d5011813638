"""Opening what the explorer serves: a matrix and a predictor over the same examples (a `Workspace`), from
"embedded", a Hub repo id or a folder the operator names, cached by `WorkspaceCache`."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..completion import BiasedFactorsPredictor, ForgettingPredictor, MFPredictor
from ..completion.calibration import CompletedRow
from ..format.matrix import HEADER_FILE
from ..matrix import ForgettingMatrix

EMBEDDED_SOURCE = "embedded"
MIN_MEASURED = 5
HUB_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
MAX_CSV_BYTES = 5_000_000  # an uploaded measurement CSV: room for a whole row of a paper-sized matrix
MAX_TASK_INPUTS, MAX_TASK_INPUT_CHARS = 64, 20_000  # zero-shot inputs: lines, characters in all
MAX_TOP_N = 1000
ZERO_SHOT_TEMPERATURE = 0.05  # softmax over cosine similarities of mean MiniLM embeddings


class ExplorerInputError(ValueError):
    """Input the explorer cannot use; the message says what to change."""


@dataclass
class Workspace:
    """A matrix, a predictor over the same examples, and what is known about them."""

    source: str
    matrix: ForgettingMatrix
    predictor: ForgettingPredictor
    example_texts: dict[str, str] | None
    notes: list[str] = field(default_factory=list)
    _map: BiasedFactorsPredictor | None = None
    _task_embeddings: np.ndarray | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def map_model(self) -> BiasedFactorsPredictor:
        """A factor model of the known tasks, for placing a new task among them: the predictor when it holds one
        position per task of the matrix, else MF fitted here (a predictor may have been fitted on fewer tasks)."""
        if isinstance(self.predictor, BiasedFactorsPredictor) and len(self.predictor.known_task_positions()) == len(self.matrix.task_ids):
            return self.predictor
        with self._lock:
            if self._map is None:
                self._map = MFPredictor.fitted_on(self.matrix)
        return self._map

    def zero_shot_ready(self) -> bool:
        """Whether a zero-shot query will be quick (the known tasks' inputs are loaded and encoded)."""
        return self._task_embeddings is not None

    def task_embeddings(self, encoder=None) -> np.ndarray:
        """Unit mean embedding of each known task's inputs (computed once)."""
        with self._lock:
            if self._task_embeddings is None:
                from ..data.matrix_sources import texts_for_matrix

                try:
                    _, task_texts = texts_for_matrix(self.matrix)
                except Exception as error:  # noqa: BLE001
                    raise ExplorerInputError(
                        "Zero-shot estimates need the inputs of the matrix's known tasks, which could not be loaded "
                        f"({one_line(error)}); measure a few examples instead"
                    ) from None
                means = np.stack([sentence_encoder(encoder).encode(task_texts[t]).mean(0) for t in self.matrix.task_ids])
                self._task_embeddings = means / np.linalg.norm(means, axis=1, keepdims=True)
            return self._task_embeddings


@dataclass
class Prediction:
    values: np.ndarray  # float32 [N], aligned with the matrix's example ids
    method: str
    position: np.ndarray  # the new task's [bias, factors] in the map model's space
    similarities: dict[str, float] | None = None  # zero-shot: cosine similarity to each known task
    completed: CompletedRow | None = None  # from measurements: intervals, and what the probes say


# -- opening matrices and predictors --------------------------------------------------------------


def served_folders(spec: str) -> dict[str, Path]:
    """The operator's ``"name=/path;other=/path"`` (e.g. the Space's FORGETTING_EXPLORER_FOLDERS) as a mapping."""
    folders = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(";"))):
        name, separator, folder = item.partition("=")
        if not separator or not name.strip() or not folder.strip():
            raise ValueError(f"served folders: expected name=/path; got {item!r}")
        folders[name.strip()] = Path(folder.strip())
    return folders


def _refused(source: str, folders: Mapping[str, Path]) -> ExplorerInputError:
    """The one answer to every source that is neither served nor a Hub repo id (it depends on the string alone)."""
    served = f" (served here: {', '.join(sorted(folders))})" if folders else ""
    return ExplorerInputError(f"{source[:200]!r} is not a Hub dataset repo id ('user/name') nor a folder this Space serves{served}")


def resolve_matrix(source: str, embedded_dirs: Sequence[Path] = (), folders: Mapping[str, Path] | None = None) -> ForgettingMatrix:
    """``"embedded"`` (the first of ``embedded_dirs`` that holds a matrix), the name of one of the
    operator's ``folders`` (a matrix folder or a collect output folder), or a Hub repo id."""
    source, folders = (source or "").strip() or EMBEDDED_SOURCE, folders or {}
    if source == EMBEDDED_SOURCE:
        for folder in embedded_dirs:
            if (Path(folder) / HEADER_FILE).exists():
                return ForgettingMatrix.load(folder)
        raise ExplorerInputError("No embedded demo matrix found: run `make demo`, or give a Hub repo id")
    if source in folders:
        folder = folders[source]
        return ForgettingMatrix.load(folder / "matrix" if (folder / "matrix" / HEADER_FILE).exists() else folder)
    if not HUB_REPO_ID.fullmatch(source):
        raise _refused(source, folders)
    try:
        return ForgettingMatrix.from_hub(source)
    except Exception as error:  # noqa: BLE001 - unreachable Hub, missing repo, malformed repo: all told to the user
        raise ExplorerInputError(f"Could not load the matrix {source!r} from the Hub: {one_line(error)}") from None


def resolve_predictor(source: str | None, matrix: ForgettingMatrix, folders: Mapping[str, Path] | None = None) -> ForgettingPredictor:
    """A saved predictor over the matrix's examples: the name of one of the operator's ``folders``
    or a Hub repo id (never another local path); empty: MF fitted here."""
    source, folders = (source or "").strip(), folders or {}
    if not source:
        return MFPredictor.fitted_on(matrix)
    if source not in folders and not HUB_REPO_ID.fullmatch(source):
        raise _refused(source, folders)
    try:
        if source in folders:
            predictor = ForgettingPredictor.from_pretrained(folders[source])
        else:
            from ..hub.predictor_repo import download_predictor

            predictor = ForgettingPredictor.from_pretrained(download_predictor(source))
    except Exception as error:  # noqa: BLE001
        raise ExplorerInputError(f"Could not load the predictor {source!r}: {one_line(error)}") from None
    if predictor.example_ids != matrix.example_ids:
        raise ExplorerInputError(f"The predictor {source!r} was fitted on other upstream examples than the matrix")
    return predictor


def _example_texts(matrix: ForgettingMatrix) -> tuple[dict[str, str] | None, str | None]:
    from ..data.matrix_sources import example_texts

    try:
        return example_texts(matrix), None
    except Exception as error:  # noqa: BLE001 - texts are a nicety; say why they are missing
        return None, f"Upstream texts unavailable ({one_line(error)}); showing example ids only."


class WorkspaceCache:
    """Opened workspaces by (matrix source, predictor source); opening is slow, queries are fast.

    A workspace is opened outside the cache's lock, so a slow Hub download for one client does not
    hold up the others; concurrent requests for the same sources wait for one opening."""

    def __init__(self, size: int = 4, embedded_dirs: Sequence[Path] = (), folders: Mapping[str, Path] | None = None,
                 max_bytes: int = 2 * 2**30):
        self.size, self.embedded_dirs, self.folders = size, list(embedded_dirs), dict(folders or {})
        self.max_bytes = max_bytes  # the matrices held, all together; the one just opened is always kept
        self._items: OrderedDict[tuple[str, str], Workspace] = OrderedDict()
        self._opening: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, matrix_source: str, predictor_source: str | None = None) -> Workspace:
        key = ((matrix_source or "").strip() or EMBEDDED_SOURCE, (predictor_source or "").strip())
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                workspace = self._open(key)
            finally:  # a refused source leaves nothing behind either
                with self._lock:
                    self._opening.pop(key, None)
            with self._lock:
                self._items[key] = workspace
                while len(self._items) > 1 and (len(self._items) > self.size or self.held_bytes > self.max_bytes):
                    self._items.popitem(last=False)
            return workspace

    @property
    def held_bytes(self) -> int:
        """Bytes of the matrices' values held by the cache (the opened workspaces' largest part)."""
        return sum(workspace.matrix.values.nbytes for workspace in self._items.values())

    def _open(self, key: tuple[str, str]) -> Workspace:
        matrix = resolve_matrix(key[0], self.embedded_dirs, self.folders)
        predictor = resolve_predictor(key[1], matrix, self.folders)
        texts, note = _example_texts(matrix)
        return Workspace(key[0], matrix, predictor, texts, [note] if note else [])


_ENCODER = None
_ENCODER_LOCK = threading.Lock()


def sentence_encoder(encoder=None):
    """`encoder` if given, else the MiniLM encoder, loaded once for every workspace."""
    global _ENCODER
    if encoder is not None:
        return encoder
    with _ENCODER_LOCK:
        if _ENCODER is None:
            from ..embeddings import SentenceEncoder

            _ENCODER = SentenceEncoder()
        return _ENCODER



def one_line(error: Exception) -> str:
    """An error as one short line for a person (Hub lookups named in words)."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(error, RepositoryNotFoundError):
        return "no such dataset repo (or it is private and no token was given)"
    if isinstance(error, RevisionNotFoundError):
        return "no such revision in the repo"
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
