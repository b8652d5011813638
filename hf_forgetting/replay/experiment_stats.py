"""The replay experiment's statistics and report: per arm, the mean held-out forgetting and task NLL; each replay arm
against random replay with the training run's task as the unit (paired t and exact sign-flip tests, 95% intervals, the
difference detectable with 80% power)."""

from __future__ import annotations

import numpy as np

from ..stats import paired_comparison
from .arms import METHODS


def top_quartile(matrix_row: np.ndarray) -> np.ndarray:
    """Positions of the quarter (at least one) of held-out examples the matrix row forgets most (ties by position).

    The top-quartile endpoint is chosen by the task's matrix row, measured in the collection and not by any arm
    of the experiment, within each seed's own held-out set: it favours no arm it compares."""
    return np.argsort(-np.asarray(matrix_row), kind="stable")[: max(1, len(matrix_row) // 4)]


def summarize_runs(runs: list[dict]) -> dict:
    """Per arm: mean held-out forgetting and task NLL; each replay arm against random replay, run-level.

    Each (task, seed) run counts once; a task's value is the mean over its seeds (see
    :func:`hf_forgetting.stats.paired_comparison`). Primary endpoint: mean forgetting of the held-out
    examples; secondary: of the quarter of each run's held-out examples that the task's matrix row forgets
    most (:func:`top_quartile`); and the task NLL, which replay must not worsen.
    """
    by: dict[str, dict[str, list[dict]]] = {}
    for run in runs:
        by.setdefault(run["method"], {}).setdefault(run["task"], []).append(run)
    tasks = sorted({run["task"] for run in runs})
    methods = [m for m in METHODS if m in by]

    def values(method, key):
        return {task: [r[key] for r in task_runs] for task, task_runs in by.get(method, {}).items()}

    table = {
        m: {
            "mean_heldout_forgetting": float(np.mean([np.mean(v) for v in values(m, "mean_heldout_forgetting").values()])),
            "task_eval_nll": float(np.mean([np.mean(v) for v in values(m, "task_eval_nll").values()])),
            "per_task": {t: float(np.mean(v)) for t, v in values(m, "mean_heldout_forgetting").items()},
            "runs": sum(len(v) for v in by[m].values()),
            # how targeted the replayed set was: its true-row mean against the pool's (None for the control)
            "replayed_true_mean": _mean_or_none([r.get("replayed_true_mean") for v in by[m].values() for r in v]),
            "pool_true_mean": _mean_or_none([r.get("pool_true_mean") for v in by[m].values() for r in v]),
        }
        for m in methods
    }
    # every replay arm against random replay; and random replay against none (does replay help at all)
    pairs = [(arm, "random") for arm in methods if arm not in ("random", "none") and "random" in by]
    pairs += [("random", "none")] if {"random", "none"} <= set(by) else []
    tests = {}
    for arm, control in pairs:
        tests[f"{arm}_vs_{control}"] = {
            "heldout_forgetting": paired_comparison(values(arm, "mean_heldout_forgetting"), values(control, "mean_heldout_forgetting")),
            "top_quartile_forgetting": paired_comparison(values(arm, "top_quartile_forgetting"), values(control, "top_quartile_forgetting")),
            "task_eval_nll": paired_comparison(values(arm, "task_eval_nll"), values(control, "task_eval_nll")),
        }
    return {"tasks": tasks, "methods": table, "tests": tests}


def _mean_or_none(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def summary_markdown(summary: dict) -> str:
    lines = [f"Held-out tasks ({len(summary['tasks'])}): {', '.join(summary['tasks'])}", ""]
    if summary.get("settings_differences"):
        lines += ["Fine-tuned otherwise than the matrix was collected (allow_settings_mismatch): "
                  + "; ".join(summary["settings_differences"]), ""]
    lines += ["| method | runs | mean forgetting of never-replayed upstream examples | task eval NLL | true-row mean of the replayed set (pool) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for method, row in summary["methods"].items():
        targeted = "" if row.get("replayed_true_mean") is None else f"{row['replayed_true_mean']:+.4f} ({row['pool_true_mean']:+.4f})"
        lines.append(f"| {method} | {row['runs']} | {row['mean_heldout_forgetting']:+.4f} | {row['task_eval_nll']:.4f} | {targeted} |")
    lines += ["", "Against random replay (and random replay against none), the task (mean over its seeds) as the unit:", "",
              "| comparison | endpoint | difference [95% CI] | paired t p | sign-flip p | tasks lower | in seed SDs | detectable (80% power) |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, endpoints in summary["tests"].items():
        for endpoint, test in endpoints.items():
            if not test or test.get("tasks", 0) == 0:
                continue
            low, high = test["ci95"]
            lines.append(
                f"| {name} | {endpoint} | {test['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}] | {test['paired_t_p']:.3g} | "
                f"{test['sign_flip_p']:.3g} | {test['tasks_lower']}/{test['tasks']} | {test['effect_in_seed_sd']:+.2f} | "
                f"{test['detectable_difference_80']:.4f} |"
            )
    return "\n".join(lines) + "\n"
