"""Calibrating a completed row to the new task's own probes.

A predictor learns each example's effect (how forgettable it is) from the matrix's tasks, which were
all fine-tuned with one recipe. A user's fine-tune is rarely as strong: a weaker run forgets every
example less, a stronger one more. Two mechanisms keep a prediction honest whatever the strength:

- **The loading on the example effects** is part of the fold-in: the new row is fitted as
  ``c + loading * b_j (+ factors)`` on its k known entries, with a prior ``loading ~ 1`` whose strength
  (in pseudo-entries) is fitted on the matrix (how much the known tasks' own loadings vary against
  the noise of their rows): :func:`loading_prior`, :func:`fold_in_with_loading`.
- **Anchoring to the probes** (:func:`anchor_to_probes`): the completed row is shrunk toward the
  probes' mean by a weight chosen by leave-one-out over the probes (each probe predicted from the
  others). Probes whose spread the predictor cannot explain (within the measurement noise) give a
  weight near 0: every example is then predicted at the probes' mean, never beyond what was measured.
  The same leave-one-out errors give each predicted value its interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Fewer known entries leave nothing to cross-validate on: the predictor's row is used as it is.
MIN_PROBES_TO_ANCHOR = 4
Z_95 = 1.959964
MIN_LOADING_PRIOR, MAX_LOADING_PRIOR = 0.5, 5.0  # pseudo-entries
PINNED_LOADING = 1e12  # a prior this strong holds the loading at 1: the matrix's own strength


@dataclass
class CompletedRow:
    """A new task's predicted row with what the probes say about it.

    Attributes:
        values (`np.ndarray`): the predicted forgetting of every example, float32 `[N]`.
        lower (`np.ndarray`), upper (`np.ndarray`): a 95% interval for each value (NaN with fewer than 4 probes),
            from the leave-one-out errors of the probes.
        probe_weight (`float`): 1 = the predictor's own row, 0 = every example at the probes' mean.
        loo_rmse (`float`): the leave-one-out RMSE on the probes (NaN with fewer than 4).
        probe_mean (`float`), probe_standard_error (`float`): the probes' mean forgetting and its standard error.
        num_probes (`int`): how many known entries the row was completed from.
    """

    values: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    probe_weight: float
    loo_rmse: float
    probe_mean: float
    probe_standard_error: float
    num_probes: int

    @property
    def forgetting_within_noise(self) -> bool:
        """Whether the probes' mean forgetting is within two standard errors of 0."""
        return bool(abs(self.probe_mean) <= 2 * self.probe_standard_error)

    @property
    def ranking_within_noise(self) -> bool:
        """Whether the probes carry (almost) no signal about *which* examples are forgotten."""
        return self.probe_weight < 0.1

    def interval_text(self, column: int) -> str:
        """``[lower, upper]`` of one predicted value (empty without an interval)."""
        if np.isnan(self.lower[column]):
            return ""
        return f"[{self.lower[column]:+.4f}, {self.upper[column]:+.4f}]"

    def sentences(self) -> list[str]:
        """What a reader should know about the row's uncertainty, in plain sentences."""
        k = self.num_probes
        if np.isnan(self.loo_rmse):
            return [f"Completed from {k} probes, too few to estimate its error (give at least {MIN_PROBES_TO_ANCHOR})."]
        half = float(np.nanmean(self.upper - self.values))
        said = [f"Each predicted value has a 95% interval of +-{half:.4f} (from the leave-one-out error of the {k} probes)."]
        if self.forgetting_within_noise:
            said.append(f"The {k} probes show no forgetting beyond their noise: mean {self.probe_mean:+.4f}, "
                        f"standard error {self.probe_standard_error:.4f}.")
        if self.ranking_within_noise:
            said.append("The probes' differences are within what the predictor cannot explain: every example is "
                        f"predicted at their mean ({self.probe_mean:+.4f}); no example is singled out.")
        elif self.probe_weight < 1:
            said.append(f"The predictor's row is shrunk toward the probes' mean (weight {self.probe_weight:.2f}) as far as "
                        "the probes fail to support it.")
        return said


