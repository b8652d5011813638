"""Figures of forgetting matrices (matplotlib, written to files; no display needed)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .matrix import ForgettingMatrix


def sorted_by_means(matrix: ForgettingMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, row_order, column_order)`` with rows and columns sorted by decreasing mean (NaN ignored)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows or columns
        row_means = np.nan_to_num(np.nanmean(matrix.values, axis=1), nan=-np.inf)
        column_means = np.nan_to_num(np.nanmean(matrix.values, axis=0), nan=-np.inf)
    rows = np.argsort(-row_means, kind="stable")
    columns = np.argsort(-column_means, kind="stable")
    return matrix.values[rows][:, columns], rows, columns


def plot_heatmap(matrix: ForgettingMatrix, path: str | Path, title: str | None = None) -> Path:
    """A heatmap of the matrix, rows (tasks) and columns (examples) sorted by their means, centred at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, rows, _ = sorted_by_means(matrix)
    limit = float(np.nanpercentile(np.abs(values), 99)) if np.isfinite(values).any() else 1.0
    height = max(3.0, 0.28 * len(rows) + 1.5)
    figure, axes = plt.subplots(figsize=(10, height), constrained_layout=True)
    image = axes.imshow(
        np.ma.masked_invalid(values), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
    )
    axes.set_yticks(range(len(rows)), [matrix.task_ids[i] for i in rows], fontsize=8)
    axes.set_xlabel(f"upstream examples ({matrix.shape[1]}), sorted by mean forgetting")
    axes.set_ylabel("task (sorted by mean)")
    label = "increase in mean token NLL" if matrix.metric == "nll_increase" else "exact-match drop"
    figure.colorbar(image, ax=axes, label=label)
    axes.set_title(title or f"Forgetting matrix ({matrix.shape[0]} tasks x {matrix.shape[1]} examples)")
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
