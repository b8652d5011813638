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

__all__ = ["auc_roc", "binary_metrics", "evaluate_on_new_rows", "evaluate_predictor", "split_rows", "top_fraction_precision"]


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
    *,
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


def evaluate_on_new_rows(
    predictor_classes: Sequence[type[ForgettingPredictor]],
    matrix: ForgettingMatrix,
    new_rows: ForgettingMatrix,
    k: int = 30,
    seeds: Sequence[int] = tuple(range(10)),
) -> dict:
    """Predictors fitted on ``matrix`` and tested on rows collected apart from it (e.g. at other fine-tuning
    strengths): k entries of each new row revealed, RMSE and top-10% precision on the rest, against two
    baselines: every entry at the revealed entries' mean, and the ranking by ``matrix``'s column means.

    A new row's task (``new_rows.metadata["row_tasks"]``, else its id) is left out of the fit when
    ``matrix`` has it. Rows are grouped by ``new_rows.metadata["row_strengths"]`` (else one group).

    Returns ``{"groups": {group: {"rows", "probe_mean_rmse", "column_mean_top10", predictor name:
    {"rmse", "top10pct_precision"}}}, "k", "seeds"}``, each value a mean over rows and seeds.
    """
    if new_rows.example_ids != matrix.example_ids:
        raise ValueError("The new rows must be over the matrix's upstream examples, in its order")
    row_tasks = new_rows.metadata.get("row_tasks") or new_rows.task_ids
    groups = new_rows.metadata.get("row_strengths") or ["all"] * len(new_rows.task_ids)
    records: dict[str, dict[str, list[float]]] = {}
    for task in dict.fromkeys(row_tasks):
        train = matrix.drop_tasks([task]) if task in matrix.task_ids else matrix
        column_means = np.nanmean(train.values, axis=0)
        fitted = [cls().fit(train) for cls in predictor_classes]
        for row_index in [i for i, t in enumerate(row_tasks) if t == task]:
            row = new_rows.values[row_index].astype(np.float64)
            group = records.setdefault(groups[row_index], {})
            observed = np.flatnonzero(~np.isnan(row))
            for seed in seeds:
                known = np.random.default_rng([int(seed), row_index]).choice(observed, size=min(k, len(observed) - 1), replace=False)
                hidden = np.setdiff1d(observed, known)
                truth = row[hidden]
                group.setdefault("probe_mean_rmse", []).append(float(np.sqrt(np.mean((truth - row[known].mean()) ** 2))))
                group.setdefault("column_mean_top10", []).append(top_fraction_precision(truth, column_means[hidden], 0.1))
                ids = [matrix.example_ids[j] for j in known]
                for predictor in fitted:
                    guess = predictor.predict(ids, row[known], task=task)[hidden].astype(np.float64)
                    name = type(predictor).__name__
                    group.setdefault(f"{name}.rmse", []).append(float(np.sqrt(np.mean((truth - guess) ** 2))))
                    group.setdefault(f"{name}.top10pct_precision", []).append(top_fraction_precision(truth, guess, 0.1))
    summary = {}
    for group, values in records.items():
        summary[group] = {"rows": sum(1 for g in groups if g == group),
                          "probe_mean_rmse": float(np.mean(values["probe_mean_rmse"])),
                          "column_mean_top10": float(np.mean(values["column_mean_top10"]))}
        for cls in predictor_classes:
            summary[group][cls.__name__] = {metric: float(np.mean(values[f"{cls.__name__}.{metric}"]))
                                            for metric in ("rmse", "top10pct_precision")}
    return {"groups": summary, "k": k, "seeds": len(seeds)}


def new_rows_table(result: dict) -> str:
    """A Markdown table of :func:`evaluate_on_new_rows`: per group, each predictor's RMSE (and its ratio to
    the probe-mean baseline) and top-10% precision, beside the baselines'."""
    groups = result["groups"]
    names = [name for name in next(iter(groups.values())) if isinstance(next(iter(groups.values()))[name], dict)]
    header = ["group", "rows", "probe mean RMSE", *[f"{n} RMSE (x probe mean)" for n in names], "column-mean top-10%",
              *[f"{n} top-10%" for n in names]]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for group, row in groups.items():
        base = row["probe_mean_rmse"]
        cells = [group, str(row["rows"]), f"{base:.4f}",
                 *[f"{row[n]['rmse']:.4f} ({row[n]['rmse'] / base:.2f})" for n in names], f"{row['column_mean_top10']:.3f}",
                 *[f"{row[n]['top10pct_precision']:.3f}" for n in names]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
