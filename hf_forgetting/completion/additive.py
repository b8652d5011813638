"""The additive model: z_ij ~ mu + b_task + b_example, the paper's first completion baseline (with the new
task's loading on b_example, see :mod:`.calibration`)."""

from __future__ import annotations

import numpy as np

from ..fits import additive_fit
from .base import ForgettingPredictor
from .calibration import fold_in_with_loading, loading_prior


class AdditivePredictor(ForgettingPredictor):
    """`mu + b_i + loading * b_j`: each example's forgettability, scaled to the new task, plus its offset.

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
        self.mu, task_bias, self.example_bias = additive_fit(values)
        fitted = self.mu + task_bias[:, None] + self.example_bias[None, :]
        self.loading_prior = loading_prior(values, self.example_bias, fitted)

    def _design(self, columns: np.ndarray) -> np.ndarray:
        return np.stack([np.ones(len(columns)), self.example_bias[columns]], axis=1)

    def task_fit(self, columns: np.ndarray, values: np.ndarray, loading_prior: float | None = None) -> np.ndarray:
        """``[b_i, loading]`` of a new task: its offset (ridge) and its loading on the example effects (toward 1)."""
        prior = self.loading_prior if loading_prior is None else loading_prior
        return fold_in_with_loading(self._design(columns), values - self.mu, self.reg, prior)

    def task_offset(self, columns: np.ndarray, values: np.ndarray) -> float:
        """The new task's offset b_i."""
        return float(self.task_fit(columns, values)[0])

    def _fold_in(self, columns, values, loading_prior=None):
        offset, loading = self.task_fit(columns, values, loading_prior)
        return self.mu + offset + loading * self.example_bias

    def _arrays(self):
        return {"example_bias": self.example_bias}

    def _state(self):
        return {"mu": self.mu, "loading_prior": self.loading_prior}

    def _load(self, arrays, state, source):
        self.mu = self._finite_state(state, "mu", source)
        self.loading_prior = self._finite_state(state, "loading_prior", source, positive=True)
        self.example_bias = self._expect(arrays, "example_bias", (len(self.example_ids),), source)


class ColumnMeanPredictor(ForgettingPredictor):
    """Baseline that ignores the known entries: each example's mean forgetting over the training tasks."""

    name = "column_mean"
    anchors_to_probes = False  # the baseline that ignores the known entries

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
