"""What the forgetting-explorer Space computes, without any UI: open a matrix and a predictor,
predict a new task's row from a few measurements or (weaker) from a few of its inputs alone, and
describe the prediction (top examples with their text; a histogram and the task among the known
ones as data frames that the browser draws, so that no figure is rendered on the request path).

Every bad input raises ``ExplorerInputError`` with a message meant for a person.

What it opens: "embedded", Hub repo ids, and the local folders its operator names
(``served_folders``); any other string is refused with the same message whether or not such a
path exists, so a client learns nothing about the server's file system. Every input has a size cap.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import warnings
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .completion import BiasedFactorsPredictor, ForgettingPredictor, MFPredictor
from .completion.calibration import CompletedRow
from .format.forgetting_csv import ForgettingCsvError, forgetting_csv_text, read_forgetting_csv
from .format.matrix import HEADER_FILE
from .matrix import ForgettingMatrix

EMBEDDED_SOURCE = "embedded"
MIN_MEASURED = 5
HUB_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
MAX_CSV_BYTES = 5_000_000  # an uploaded measurement CSV (a 10^5-example matrix's whole row is ~3 MB)
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
                from .data.matrix_sources import texts_for_matrix

                try:
                    _, task_texts = texts_for_matrix(self.matrix)
                except Exception as error:  # noqa: BLE001
                    raise ExplorerInputError(
                        "Zero-shot estimates need the inputs of the matrix's known tasks, which could not be loaded "
                        f"({_one_line(error)}); measure a few examples instead"
                    ) from None
                means = np.stack([_encoder(encoder).encode(task_texts[t]).mean(0) for t in self.matrix.task_ids])
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
        raise ExplorerInputError(f"Could not load the matrix {source!r} from the Hub: {_one_line(error)}") from None


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
            from .hub.predictor_repo import download_predictor

            predictor = ForgettingPredictor.from_pretrained(download_predictor(source))
    except Exception as error:  # noqa: BLE001
        raise ExplorerInputError(f"Could not load the predictor {source!r}: {_one_line(error)}") from None
    if predictor.example_ids != matrix.example_ids:
        raise ExplorerInputError(f"The predictor {source!r} was fitted on other upstream examples than the matrix")
    return predictor


def _example_texts(matrix: ForgettingMatrix) -> tuple[dict[str, str] | None, str | None]:
    from .data.matrix_sources import example_texts

    try:
        return example_texts(matrix), None
    except Exception as error:  # noqa: BLE001 - texts are a nicety; say why they are missing
        return None, f"Upstream texts unavailable ({_one_line(error)}); showing example ids only."


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


# -- measurements ---------------------------------------------------------------------------------


def parse_measurements(rows, workspace: Workspace) -> tuple[list[str], np.ndarray]:
    """``(example ids, values)`` from rows of ``[example_id, value]`` (a table; blank rows skipped)."""
    ids, values = [], []
    for number, row in enumerate(rows, start=1):
        cells = [_cell_text(cell) for cell in row]
        if not any(cells):
            continue
        if len(cells) < 2:
            raise ExplorerInputError(f"Row {number}: expected two columns, example_id and value; got {cells}")
        try:
            value = float(cells[1])
        except ValueError:
            raise ExplorerInputError(f"Row {number}: value {cells[1]!r} is not a number") from None
        if not np.isfinite(value):
            raise ExplorerInputError(f"Row {number}: value {cells[1]!r} must be a finite number")
        ids.append(cells[0])
        values.append(value)
    if len(ids) > len(workspace.matrix.example_ids):
        raise ExplorerInputError(f"{len(ids)} measurements for a matrix of {len(workspace.matrix.example_ids)} upstream examples")
    known = set(workspace.matrix.example_ids)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ExplorerInputError(
            f"{len(unknown)} example id(s) are not in this matrix, e.g. {unknown[:3]}; "
            f"ids look like {workspace.matrix.example_ids[0]!r}"
        )
    duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise ExplorerInputError(f"Example ids measured twice: {duplicates[:5]}")
    if len(ids) < MIN_MEASURED:
        raise ExplorerInputError(f"Measure at least {MIN_MEASURED} upstream examples (about 30 is best); got {len(ids)}")
    return ids, np.array(values, dtype=np.float64)


def _cell_text(cell) -> str:
    """A table cell as text; empty cells (None, or NaN as a DataFrame holds them) become ''."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return ""
    return str(cell).strip()


def read_measurements_csv(path: str | Path) -> list[list]:
    """Rows ``[example_id, value]`` of an uploaded forgetting CSV (``example_id,forgetting``; the older
    ``example_id,value`` is read too)."""
    try:
        if os.path.getsize(path) > MAX_CSV_BYTES:
            raise ExplorerInputError(f"The uploaded CSV is larger than {MAX_CSV_BYTES // 1_000_000} MB")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an older column name is fine here
            ids, values = read_forgetting_csv(path)
    except (OSError, ForgettingCsvError) as error:
        raise ExplorerInputError(f"Cannot read the uploaded file: {_one_line(error).replace(str(path), 'the CSV')}") from None
    return [[example_id, value] for example_id, value in zip(ids, values)]


