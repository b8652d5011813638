"""The evaluation protocol of PAPER.md section 3: reveal k entries of each held-out task, predict the rest.

For every test task and seed, k observed entries are drawn without replacement, independently per
(task, seed); the predictor (fitted once on the training rows) folds them in; metrics are computed on
the unrevealed observed entries only. Reported: RMSE, for binary matrices F1 / precision / recall /
AUC-ROC with "forgotten" = value > 0, and the precision of the predicted top 1% most forgotten.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import UnknownExampleError
from ..matrix import ForgettingMatrix
from .base import ForgettingPredictor

__all__ = ["auc_roc", "binary_metrics", "evaluate_predictor", "split_rows", "top_fraction_precision"]


def split_rows(matrix: ForgettingMatrix, test_tasks: Sequence[str]) -> tuple[ForgettingMatrix, ForgettingMatrix]:
    """``(train, test)`` matrices: ``test`` holds the rows of ``test_tasks``, ``train`` the others."""
    unknown = sorted(set(test_tasks) - set(matrix.task_ids))
    if unknown:
        raise UnknownExampleError(f"test tasks not in the matrix: {unknown}")
    if not test_tasks or len(set(test_tasks)) == len(matrix.task_ids):
        raise ValueError("test_tasks must name at least one task and leave at least one for training")
    return matrix.drop_tasks(test_tasks), matrix.select_tasks(list(test_tasks))


def auc_roc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN if one class is absent."""
    labels = labels.astype(bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based average rank of each tie group
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def binary_metrics(truth: np.ndarray, predicted: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """F1, precision, recall of ``predicted > threshold`` against ``truth > 0``, and AUC-ROC of ``predicted``."""
    actual, called = truth > 0, predicted > threshold
    true_positives = float((actual & called).sum())
    precision = true_positives / called.sum() if called.sum() else 0.0
    recall = true_positives / actual.sum() if actual.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "auc": auc_roc(actual, predicted)}


def top_fraction_precision(truth: np.ndarray, predicted: np.ndarray, fraction: float = 0.01) -> float:
    """Share of the predicted top ``fraction`` most forgotten that are in the true top ``fraction``."""
    count = max(1, int(round(fraction * len(truth))))
    predicted_top = set(np.argsort(-predicted, kind="stable")[:count].tolist())
    true_top = set(np.argsort(-truth, kind="stable")[:count].tolist())
    return len(predicted_top & true_top) / count


def row_agreement(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """How well one predicted row matches the measured row (entries NaN in either are left out):
    means, RMSE, Pearson r (None for a constant row) and top-10% precision."""
    known = ~np.isnan(truth) & ~np.isnan(predicted)
    truth, predicted = np.asarray(truth, np.float64)[known], np.asarray(predicted, np.float64)[known]
    return {
        "predicted_mean": float(predicted.mean()),
        "measured_mean": float(truth.mean()),
        "rmse": float(np.sqrt(np.mean((predicted - truth) ** 2))),
        "pearson": float(np.corrcoef(predicted, truth)[0, 1]) if truth.std() > 0 and predicted.std() > 0 else None,
        "top10pct_precision": top_fraction_precision(truth, predicted, 0.1),
    }


def _nan_stat(statistic, values) -> float:
    """``statistic`` ignoring NaN (e.g. AUC of a row with one class only); NaN if nothing is left."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(statistic(values))


def evaluate_predictor(
    predictor: ForgettingPredictor,
    matrix: ForgettingMatrix,
    test_tasks: Sequence[str],
    k: int = 30,
    seeds: Sequence[int] = tuple(range(10)),
    threshold: float | None = None,
    example_texts: Mapping[str, str] | None = None,
    task_texts: Mapping[str, Sequence[str]] | None = None,
) -> dict:
    """Fit ``predictor`` on the rows not in ``test_tasks`` and score its completion of the test rows.

    Returns ``{"predictor", "k", "fit_seconds", "fold_in_ms", "metrics": {name: mean}, "std": {...},
    "per_task": {task: {name: mean over seeds}}}``. For ``em_drop`` matrices the binary metrics use
    ``threshold`` (default 0.5, for probabilities); for NLL matrices ``threshold`` defaults to 0.
    Every predictor gets the same side information (those that do not use it ignore it): the test task's
    name, and, when given, ``example_texts`` ({example id: text}) at fit time and ``task_texts[task]``
    (a few inputs of the task) at prediction time.
    """
    train, test = split_rows(matrix, test_tasks)
    started = time.perf_counter()
    predictor.fit(train, example_texts=example_texts)
    fit_seconds = time.perf_counter() - started
    binary = matrix.metric == "em_drop"
    cut = threshold if threshold is not None else (0.5 if binary else 0.0)
    records, per_task, fold_in = [], {}, []
    for row, task in enumerate(test.task_ids):
        observed = np.flatnonzero(~np.isnan(test.values[row]))
        if k >= len(observed):
            raise ValueError(f"k={k} but task {task!r} has only {len(observed)} observed entries; use a smaller k")
        task_records = []
        for seed in seeds:
            rng = np.random.default_rng([int(seed), row])  # independent per test task and seed
            known = rng.choice(observed, size=k, replace=False)
            hidden = np.setdiff1d(observed, known)
            started = time.perf_counter()
            known_ids = [matrix.example_ids[j] for j in known]
            inputs = task_texts.get(task) if task_texts else None
            prediction = predictor.predict(known_ids, test.values[row, known], task=task, task_inputs=inputs)
            fold_in.append(time.perf_counter() - started)
            truth, guess = test.values[row, hidden].astype(np.float64), prediction[hidden].astype(np.float64)
            record = {"rmse": float(np.sqrt(np.mean((truth - guess) ** 2))), "top1pct_precision": top_fraction_precision(truth, guess)}
            record.update(binary_metrics(truth, guess, cut))
            task_records.append(record)
        per_task[task] = {name: _nan_stat(np.nanmean, [r[name] for r in task_records]) for name in task_records[0]}
        records += task_records
    names = list(records[0])
    return {
        "predictor": type(predictor).__name__,
        "config": predictor.get_config(),
        "k": k,
        "num_test_tasks": len(test.task_ids),
        "num_seeds": len(seeds),
        "fit_seconds": fit_seconds,
        "fold_in_ms": float(np.median(fold_in) * 1000),
        "metrics": {name: _nan_stat(np.nanmean, [r[name] for r in records]) for name in names},
        "std": {name: _nan_stat(np.nanstd, [r[name] for r in records]) for name in names},
        "per_task": per_task,
    }


METRIC_COLUMNS = {
    "nll_increase": ("rmse", "top1pct_precision", "auc"),
    "em_drop": ("f1", "precision", "recall", "auc", "top1pct_precision"),
}


def results_table(results: list[dict], metric: str) -> str:
    """A Markdown table of ``evaluate_predictor`` results (mean +- std over test tasks and seeds)."""
    columns = METRIC_COLUMNS[metric]
    header = "| predictor | " + " | ".join(columns) + " | fit s | fold-in ms |"
    lines = [header, "| --- |" + " ---: |" * (len(columns) + 2)]
    for result in results:
        cells = [f"{result['metrics'][c]:.4f} +- {result['std'][c]:.4f}" for c in columns]
        lines.append(
            f"| {result['predictor']} | " + " | ".join(cells) + f" | {result['fit_seconds']:.2f} | {result['fold_in_ms']:.3f} |"
        )
    return "\n".join(lines)


def default_test_tasks(matrix: ForgettingMatrix, fraction: float = 0.3, seed: int = 0) -> list[str]:
    """A seeded random ``fraction`` of the tasks (at least one, leaving at least two for training)."""
    count = min(max(1, int(round(fraction * len(matrix.task_ids)))), len(matrix.task_ids) - 2)
    if count < 1:
        raise ValueError(f"Need at least 3 tasks to hold some out; the matrix has {len(matrix.task_ids)}")
    order = np.random.default_rng(seed).permutation(len(matrix.task_ids))
    return [matrix.task_ids[i] for i in sorted(order[:count])]
