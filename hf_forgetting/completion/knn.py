"""User-based KNN on residuals of the additive model (surprise's KNNBaseline with MSD similarity)."""

from __future__ import annotations

import numpy as np

from ..fits import additive_fit
from .base import ForgettingPredictor
from .calibration import fold_in_with_loading, loading_prior


class KNNPredictor(ForgettingPredictor):
    """Predict the new task's residuals as a similarity-weighted mean of its ``k`` nearest training tasks.

    Similarity of a training task u to the new task is ``1 / (1 + MSD / s^2)``: MSD is the mean
    squared difference of their residuals (from the additive baseline) over the known examples both
    observed, and ``s^2`` the variance of the training residuals. Surprise's MSD similarity has no
    ``s^2``; without it, forgetting values of ~0.03 NLL give MSDs of ~1e-3, every neighbour gets
    weight ~1, and the prediction collapses to the additive baseline (the residuals average to 0).

    Args:
        k (`int`, *optional*, defaults to `40`):
            Number of neighbours.
        reg (`float`, *optional*, defaults to `1.0`):
            Shrinkage of the new task's additive offset (see `AdditivePredictor`).
    """

    name = "knn"
    config_fields = ("k", "reg")

    def __init__(self, k: int = 40, reg: float = 1.0):
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        self.k, self.reg = int(k), float(reg)

    def _fit(self, values, matrix):
        self.mu, task_bias, self.example_bias = additive_fit(values)
        self.residuals = values - self.mu - task_bias[:, None] - self.example_bias[None, :]  # NaN stays NaN
        self.residual_variance = float(np.nanvar(self.residuals)) or 1.0
        self.loading_prior = loading_prior(values, self.example_bias, values - np.nan_to_num(self.residuals))
        self._prepare()

    def _prepare(self) -> None:
        """Zero-filled residuals and the observation mask, so a fold-in is two mat-vec products."""
        self._observed = (~np.isnan(self.residuals)).astype(np.float64)
        self._filled = np.nan_to_num(self.residuals)

    def _fold_in(self, columns, values, loading_prior=None):
        prior = self.loading_prior if loading_prior is None else loading_prior
        design = np.stack([np.ones(len(columns)), self.example_bias[columns]], axis=1)
        offset, loading = fold_in_with_loading(design, values - self.mu, self.reg, prior)
        # neighbours are compared in the known tasks' units: a weaker fine-tune's residuals are smaller too
        residual = (values - self.mu - offset - loading * self.example_bias[columns]) / max(loading, 0.05)
        predicted_residual = self._neighbour_residuals(columns, residual)
        # the new row as offset + loading * example effect + loading * neighbours' residual, both loadings toward 1
        design = np.stack([np.ones(len(columns)), self.example_bias[columns], predicted_residual[columns]], axis=1)
        offset, loading, residual_loading = fold_in_with_loading(design, values - self.mu, self.reg, prior, (1, 2))
        return self.mu + offset + loading * self.example_bias + residual_loading * predicted_residual

    def _neighbour_residuals(self, columns: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """Every example's residual as the similarity-weighted mean of the ``k`` training tasks whose residuals
        on ``columns`` are closest to ``residual``."""
        neighbours_known = self.residuals[:, columns]
        observed = ~np.isnan(neighbours_known)
        squared = np.where(observed, (np.nan_to_num(neighbours_known) - residual[None, :]) ** 2, 0.0)
        counts = observed.sum(1)
        msd = squared.sum(1) / np.maximum(counts, 1) / self.residual_variance
        similarity = np.where(counts > 0, 1.0 / (1.0 + msd), 0.0)
        weights = np.zeros_like(similarity)  # zero outside the k nearest: mat-vecs without copying rows
        nearest = np.argsort(-similarity, kind="stable")[: self.k]
        weights[nearest] = similarity[nearest]
        numerator = weights @ self._filled
        denominator = weights @ self._observed  # only neighbours that observed the example count
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)

    def _arrays(self):
        return {"example_bias": self.example_bias, "residuals": self.residuals}

    def _state(self):
        return {"mu": self.mu, "residual_variance": self.residual_variance, "loading_prior": self.loading_prior}

    def _load(self, arrays, state, source):
        self.mu = self._finite_state(state, "mu", source)
        self.residual_variance = self._finite_state(state, "residual_variance", source, positive=True)
        self.loading_prior = self._finite_state(state, "loading_prior", source, positive=True)
        self.example_bias = self._expect(arrays, "example_bias", (len(self.example_ids),), source)
        residuals = arrays.get("residuals")
        if residuals is None or residuals.ndim != 2 or residuals.shape[1] != len(self.example_ids):
            raise ValueError(f"{source}: tensor 'residuals' missing or not [tasks, {len(self.example_ids)}]")
        if np.isinf(residuals).any():
            raise ValueError(f"{source}: tensor 'residuals' contains infinity")
        self.residuals = residuals.astype(np.float64)  # NaN marks unobserved training entries
        self._prepare()
