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
    """Write :func:`heatmap_figure` to `path`."""
    plt = pyplot()
    figure = heatmap_figure(matrix, title)
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def heatmap_figure(matrix: ForgettingMatrix, title: str | None = None):
    """A heatmap of the matrix, rows (tasks) and columns (examples) sorted by their means, centred at 0.

    The colour scale ends at the 99th percentile of |value|; the colour bar's arrows and its label say
    how many cells lie beyond it. Examples whose ids name a source (``source/...``) get a strip
    above the map that shows which source each column comes from."""
    plt = pyplot()
    values, rows, columns = sorted_by_means(matrix)
    finite = values[np.isfinite(values)]
    limit = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
    clipped = int((np.abs(finite) > limit).sum())
    sources = [matrix.example_ids[j].split("/")[0] if "/" in matrix.example_ids[j] else "" for j in columns]
    kinds = sorted(set(sources) - {""})
    height = max(3.0, 0.28 * len(rows) + 1.5) + (0.4 if len(kinds) > 1 else 0)
    figure = plt.figure(figsize=(10, height), constrained_layout=True)
    if len(kinds) > 1:
        grid = figure.add_gridspec(2, 1, height_ratios=[1, 12], hspace=0.02)
        axes = figure.add_subplot(grid[1])
    else:
        axes = figure.add_subplot()
    image = axes.imshow(
        np.ma.masked_invalid(values), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
    )
    axes.set_yticks(range(len(rows)), [matrix.task_ids[i] for i in rows], fontsize=8)
    axes.set_xlabel(f"upstream examples ({matrix.shape[1]}), sorted by mean forgetting")
    axes.set_ylabel("task (sorted by mean)")
    label = metric_label(matrix.metric)
    if clipped:
        label += f"\n({clipped} cells beyond +-{limit:.3g} shown at the ends)"
    figure.colorbar(image, ax=axes, label=label, extend="both" if clipped else "neither")
    if len(kinds) > 1:
        strip = figure.add_subplot(grid[0], sharex=axes)
        palette = plt.get_cmap("tab10")
        codes = np.array([[kinds.index(k) if k else -1 for k in sources]], dtype=float)
        strip.imshow(np.ma.masked_less(codes, 0), aspect="auto", cmap=palette, vmin=0, vmax=9, interpolation="nearest")
        strip.set_yticks([])
        strip.tick_params(axis="x", labelbottom=False)
        handles = [plt.Rectangle((0, 0), 1, 1, color=palette(i)) for i in range(len(kinds))]
        strip.legend(handles, kinds, title="example source", fontsize=7, title_fontsize=7,
                     loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        strip.set_title(title or f"Forgetting matrix ({matrix.shape[0]} tasks x {matrix.shape[1]} examples)")
    else:
        axes.set_title(title or f"Forgetting matrix ({matrix.shape[0]} tasks x {matrix.shape[1]} examples)")
    return figure


def metric_label(metric: str) -> str:
    """What a matrix's values measure, for axis and colour-bar labels."""
    return "increase in mean token NLL" if metric == "nll_increase" else "exact-match drop"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_r2_by_rank(report: dict, path: str | Path) -> Path:
    """R^2 of the rank-k SVD fit against k, with the simpler models as reference lines."""
    plt = pyplot()
    r2 = {int(k): value for k, value in report["r2"].items()}  # JSON turns the keys into strings
    ranks = sorted(r2)
    figure, axes = plt.subplots(figsize=(6, 4), constrained_layout=True)
    axes.plot(ranks, [r2[k] for k in ranks], "o-", label="rank-k SVD")
    null = {int(k): value for k, value in report.get("null_r2", {}).items()}
    if null:
        axes.plot(sorted(null), [null[k] for k in sorted(null)], "x--", color="tab:gray", label="rows permuted (chance)")
    heldout = {int(k): value for k, value in report.get("heldout_r2", {}).items()}
    if heldout:
        axes.plot(sorted(heldout), [heldout[k] for k in sorted(heldout)], "s-", color="tab:green", label="on hidden entries")
    for key, label, style in (
        ("additive_r2", "additive mu + a_i + b_j", "--"),
        ("column_mean_r2", "example means", ":"),
        ("row_mean_r2", "task means", "-."),
    ):
        axes.axhline(report[key], linestyle=style, color="gray", label=f"{label} ({report[key]:.2f})")
    lowest = min([0.0, report["row_mean_r2"], *heldout.values()])
    axes.set(xlabel="rank k", ylabel="R^2", ylim=(max(lowest, -1.0) - 0.02, 1.0))
    axes.set_xticks(ranks)
    axes.legend(fontsize=8, loc="lower right")
    axes.set_title(f"How low-rank is forgetting? ({report['shape'][0]} x {report['shape'][1]})")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_spectrum(report: dict, path: str | Path) -> Path:
    """The share of the matrix's squared norm each component explains, and their running total."""
    plt = pyplot()
    values = np.asarray(report["singular_values"])
    energy = values**2 / np.sum(values**2)
    components = np.arange(1, len(values) + 1)
    figure, axes = plt.subplots(figsize=(6, 4), constrained_layout=True)
    axes.bar(components, energy, color="tab:blue", label="share of this component")
    axes.plot(components, np.cumsum(energy), "o-", color="tab:red", label="cumulative share")
    axes.set(xlabel="component", ylabel="share of the squared norm", ylim=(0, 1.05))
    axes.set_xticks(components)
    axes.legend(fontsize=8, loc="center right")
    axes.set_title(f"Singular value spectrum ({report['shape'][0]} x {report['shape'][1]})")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_components(matrix: ForgettingMatrix, report: dict, path: str | Path, top: int = 20) -> Path:
    """Task loadings of the leading SVD components (the `top` largest in absolute value: every task of
    a matrix of up to `top` tasks), one panel each; the loadings come from the report
    (:func:`hf_forgetting.low_rank_report`), nothing is refitted."""
    plt = pyplot()
    count, shown = len(report["components"]), min(top, len(matrix.task_ids))
    figure, axes = plt.subplots(1, count, figsize=(4.8 * count, 0.3 * shown + 2.0), constrained_layout=True, squeeze=False)
    for k, panel in enumerate(axes[0]):
        loadings = np.asarray(report["components"][k]["task_loadings"])
        chosen = np.argsort(-np.abs(loadings))[:top][::-1]
        panel.barh([matrix.task_ids[i] for i in chosen], loadings[chosen],
                   color=["tab:red" if loadings[i] > 0 else "tab:blue" for i in chosen])
        panel.set_title(f"component {k + 1} ({report['components'][k]['energy']:.0%} of spectrum)", fontsize=9)
        panel.tick_params(axis="y", labelsize=7)
        panel.set_xlabel("task loading (> 0: forgets its examples more)", fontsize=8)
    hidden = len(matrix.task_ids) - shown
    figure.suptitle("Tasks on the leading components of the forgetting matrix"
                    + (f" ({shown} largest loadings each; {hidden} tasks not shown)" if hidden else ""), fontsize=10)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_forgetting_history(history: list[dict], path: str | Path) -> Path:
    """Forgetting over training steps: the probes' mean with its spread, and the predicted row's mean."""
    plt = pyplot()
    steps = [entry["step"] for entry in history]
    mean = np.array([entry["forgetting/probe_mean"] for entry in history])
    spread = np.array([entry["forgetting/probe_std"] for entry in history])
    figure, axes = plt.subplots(figsize=(6, 4), constrained_layout=True)
    axes.plot(steps, mean, marker="o", label="probes: mean")
    axes.fill_between(steps, mean - spread, mean + spread, alpha=0.2, label="probes: mean +- SD")
    if all("forgetting/predicted_mean" in entry for entry in history):
        axes.plot(steps, [entry["forgetting/predicted_mean"] for entry in history], marker="s", label="predicted row: mean")
        axes.plot(steps, [entry["forgetting/predicted_top1pct_mean"] for entry in history], linestyle=":",
                  label="predicted row: top 1% mean")
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("forgetting (NLL now - base NLL)")
    axes.legend(fontsize=8)
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