def anchor_to_probes(fold_in: Callable[[np.ndarray, np.ndarray], np.ndarray], columns: np.ndarray, values: np.ndarray,
                     anchored: bool = True) -> CompletedRow:
    """The row ``fold_in(columns, values)`` shrunk toward the probes' mean by the leave-one-out weight.

    The weight ``w`` in [0, 1] minimises the leave-one-out error of ``mean + w * (row - mean)`` over the
    probes (each probe predicted from the others, the mean of the others as its anchor). With
    ``anchored=False`` (a baseline that ignores the probes) the row is kept and only the interval is computed.
    """
    row = fold_in(columns, values)
    k = len(values)
    mean = float(values.mean())
    standard_error = float(values.std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
    if k < MIN_PROBES_TO_ANCHOR:
        nan = np.full(row.shape, np.nan)
        return CompletedRow(row.astype(np.float32), nan, nan, 1.0, float("nan"), mean, standard_error, k)
    deviations, errors = np.empty(k), np.empty(k)
    for i in range(k):
        others = np.arange(k) != i
        anchor = values[others].mean()
        deviations[i] = fold_in(columns[others], values[others])[columns[i]] - anchor
        errors[i] = values[i] - anchor
    weight = 1.0
    if anchored:
        spread = float(deviations @ deviations)
        weight = float(np.clip(deviations @ errors / spread, 0.0, 1.0)) if spread > 0 else 0.0
        row = mean + weight * (row - mean)
    loo_rmse = float(np.sqrt(np.mean((errors - weight * deviations) ** 2)))
    half_width = Z_95 * loo_rmse * np.sqrt(1 + 1 / k)
    return CompletedRow(row.astype(np.float32), (row - half_width).astype(np.float32), (row + half_width).astype(np.float32),
                        weight, loo_rmse, mean, standard_error, k)


def loading_prior(values: np.ndarray, effects: np.ndarray, fitted: np.ndarray) -> float:
    """Strength, in pseudo-entries, of the prior ``loading ~ 1`` on the example effects ``effects`` (``b_j``).

    Each known task's row is regressed on ``[1, b_j]``: the spread of its loading over the known tasks
    (tau^2, how much their fine-tunes' strengths differ) against the matrix's residual variance around
    ``fitted`` (sigma^2) gives ``sigma^2 / (tau^2 * mean(b^2))``, clipped to [0.5, 5] so that k ~ 30 probes
    of a fine-tune much weaker or stronger than any of the matrix's still set its loading.
    """
    design = np.stack([np.ones(len(effects)), effects], axis=1)
    loadings = []
    for row in values:
        observed = ~np.isnan(row)
        if observed.sum() > 2:
            loadings.append(np.linalg.lstsq(design[observed], row[observed], rcond=None)[0][1])
    residual_variance = float(np.nanmean((values - fitted) ** 2))
    effect_power = float(np.mean(effects**2))
    if len(loadings) < 2 or effect_power == 0:
        return MAX_LOADING_PRIOR
    spread = max(float(np.var(loadings)), 1e-12)
    return float(np.clip(residual_variance / (spread * effect_power), MIN_LOADING_PRIOR, MAX_LOADING_PRIOR))


def fold_in_with_loading(design: np.ndarray, target: np.ndarray, reg: float, prior_strength: float,
                         loadings: tuple[int, ...] = (1,)) -> np.ndarray:
    """Ridge parameters ``[c, loading, factors...]`` of a new task on its known entries.

    ``design`` rows are ``[1, b_j, q_j...]`` at the known columns; ``reg`` shrinks the offset and the
    factors toward 0, and ``prior_strength`` pseudo-entries shrink each coefficient in ``loadings``
    (the columns the new row scales, by default the example effects) toward 1.
    """
    dimension = design.shape[1]
    penalty = np.full(dimension, float(reg))
    prior_mean = np.zeros(dimension)
    for column in loadings:
        penalty[column] = max(prior_strength * float(np.mean(design[:, column] ** 2)), 1e-12)
        prior_mean[column] = 1.0
    gram = design.T @ design + np.diag(penalty)
    return np.linalg.solve(gram, design.T @ target + penalty * prior_mean)
