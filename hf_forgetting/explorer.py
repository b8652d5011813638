"""What the forgetting-explorer Space computes, without any UI: open a matrix and a predictor,
predict a new task's row from a few measurements or (weaker) from a few of its inputs alone, and
describe the prediction (top examples with their text, histogram, the task among the known ones).

Every bad input raises ``ExplorerInputError`` with a message meant for a person.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .completion import BiasedFactorsPredictor, ForgettingPredictor, MFPredictor
from .format.matrix import HEADER_FILE
from .matrix import ForgettingMatrix

EMBEDDED_SOURCE = "embedded"
MIN_MEASURED = 5
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
        """A factor model of the known tasks, for placing a new task among them."""
        if isinstance(self.predictor, BiasedFactorsPredictor):
            return self.predictor
        with self._lock:
            if self._map is None:
                self._map = MFPredictor(rank=max(1, min(5, self.matrix.shape[0] - 1))).fit(self.matrix)
        return self._map

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


# -- opening matrices and predictors --------------------------------------------------------------


def resolve_matrix(source: str, embedded_dirs: Sequence[Path] = ()) -> ForgettingMatrix:
    """``"embedded"`` (the first of ``embedded_dirs`` that holds a matrix), a local folder or a Hub repo id."""
    source = (source or "").strip() or EMBEDDED_SOURCE
    if source == EMBEDDED_SOURCE:
        for folder in embedded_dirs:
            if (Path(folder) / HEADER_FILE).exists():
                return ForgettingMatrix.load(folder)
        raise ExplorerInputError("No embedded demo matrix found: run `make demo`, or give a Hub repo id or folder")
    path = Path(source)
    if (path / "matrix" / HEADER_FILE).exists():
        path = path / "matrix"
    if (path / HEADER_FILE).exists():
        return ForgettingMatrix.load(path)
    if path.exists() or source.startswith((".", "/")) or source.count("/") != 1:
        raise ExplorerInputError(f"{source!r} is neither a saved matrix folder nor a Hub repo id ('user/name')")
    try:
        return ForgettingMatrix.from_hub(source)
    except Exception as error:  # noqa: BLE001 - unreachable Hub, missing repo, malformed repo: all told to the user
        raise ExplorerInputError(f"Could not load the matrix {source!r} from the Hub: {_one_line(error)}") from None


def resolve_predictor(source: str | None, matrix: ForgettingMatrix) -> ForgettingPredictor:
    """A saved predictor (folder or Hub repo id) over the matrix's examples; empty: MF fitted here."""
    if not (source or "").strip():
        return MFPredictor(rank=max(1, min(5, matrix.shape[0] - 1))).fit(matrix)
    try:
        predictor = ForgettingPredictor.from_pretrained(source.strip())
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
    """Opened workspaces by (matrix source, predictor source); opening is slow, queries are fast."""

    def __init__(self, size: int = 4, embedded_dirs: Sequence[Path] = ()):
        self.size, self.embedded_dirs = size, list(embedded_dirs)
        self._items: OrderedDict[tuple[str, str], Workspace] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, matrix_source: str, predictor_source: str | None = None) -> Workspace:
        key = ((matrix_source or "").strip() or EMBEDDED_SOURCE, (predictor_source or "").strip())
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            matrix = resolve_matrix(key[0], self.embedded_dirs)
            predictor = resolve_predictor(key[1], matrix)
            texts, note = _example_texts(matrix)
            workspace = Workspace(key[0], matrix, predictor, texts, [note] if note else [])
            self._items[key] = workspace
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return workspace


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
    known = set(workspace.matrix.example_ids)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ExplorerInputError(
            f"{len(unknown)} example id(s) are not in this matrix, e.g. {unknown[:3]}; "
            f"ids look like {workspace.matrix.example_ids[0]!r}"
        )
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
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


