"""The additive model: z_ij ~ mu + b_task + b_example, the paper's first completion baseline."""

from __future__ import annotations

import numpy as np

from ..fits import additive_fit
from .base import ForgettingPredictor


class AdditivePredictor(ForgettingPredictor):
    """`mu + b_i + b_j`: each example's forgettability plus the new task's strength.

    Args:
        reg (`float`, *optional*, defaults to `1.0`):
            Ridge shrinkage of the new task's offset toward 0 (in units of known entries).
    """

    name = "additive"
    config_fields = ("reg",)

    def __init__(self, reg: float = 1.0):
        super().__init__()
        if reg < 0:
            raise ValueError(f"reg must be >= 0; got {reg}")
        self.reg = float(reg)

    def _fit(self, values, matrix):
        self.mu, _, self.example_bias = additive_fit(values)

    def task_offset(self, columns: np.ndarray, values: np.ndarray) -> float:
        """The new task's offset b_i: shrunken mean of its known residuals."""
        residual = values - self.mu - self.example_bias[columns]
        return float(residual.sum() / (len(residual) + self.reg))

    def _fold_in(self, columns, values):
        return self.mu + self.task_offset(columns, values) + self.example_bias

    def _arrays(self):
        return {"example_bias": self.example_bias}

    def _state(self):
        return {"mu": self.mu}

    def _load(self, arrays, state, source):
        self.mu = self._finite_state(state, "mu", source)
        self.example_bias = self._expect(arrays, "example_bias", (len(self.example_ids),), source)


class ColumnMeanPredictor(ForgettingPredictor):
    """Baseline that ignores the known entries: each example's mean forgetting over the training tasks."""

    name = "column_mean"

    def _fit(self, values, matrix):
        with np.errstate(invalid="ignore"):
            means = np.nanmean(values, axis=0)
        self.column_means = np.where(np.isnan(means), np.nanmean(values), means)

    def _fold_in(self, columns, values):
        return self.column_means.copy()

    def _arrays(self):
        return {"column_means": self.column_means}

    def _load(self, arrays, state, source):
        self.column_means = self._expect(arrays, "column_means", (len(self.example_ids),), source)