# -- predictions ----------------------------------------------------------------------------------


def predict_from_measurements(workspace: Workspace, ids: list[str], values: np.ndarray) -> Prediction:
    completed = workspace.predictor.complete_row(ids, values)
    position = workspace.map_model().task_position(ids, values)
    method = f"{type(workspace.predictor).__name__} from {len(ids)} measured examples"
    return Prediction(completed.values, method, position, completed=completed)


def predict_zero_shot(workspace: Workspace, task_inputs: list[str], encoder=None) -> Prediction:
    """The weaker estimate: known tasks' rows weighted by how similar their inputs are to the new task's."""
    task_inputs = [text.strip() for text in task_inputs if text and text.strip()]
    if not task_inputs:
        raise ExplorerInputError("Give a few example inputs of the new task, one per line")
    if len(task_inputs) > MAX_TASK_INPUTS or sum(map(len, task_inputs)) > MAX_TASK_INPUT_CHARS:
        raise ExplorerInputError(f"Give at most {MAX_TASK_INPUTS} inputs of at most {MAX_TASK_INPUT_CHARS} characters in all")
    matrix, task_embeddings = workspace.matrix, workspace.task_embeddings(encoder)
    new = _encoder(encoder).encode(task_inputs).mean(0)
    similarity = task_embeddings @ (new / (np.linalg.norm(new) + 1e-12))
    weights = np.exp((similarity - similarity.max()) / ZERO_SHOT_TEMPERATURE)
    weights /= weights.sum()
    column_means = np.nanmean(matrix.values, axis=0)
    rows = np.where(matrix.mask, matrix.values, column_means)
    model = workspace.map_model()
    position = weights @ model.known_task_positions()
    return Prediction(
        (weights @ rows).astype(np.float32),
        "zero-shot: similarity-weighted rows of the known tasks (no measurement; a weak estimate)",
        position,
        dict(zip(matrix.task_ids, similarity.round(4).tolist())),
    )


_ENCODER = None
_ENCODER_LOCK = threading.Lock()


def _encoder(encoder=None):
    global _ENCODER
    if encoder is not None:
        return encoder
    with _ENCODER_LOCK:
        if _ENCODER is None:
            from .embeddings import SentenceEncoder

            _ENCODER = SentenceEncoder()
        return _ENCODER


# -- describing a prediction ----------------------------------------------------------------------