def read_measurements_csv(path: str | Path) -> list[list[str]]:
    """Rows of a CSV with the columns ``example_id`` and ``value`` (header required)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ExplorerInputError(f"Cannot read the uploaded file: {error}") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    if "example_id" not in columns or "value" not in columns:
        raise ExplorerInputError(f"The CSV needs the columns example_id and value; it has {columns}")
    return [[row.get("example_id"), row.get("value")] for row in reader]


# -- predictions ----------------------------------------------------------------------------------


def predict_from_measurements(workspace: Workspace, ids: list[str], values: np.ndarray) -> Prediction:
    predicted = workspace.predictor.predict(ids, values)
    position = workspace.map_model().task_position(ids, values)
    return Prediction(predicted, f"{type(workspace.predictor).__name__} from {len(ids)} measured examples", position)


def predict_zero_shot(workspace: Workspace, task_inputs: list[str], encoder=None) -> Prediction:
    """The weaker estimate: known tasks' rows weighted by how similar their inputs are to the new task's."""
    task_inputs = [text.strip() for text in task_inputs if text and text.strip()]
    if not task_inputs:
        raise ExplorerInputError("Give a few example inputs of the new task, one per line")
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


def top_forgotten(workspace: Workspace, prediction: Prediction, n: int = 20) -> list[list]:
    """``[rank, example_id, predicted, text]`` of the n examples predicted to be forgotten most."""
    order = np.argsort(-prediction.values, kind="stable")[: max(1, int(n))]
    texts = workspace.example_texts or {}
    rows = []
    for rank, column in enumerate(order, start=1):
        example_id = workspace.matrix.example_ids[column]
        text = texts.get(example_id, "")
        rows.append([rank, example_id, round(float(prediction.values[column]), 5), text[:300] + ("..." if len(text) > 300 else "")])
    return rows


def prediction_csv(workspace: Workspace, prediction: Prediction, path: str | Path) -> Path:
    from .files import atomic_write_text

    lines = ["example_id,predicted"] + [f"{i},{v:.6g}" for i, v in zip(workspace.matrix.example_ids, prediction.values)]
    return atomic_write_text(path, "\n".join(lines))


def histogram_figure(workspace: Workspace, prediction: Prediction):
    from .plots import detached_figure

    figure, axes = detached_figure((6, 3.2))
    axes.hist(prediction.values, bins=40, color="#c0392b", alpha=0.8, label="new task (predicted)")
    observed = workspace.matrix.values[workspace.matrix.mask]
    axes.hist(observed, bins=40, color="#7f8c8d", alpha=0.4, density=False, weights=np.full(observed.size, len(prediction.values) / max(observed.size, 1)), label="known tasks (measured, rescaled)")
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("forgetting (increase in mean token NLL)" if workspace.matrix.metric == "nll_increase" else "exact-match drop")
    axes.set_ylabel("upstream examples")
    axes.legend(fontsize=8)
    return figure


def task_map_figure(workspace: Workspace, prediction: Prediction):
    """Known tasks and the new one on the two leading principal axes of their [bias, factors]."""
    from .plots import detached_figure

    known = workspace.map_model().known_task_positions()
    centre = known.mean(0)
    _, _, axes_t = np.linalg.svd(known - centre, full_matrices=False)
    basis = axes_t[:2].T if axes_t.shape[0] >= 2 else np.hstack([axes_t.T, np.zeros((known.shape[1], 1))])
    points, new = (known - centre) @ basis, (prediction.position - centre) @ basis
    figure, axes = detached_figure((6, 4.5))
    means = np.nanmean(workspace.matrix.values, axis=1)
    scatter = axes.scatter(points[:, 0], points[:, 1], c=means, cmap="RdBu_r", s=40, edgecolors="black", linewidths=0.5)
    for (x, y), name in zip(points, workspace.matrix.task_ids):
        axes.annotate(name[:24], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.scatter([new[0]], [new[1]], marker="*", s=260, color="gold", edgecolors="black", label="new task")
    figure.colorbar(scatter, ax=axes, label="mean forgetting of the task")
    axes.set_xlabel("task factor axis 1")
    axes.set_ylabel("task factor axis 2")
    axes.legend(fontsize=8, loc="best")
    return figure


def summary_markdown(workspace: Workspace, prediction: Prediction) -> str:
    values = prediction.values
    lines = [
        f"**{prediction.method}**",
        f"Predicted forgetting of {len(values)} upstream examples: mean {values.mean():+.4f}, "
        f"{(values > 0).mean():.0%} predicted forgotten (> 0), max {values.max():+.4f}.",
    ]
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
    # chance and hidden-entry R^2 cost ~0.6 s on the demo matrix: left to `hf-forgetting analyze`, off the request path
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
