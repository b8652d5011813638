"""A new task's predicted row: from measured upstream examples, or (weaker) from a few of its inputs alone."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..format.forgetting_csv import ForgettingCsvError, read_forgetting_csv
from .workspace import (
    MAX_CSV_BYTES,
    MAX_TASK_INPUT_CHARS,
    MAX_TASK_INPUTS,
    MIN_MEASURED,
    ZERO_SHOT_TEMPERATURE,
    ExplorerInputError,
    Prediction,
    Workspace,
    one_line,
    sentence_encoder,
)


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
    """Rows ``[example_id, value]`` of an uploaded forgetting CSV (``example_id,forgetting``)."""
    try:
        if os.path.getsize(path) > MAX_CSV_BYTES:
            raise ExplorerInputError(f"The uploaded CSV is larger than {MAX_CSV_BYTES // 1_000_000} MB")
        ids, values = read_forgetting_csv(path)
    except (OSError, ForgettingCsvError) as error:
        raise ExplorerInputError(f"Cannot read the uploaded file: {one_line(error).replace(str(path), 'the CSV')}") from None
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
    new = sentence_encoder(encoder).encode(task_inputs).mean(0)
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