def top_n_count(value) -> int:
    """The number of most-forgotten examples to list, from what a person typed or an API call sent (empty: 20)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 20
    try:
        number = float(value)
        if not number.is_integer() or not 1 <= number <= MAX_TOP_N:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ExplorerInputError(f"Top-N must be a whole number from 1 to {MAX_TOP_N}; got {str(value)[:50]!r}") from None
    return int(number)


def top_forgotten(workspace: Workspace, prediction: Prediction, n: int = 20) -> list[list]:
    """``[rank, example_id, predicted, 95% interval, text]`` of the n examples predicted to be forgotten most."""
    order = np.argsort(-prediction.values, kind="stable")[: min(max(1, int(n)), MAX_TOP_N)]
    texts = workspace.example_texts or {}
    rows = []
    for rank, column in enumerate(order, start=1):
        example_id = workspace.matrix.example_ids[column]
        text = texts.get(example_id, "")
        interval = prediction.completed.interval_text(int(column)) if prediction.completed else ""
        rows.append([rank, example_id, round(float(prediction.values[column]), 5), interval, text[:300] + ("..." if len(text) > 300 else "")])
    return rows


def prediction_csv_text(workspace: Workspace, prediction: Prediction) -> str:
    """The whole predicted row as CSV text (``example_id,forgetting``, what every stage reads, and its interval)."""
    completed = prediction.completed
    bounds = (completed.lower, completed.upper) if completed is not None and not np.isnan(completed.lower).all() else (None, None)
    return forgetting_csv_text(workspace.matrix.example_ids, prediction.values, *bounds)


class CsvFiles:
    """The CSV files the Space hands out, in one folder it owns: named by content (a repeated query
    writes nothing new) and only the newest kept, at most `keep` files and `max_bytes` in all (the newest
    is always kept), so that disk use stays bounded however many requests come and however wide the
    matrix (the web framework serves its own copy of each, removed by its own age limit)."""

    def __init__(self, folder: str | Path, keep: int = 64, max_bytes: int = 256 * 2**20):
        if keep < 1 or max_bytes < 1:
            raise ValueError(f"CsvFiles needs keep >= 1 and max_bytes >= 1; got {keep} and {max_bytes}")
        self.folder, self.keep, self.max_bytes = Path(folder), keep, max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, text: str, name: str = "predicted_forgetting.csv") -> Path:
        from .files import atomic_write_text

        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        path = self.folder / digest / name
        with self._lock:
            atomic_write_text(path, text)
            folders = sorted((f for f in self.folder.iterdir() if f.is_dir()), key=lambda f: f.stat().st_mtime_ns, reverse=True)
            total = 0
            for number, folder in enumerate(folders):
                total += sum(file.stat().st_size for file in folder.iterdir())
                if number > 0 and (number >= self.keep or total > self.max_bytes):
                    for file in folder.iterdir():
                        file.unlink(missing_ok=True)
                    folder.rmdir()
        return path


NEW_TASK_SERIES, KNOWN_TASKS_SERIES = "new task (predicted)", "known tasks (measured, per row)"
NEW_TASK, KNOWN_TASK = "new task", "known task"


def histogram_frame(workspace: Workspace, prediction: Prediction):
    """The predicted row and the known tasks' measured entries as two frequency polygons over one set
    of bins (the known tasks' counts scaled to one row, so that heights compare), for the browser to draw."""
    import pandas as pd

    observed = workspace.matrix.values[workspace.matrix.mask]
    bins = np.histogram_bin_edges(np.concatenate([prediction.values, observed]), bins=40)
    centres = np.round((bins[:-1] + bins[1:]) / 2, 5)  # bins are float64 (JSON without float32 digits)
    new = np.histogram(prediction.values, bins)[0].astype(float)
    known = np.histogram(observed, bins)[0] * (len(prediction.values) / max(observed.size, 1))
    return pd.DataFrame({
        "forgetting": np.concatenate([centres, centres]),
        "upstream examples": np.round(np.concatenate([new, known]), 2),
        "series": [NEW_TASK_SERIES] * len(centres) + [KNOWN_TASKS_SERIES] * len(centres),
    })


def task_map_frame(workspace: Workspace, prediction: Prediction):
    """Every known task and the new one on the two leading principal axes of their [bias, factors],
    with each task's name and mean forgetting (for tooltips), for the browser to draw."""
    import pandas as pd

    known = workspace.map_model().known_task_positions()
    centre = known.mean(0)
    _, _, axes_t = np.linalg.svd(known - centre, full_matrices=False)
    basis = axes_t[:2].T if axes_t.shape[0] >= 2 else np.hstack([axes_t.T, np.zeros((known.shape[1], 1))])
    points = np.vstack([(known - centre) @ basis, (prediction.position - centre) @ basis])
    means = np.append(np.nanmean(workspace.matrix.values, axis=1), prediction.values.mean()).astype(np.float64)
    return pd.DataFrame({
        "task factor axis 1": np.round(points[:, 0], 5),
        "task factor axis 2": np.round(points[:, 1], 5),
        "kind": [KNOWN_TASK] * len(workspace.matrix.task_ids) + [NEW_TASK],
        "task": [*workspace.matrix.task_ids, NEW_TASK],
        "mean forgetting": np.round(means, 5),
    })


def summary_markdown(workspace: Workspace, prediction: Prediction) -> str:
    from .plots import metric_label

    values = prediction.values
    lines = [
        f"**{prediction.method}**",
        f"Predicted forgetting ({metric_label(workspace.matrix.metric)}) of {len(values)} upstream examples: "
        f"mean {values.mean():+.4f}, "
        f"{(values > 0).mean():.0%} predicted forgotten (> 0), max {values.max():+.4f}.",
    ]
    if prediction.completed is not None:
        lines.append(" ".join(prediction.completed.sentences()))
    if prediction.similarities:
        nearest = sorted(prediction.similarities.items(), key=lambda item: -item[1])[:3]
        lines.append("Most similar known tasks: " + ", ".join(f"{t} ({s:.2f})" for t, s in nearest) + ".")
    lines += [f"_{note}_" for note in workspace.notes]
    return "\n\n".join(lines)


def matrix_markdown(workspace: Workspace) -> str:
    from .analysis import low_rank_report, report_markdown

    matrix = workspace.matrix
    header = (
        f"**{workspace.source}**: {matrix.shape[0]} tasks x {matrix.shape[1]} upstream examples, metric "
        f"`{matrix.metric}`, base model `{matrix.metadata.get('base_model', '?')}`; predictor "
        f"`{type(workspace.predictor).__name__}`."
    )
    # the chance and hidden-entry R^2 refit the matrix many times: left to `hf-forgetting analyze`, off the request path
    report = low_rank_report(matrix, max_rank=min(9, min(matrix.shape)), null_seeds=0, heldout_folds=0)
    return header + "\n\n" + report_markdown(report, matrix)


def _one_line(error: Exception) -> str:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(error, RepositoryNotFoundError):
        return "no such dataset repo (or it is private and no token was given)"
    if isinstance(error, RevisionNotFoundError):
        return "no such revision in the repo"
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
