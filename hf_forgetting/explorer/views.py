"""Describing a prediction for the Space: the most forgotten examples with their text, the whole row as CSV, and
the histogram and task map as data frames the browser draws (no figure is rendered on the request path)."""

from __future__ import annotations

import numpy as np

from ..format.forgetting_csv import forgetting_csv_text
from .workspace import MAX_TOP_N, ExplorerInputError, Prediction, Workspace


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
    from ..plots import metric_label

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
    from ..analysis import low_rank_report, report_markdown

    matrix = workspace.matrix
    header = (
        f"**{workspace.source}**: {matrix.shape[0]} tasks x {matrix.shape[1]} upstream examples, metric "
        f"`{matrix.metric}`, base model `{matrix.metadata.get('base_model', '?')}`; predictor "
        f"`{type(workspace.predictor).__name__}`."
    )
    # the chance and hidden-entry R^2 refit the matrix many times: left to `hf-forgetting analyze`, off the request path
    report = low_rank_report(matrix, max_rank=min(9, min(matrix.shape)), null_seeds=0, heldout_folds=0)
    return header + "\n\n" + report_markdown(report, matrix)
