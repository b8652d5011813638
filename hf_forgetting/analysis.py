"""How low-rank is a forgetting matrix? R^2 of truncated SVD fits and of simpler models (the fits
themselves are in :mod:`hf_forgetting.fits`)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from .files import atomic_write_text
from .fits import additive_fit, low_rank_fit, low_rank_fits, r_squared, thin_svd
from .matrix import ForgettingMatrix
from .plots import plot_components, plot_heatmap, plot_r2_by_rank, plot_spectrum

__all__ = ["additive_fit", "low_rank_fit", "low_rank_report", "r_squared", "report_markdown", "write_low_rank_report"]


# The chance and hidden-entry curves refit every rank several times: on a wider matrix they use a fixed seeded
# subsample of this many examples (the paper's analyses of its 141,871-example matrices use 10,000).
REFERENCE_COLUMNS = 10_000


def low_rank_report(
    matrix: ForgettingMatrix, max_rank: int = 9, *, top: int = 5, null_seeds: int = 3, heldout_folds: int = 3, seed: int = 0,
    reference_columns: int = REFERENCE_COLUMNS,
) -> dict:
    """R^2 by rank and of the simpler models, against chance; the singular values; the leading components.

    R^2 of a rank-k fit climbs toward 1 as k approaches the number of tasks whatever the matrix holds,
    so two references come with it: ``null_r2``, the same fits on the matrix with each row's entries
    permuted independently (mean over ``null_seeds`` permutations: the R^2 that rank alone buys), and
    ``heldout_r2``, R^2 on observed entries hidden from the fit (10% of them, mean over
    ``heldout_folds`` seeded splits: how well rank k predicts entries it did not see). Both are computed on at
    most ``reference_columns`` examples (a seeded subsample of a wider matrix; ``reference_columns`` in the result).

    Returns a JSON-serialisable dict with keys ``r2`` ({k: R^2 of the rank-k SVD fit}), ``null_r2``,
    ``heldout_r2`` (both {k: R^2}; empty when their count is 0),
    ``additive_r2`` (mu + a_task + b_example), ``rank1_multiplicative_r2`` (u_task * v_example),
    ``row_mean_r2``, ``column_mean_r2``, ``singular_values``, ``components`` (per leading component:
    its share of the spectrum and the tasks/examples with the largest loadings), ``shape``,
    ``observed_fraction`` and ``metric``.
    """
    values = matrix.values.astype(np.float64)
    observed = ~np.isnan(values)
    if observed.sum() < 2:
        raise ValueError(f"low_rank_report needs at least 2 observed entries; {matrix!r} has {observed.sum()}")
    max_rank = min(max_rank, *values.shape)
    if max_rank < 1:
        raise ValueError(f"max_rank must be at least 1; got {max_rank}")
    mu, rows, cols = additive_fit(values)
    with np.errstate(invalid="ignore"):
        row_means = np.nanmean(values, axis=1, keepdims=True)
        column_means = np.nanmean(values, axis=0, keepdims=True)
    filled = np.where(observed, values, mu + rows[:, None] + cols[None, :])  # what a full-rank impute keeps
    u, s, vt = thin_svd(filled)
    energy = s**2 / np.sum(s**2)
    components = []
    for k in range(min(3, max_rank)):
        sign = 1.0 if vt[k].sum() >= 0 else -1.0  # orient each component so its example loadings sum >= 0
        task_loadings, example_loadings = sign * u[:, k], sign * vt[k]
        components.append(
            {
                "component": k + 1,
                "energy": float(energy[k]),
                "task_loadings": [float(x) for x in task_loadings],
                "top_tasks": [matrix.task_ids[i] for i in np.argsort(-task_loadings)[:top]],
                "bottom_tasks": [matrix.task_ids[i] for i in np.argsort(task_loadings)[:top]],
                "top_examples": [matrix.example_ids[j] for j in np.argsort(-example_loadings)[:top]],
                "bottom_examples": [matrix.example_ids[j] for j in np.argsort(example_loadings)[:top]],
            }
        )
    ranks = range(1, max_rank + 1)
    r2 = low_rank_fits(values, ranks, score=lambda fit: r_squared(values, fit))
    rng = np.random.default_rng(seed)
    reference = values
    if values.shape[1] > reference_columns:
        reference = values[:, np.sort(np.random.default_rng([seed, 1]).choice(values.shape[1], reference_columns, replace=False))]
    return {
        "null_r2": _null_r2(reference, max_rank, null_seeds, rng),
        "heldout_r2": _heldout_r2(reference, max_rank, heldout_folds, rng),
        "reference_columns": reference.shape[1],
        "metric": matrix.metric,
        "shape": list(values.shape),
        "observed_fraction": float(observed.mean()),
        "r2": r2,
        "additive_r2": r_squared(values, mu + rows[:, None] + cols[None, :]),
        "rank1_multiplicative_r2": r2[1],
        "row_mean_r2": r_squared(values, np.broadcast_to(row_means, values.shape)),
        "column_mean_r2": r_squared(values, np.broadcast_to(column_means, values.shape)),
        "singular_values": [float(x) for x in s],
        "components": components,
    }


def _null_r2(values: np.ndarray, max_rank: int, seeds: int, rng: np.random.Generator) -> dict[int, float]:
    """R^2 by rank of matrices whose rows are permuted independently (structure across tasks destroyed)."""
    if seeds < 1:
        return {}
    totals = np.zeros(max_rank)
    for _ in range(seeds):
        shuffled = np.stack([rng.permutation(row) for row in values])
        totals += list(low_rank_fits(shuffled, range(1, max_rank + 1), score=functools.partial(r_squared, shuffled)).values())
    return {k: float(totals[k - 1] / seeds) for k in range(1, max_rank + 1)}


def _heldout_r2(values: np.ndarray, max_rank: int, folds: int, rng: np.random.Generator) -> dict[int, float]:
    """R^2 by rank on 10% of the observed entries, hidden from the fit (mean over seeded splits)."""
    observed = np.flatnonzero(~np.isnan(values))
    hidden_count = max(1, len(observed) // 10)
    if folds < 1 or len(observed) - hidden_count < 2:
        return {}
    totals = np.zeros(max_rank)
    for _ in range(folds):
        hidden = rng.choice(observed, size=hidden_count, replace=False)
        visible = values.copy().reshape(-1)
        visible[hidden] = np.nan
        visible = visible.reshape(values.shape)
        truth = np.full(values.size, np.nan)
        truth[hidden] = values.reshape(-1)[hidden]
        truth = truth.reshape(values.shape)
        totals += list(low_rank_fits(visible, range(1, max_rank + 1), score=functools.partial(r_squared, truth)).values())
    return {k: float(totals[k - 1] / folds) for k in range(1, max_rank + 1)}


def report_markdown(report: dict, matrix: ForgettingMatrix) -> str:
    """The report as a short Markdown page."""
    r2 = {int(k): v for k, v in report["r2"].items()}
    lines = [
        f"# Low-rank report: {report['shape'][0]} tasks x {report['shape'][1]} examples ({report['metric']})",
        "",
        f"Observed entries: {report['observed_fraction']:.1%}. R^2 = 1 - MSE / Var on observed entries"
        + (f"; chance and hidden-entry R^2 on a seeded subsample of {report['reference_columns']:,} examples."
           if report.get("reference_columns", report["shape"][1]) < report["shape"][1] else "."),
        "",
        "| model | R^2 | R^2, rows permuted (chance) | R^2 on hidden entries |",
        "| --- | ---: | ---: | ---: |",
    ]
    null = {int(k): v for k, v in report.get("null_r2", {}).items()}
    heldout = {int(k): v for k, v in report.get("heldout_r2", {}).items()}

    def cell(table, k):
        return f"{table[k]:.3f}" if k in table else ""

    lines += [f"| rank-{k} SVD | {value:.3f} | {cell(null, k)} | {cell(heldout, k)} |" for k, value in sorted(r2.items())]
    lines += [
        f"| additive (mu + a_task + b_example) | {report['additive_r2']:.3f} | | |",
        f"| rank-1 multiplicative (u_task v_example) | {report['rank1_multiplicative_r2']:.3f} | | |",
        f"| task means only | {report['row_mean_r2']:.3f} | | |",
        f"| example means only | {report['column_mean_r2']:.3f} | | |",
        "",
    ]
    for component in report["components"]:
        lines += [
            f"## Component {component['component']} ({component['energy']:.1%} of the squared spectrum)",
            "",
            f"- tasks loading most: {', '.join(component['top_tasks'])}",
            f"- tasks loading least: {', '.join(component['bottom_tasks'])}",
            f"- examples loading most: {', '.join(component['top_examples'])}",
            f"- examples loading least: {', '.join(component['bottom_examples'])}",
            "",
        ]
    return "\n".join(lines)


def write_low_rank_report(matrix: ForgettingMatrix, output_dir, max_rank: int = 9) -> dict:
    """Write ``report.json``, ``report.md`` and the plots (R^2 by rank, spectrum, heatmap, components)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = low_rank_report(matrix, max_rank=max_rank)
    atomic_write_text(output_dir / "report.json", json.dumps(report, indent=2))
    atomic_write_text(output_dir / "report.md", report_markdown(report, matrix))
    plot_r2_by_rank(report, output_dir / "r2_by_rank.png")
    plot_spectrum(report, output_dir / "spectrum.png")
    plot_heatmap(matrix, output_dir / "heatmap.png")
    plot_components(matrix, report, output_dir / "components.png")
    return report
