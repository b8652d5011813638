"""The numeric fits shared by the analysis and the predictors: additive and low-rank fits, and R^2.

R^2 of a fit F of Z is ``1 - MSE(Z, F) / Var(Z)`` over the observed entries (PAPER.md section 2).
With missing entries, the rank-k fit is found by hard impute (EM): fill the gaps with the current
fit, take the rank-k SVD, repeat until the fit on observed entries stops improving.
"""

from __future__ import annotations

import numpy as np

__all__ = ["additive_fit", "low_rank_fit", "r_squared", "truncated_svd"]


def r_squared(values: np.ndarray, fit: np.ndarray) -> float:
    """``1 - MSE / Var`` on the observed (non-NaN) entries of ``values``."""
    observed = ~np.isnan(values)
    truth = values[observed].astype(np.float64)
    variance = truth.var()
    if variance == 0:
        return float("nan")
    return float(1.0 - np.mean((truth - fit[observed]) ** 2) / variance)


def additive_fit(values: np.ndarray, iterations: int = 50, tol: float = 1e-10) -> tuple[float, np.ndarray, np.ndarray]:
    """``(mu, row_effects, column_effects)`` of ``Z ~ mu + a_i + b_j`` by least squares on observed entries
    (alternating updates; exact in one pass when nothing is missing)."""
    values = values.astype(np.float64)
    observed = ~np.isnan(values)
    filled = np.where(observed, values, 0.0)
    counts_rows = np.maximum(observed.sum(1), 1)
    counts_cols = np.maximum(observed.sum(0), 1)
    mu = filled.sum() / max(observed.sum(), 1)
    rows, cols = np.zeros(values.shape[0]), np.zeros(values.shape[1])
    previous = np.inf
    for _ in range(iterations):
        rows = (np.where(observed, filled - mu - cols[None, :], 0.0)).sum(1) / counts_rows
        cols = (np.where(observed, filled - mu - rows[:, None], 0.0)).sum(0) / counts_cols
        residual = np.where(observed, filled - mu - rows[:, None] - cols[None, :], 0.0)
        loss = float((residual**2).sum())
        if previous - loss < tol:
            break
        previous = loss
    return float(mu), rows, cols


def low_rank_fit(values: np.ndarray, rank: int, iterations: int = 200, tol: float = 1e-8) -> np.ndarray:
    """The rank-``rank`` truncated-SVD fit of ``values``; missing entries are imputed iteratively."""
    values = values.astype(np.float64)
    observed = ~np.isnan(values)
    if observed.all():
        return truncated_svd(values, rank)
    mu, rows, cols = additive_fit(values)
    filled = np.where(observed, values, mu + rows[:, None] + cols[None, :])
    previous = np.inf
    fit = filled
    for _ in range(iterations):
        fit = truncated_svd(filled, rank)
        loss = float(np.mean((values[observed] - fit[observed]) ** 2))
        filled = np.where(observed, values, fit)
        if previous - loss < tol * max(previous, 1e-12):
            break
        previous = loss
    return fit


def truncated_svd(values: np.ndarray, rank: int) -> np.ndarray:
    u, s, vt = np.linalg.svd(values, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank]
