"""The summary of a collected matrix (``summary.md``): per-task mean forgetting, the rows trained on, the most
forgotten upstream examples, and the forgetting monitor's predicted rows against the measured ones."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .matrix import ForgettingMatrix

MONITOR_SECTION = "The forgetting monitor's predicted row against the measured row"


def print_outputs(output_dir) -> None:
    """Print a finished collection's summary and where its matrix, summary and figures are."""
    output_dir = Path(output_dir)
    matrix_dir, summary = output_dir / "matrix", output_dir / "summary.md"
    print(summary.read_text())
    print(f"Matrix: {matrix_dir}\nSummary: {summary}\nFigures: hf-forgetting analyze {matrix_dir}")


def monitor_summary(matrix: ForgettingMatrix) -> str:
    """A Markdown table of the monitor's predicted rows against the measured ones (empty without a monitor)."""
    rows = matrix.metadata.get("rows", {})
    checks = {task: row["monitor"] for task, row in rows.items() if row.get("monitor", {}).get("rmse") is not None}
    if not checks:
        return ""
    lines = ["", f"## {MONITOR_SECTION}", "",
             "| task | probes | probe mean | predicted mean | measured mean | RMSE | Pearson r | top-10% precision |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for task, c in checks.items():
        lines.append(f"| {task} | {c['probes']} | {c['probe_mean']:+.4f} | {c['predicted_mean']:+.4f} | {c['measured_mean']:+.4f} | "
                     f"{c['rmse']:.4f} | {'' if c['pearson'] is None else format(c['pearson'], '.3f')} | {c['top10pct_precision']:.2f} |")
    return "\n".join(lines) + "\n"


def summarize(matrix: ForgettingMatrix, texts: dict[str, str] | None = None, top: int = 5) -> str:
    """A short Markdown summary: per-task mean forgetting and the most forgotten examples."""
    values = matrix.values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows/columns (e.g. em_drop) give NaN means
        task_means, example_means = np.nanmean(values, axis=1), np.nanmean(values, axis=0)
    rows = matrix.metadata.get("rows", {})
    lines = [
        f"# Forgetting matrix: {matrix.shape[0]} tasks x {matrix.shape[1]} upstream examples",
        "",
        f"- metric: `{matrix.metric}`; base model: `{matrix.metadata.get('base_model')}`",
        f"- mean {np.nanmean(values):+.4f}, std {np.nanstd(values):.4f}; "
        f"{_percent_positive(values):.1f}% of observed entries positive (forgotten)",
        "",
        "| task | mean forgetting | % examples forgotten | trained on (of requested) | train loss | steps |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for index in np.argsort(-task_means):
        task = matrix.task_ids[index]
        info = rows.get(task, {})
        trained = f"{info.get('num_train_examples', '?')} ({info.get('num_requested_examples', '?')})"
        if info.get("hollow"):
            trained += " hollow"
        lines.append(
            f"| {task} | {task_means[index]:+.4f} | {_percent_positive(values[index]):.0f}% | {trained} | "
            f"{info.get('train_loss', float('nan')):.3f} | {info.get('train_steps', '')} |"
        )
    lines += ["", f"Most forgotten upstream examples (mean over tasks), top {top}:", ""]
    for index in np.argsort(-np.nan_to_num(example_means, nan=-np.inf))[:top]:
        example_id = matrix.example_ids[index]
        snippet = (texts or {}).get(example_id, "")[:90].replace("\n", " ").replace("|", "/")
        lines.append(f"- `{example_id}` {example_means[index]:+.4f}: {snippet}...")
    return "\n".join(lines) + "\n"


def _percent_positive(values: np.ndarray) -> float:
    observed = values[~np.isnan(values)]
    return float((observed > 0).mean() * 100) if observed.size else float("nan")
