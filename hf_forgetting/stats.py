"""Run-level statistics for comparing training arms: paired differences over tasks, with exact tests.

The unit of analysis is the training run, summarised per task (mean over its seeds), never the
example: the examples of one run share its training noise. For an arm against a control, each task
gives one difference; reported are the mean difference with a t-based 95% confidence interval, the
paired t-test, the exact sign-flip permutation test (every one of the 2^n sign patterns for n <= 20
tasks, a seeded Monte Carlo draw beyond), the effect in units of the control's seed-to-seed standard
deviation, and the smallest difference the comparison could detect with 80% power.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

EXACT_LIMIT = 20


def sign_flip_p(differences: Sequence[float], draws: int = 100_000, seed: int = 0) -> float:
    """Two-sided p-value of the sign-flip permutation test of mean(differences) = 0.

    Exact (all 2^n sign patterns) for n <= 20; otherwise `draws` random patterns (seeded).
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    observed = abs(d.mean())
    if d.size <= EXACT_LIMIT:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(draws, d.size))
    means = np.abs(signs @ d) / d.size
    return float(np.mean(means >= observed - 1e-15))


def paired_comparison(
    arm: Mapping[str, Sequence[float]], control: Mapping[str, Sequence[float]], alpha: float = 0.05
) -> dict:
    """Compare an arm with a control over the tasks both ran (``{task: [value per seed]}``).

    Returns ``tasks``, ``seeds`` (per task, the fewest), ``mean_difference`` (arm - control, averaged over
    seeds then tasks), ``ci95`` ``[low, high]``, ``paired_t_p``, ``sign_flip_p``, ``tasks_lower`` (tasks
    where the arm is below the control), ``seed_sd`` (pooled within-task standard deviation of the
    control over seeds; NaN with one seed), ``effect_in_seed_sd`` and ``detectable_difference_80``
    (the smallest true mean difference a paired t-test at ``alpha`` finds with 80% power, from the
    spread of the task differences).
    """
    from scipy import stats

    tasks = sorted(set(arm) & set(control))
    differences = np.array([np.mean(arm[t]) - np.mean(control[t]) for t in tasks], dtype=np.float64)
    n = len(differences)
    result = {"tasks": n, "seeds": min((min(len(arm[t]), len(control[t])) for t in tasks), default=0)}
    if n == 0:
        return result | {"mean_difference": float("nan")}
    mean = float(differences.mean())
    sd = float(differences.std(ddof=1)) if n > 1 else float("nan")
    if n > 1 and sd > 0:
        half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n)
        t_p = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
        detectable = float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n))
    else:
        half = t_p = detectable = float("nan")
    seed_sd = _pooled_seed_sd([control[t] for t in tasks])
    return result | {
        "mean_difference": mean,
        "ci95": [mean - half, mean + half],
        "paired_t_p": t_p,
        "sign_flip_p": sign_flip_p(differences),
        "tasks_lower": int(np.sum(differences < 0)),
        "seed_sd": seed_sd,
        "effect_in_seed_sd": mean / seed_sd if seed_sd and math.isfinite(seed_sd) else float("nan"),
        "detectable_difference_80": detectable,
    }


def _pooled_seed_sd(groups: Sequence[Sequence[float]]) -> float:
    """Pooled within-group standard deviation (groups with one value contribute nothing)."""
    squares = sum(float(np.sum((np.asarray(g) - np.mean(g)) ** 2)) for g in groups)
    dof = sum(len(g) - 1 for g in groups)
    return math.sqrt(squares / dof) if dof > 0 else float("nan")
