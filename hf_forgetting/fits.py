"""The numeric fits shared by the analysis and the predictors: additive and low-rank fits, and R^2.

R^2 of a fit F of Z is ``1 - MSE(Z, F) / Var(Z)`` over the observed entries (PAPER.md section 2).
With missing entries, the rank-k fit is found by hard impute (EM): fill the gaps with the current
fit, take the rank-k SVD, repeat until the fit on observed entries stops improving.
"""

from __future__ import annotations

import numpy as np

__all__ = ["additive_fit", "low_rank_fit", "low_rank_fits", "r_squared", "thin_svd", "truncated_svd"]


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


def thin_svd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, s, vt)`` of ``values`` with ``min(shape)`` components. A matrix far wider than tall (tasks x
    examples) is decomposed through its small Gram matrix, ``m^2 n`` work instead of LAPACK's full SVD."""
    m, n = values.shape
    if n < 8 * m and m < 8 * n:
        return np.linalg.svd(values, full_matrices=False)
    if m > n:
        v, s, ut = thin_svd(values.T)
        return ut.T, s, v.T
    eigenvalues, u = np.linalg.eigh(values @ values.T)
    order = np.argsort(eigenvalues)[::-1]
    s = np.sqrt(np.clip(eigenvalues[order], 0.0, None))
    u = u[:, order]
    vt = (u.T @ values) / np.where(s > 0, s, 1.0)[:, None]
    return u, s, vt


def truncated_svd(values: np.ndarray, rank: int) -> np.ndarray:
    """The best rank-``rank`` approximation of a complete matrix."""
    u, s, vt = thin_svd(values)
    return (u[:, :rank] * s[:rank]) @ vt[:rank]


def low_rank_fit(values: np.ndarray, rank: int, iterations: int = 200, tol: float = 1e-8) -> np.ndarray:
    """The rank-``rank`` truncated-SVD fit of ``values``; missing entries are imputed iteratively."""
    return next(iter(low_rank_fits(values, [rank], iterations, tol).values()))


def low_rank_fits(values: np.ndarray, ranks, iterations: int = 200, tol: float = 1e-8, score=None) -> dict:
    """``{rank: fit}`` for every rank in ``ranks``, or ``{rank: score(fit)}`` (no fit kept: a paper-sized matrix
    holds 100 MB per fit).

    A complete matrix takes one decomposition for every rank. With missing entries each rank is found by
    hard impute from an additive fill of the gaps, stopping when the fit on observed entries improves by
    less than ``tol`` (relative) or after ``iterations``; on a large matrix an iteration costs one Gram
    matrix of the filled matrix and updates only the gaps.
    """
    values = np.asarray(values, dtype=np.float64)
    observed = ~np.isnan(values)
    results = {}
    if observed.all():
        u, s, vt = thin_svd(values)
        for rank in sorted(ranks):
            fit = (u[:, :rank] * s[:rank]) @ vt[:rank]
            results[rank] = fit if score is None else score(fit)
        return results
    transposed = values.shape[0] > values.shape[1]  # iterate on the wide orientation: the Gram matrix is the small side
    work = values.T if transposed else values
    mu, rows, cols = additive_fit(work)
    gaps = np.flatnonzero(np.isnan(work))
    start = (mu + rows[:, None] + cols[None, :]).reshape(-1)[gaps]
    filled = np.ascontiguousarray(np.where(np.isnan(work), 0.0, work))  # reshape(-1) must be a view: gaps are filled in place
    observed_count = work.size - len(gaps)
    for rank in sorted(ranks):
        filled.reshape(-1)[gaps] = start
        u, weights = _hard_impute(filled, gaps, rank, observed_count, iterations, tol)
        fit = u @ weights
        fit = fit.T if transposed else fit
        results[rank] = fit if score is None else score(fit)
    return results


def _hard_impute(filled: np.ndarray, gaps: np.ndarray, rank: int, observed_count: int, iterations: int,
                 tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Iterate ``gaps <- rank-k fit`` on a wide ``filled`` matrix; returns the last fit as ``(u, weights)``
    (the fit is ``u @ weights``: the top-``rank`` left singular vectors of the fill it projected).

    A small matrix (under 10^5 entries) takes LAPACK's SVD at each step and the plain loss. A large one
    is decomposed through its Gram matrix, kept as the fixed part of the columns without gaps plus the
    block of columns with gaps, the only part a step changes; its loss on observed entries is the
    projection's residual less its part on the gaps, so no full-size temporary is made. (The Gram matrix
    squares the spread of the singular values: on a small matrix the last of several ranks would lose
    digits that an unconverged imputation amplifies.)"""
    if filled.size < 100_000:
        return _hard_impute_small(filled, gaps, rank, iterations, tol)
    rows, columns = np.divmod(gaps, filled.shape[1])
    gap_columns, local = np.unique(columns, return_inverse=True)
    if len(gap_columns) > filled.shape[1] // 2:  # most columns have gaps: the whole matrix is the block
        gap_columns, local = np.arange(filled.shape[1]), columns
    block = filled[:, gap_columns]
    fixed = filled @ filled.T - block @ block.T if len(gap_columns) < filled.shape[1] else 0.0
    previous, u, before = np.inf, None, None
    for _ in range(iterations):
        gram = fixed + block @ block.T
        eigenvalues, vectors = np.linalg.eigh(gram)
        order = np.argsort(eigenvalues)[::-1]
        u = vectors[:, order[:rank]]
        fit_on_gaps = _fit_at(u, u.T @ block, rows, local)
        before = block[rows, local]
        residual = float(np.trace(gram) - eigenvalues[order[:rank]].sum())  # ||F - fit||^2 over every entry
        loss = (residual - float(np.sum((before - fit_on_gaps) ** 2))) / observed_count
        block[rows, local] = fit_on_gaps
        if previous - loss < tol * max(previous, 1e-12):
            break
        previous = loss
    block[rows, local] = before  # the last fit projected the fill before its update
    filled[:, gap_columns] = block
    return u, u.T @ filled


def _hard_impute_small(filled: np.ndarray, gaps: np.ndarray, rank: int, iterations: int, tol: float):
    observed = np.ones(filled.size, dtype=bool)
    observed[gaps] = False
    previous, u, weights = np.inf, None, None
    for _ in range(iterations):
        u = np.linalg.svd(filled, full_matrices=False)[0][:, :rank]
        weights = u.T @ filled
        fit = u @ weights
        loss = float(np.mean((filled.reshape(-1)[observed] - fit.reshape(-1)[observed]) ** 2))
        filled.reshape(-1)[gaps] = fit.reshape(-1)[gaps]
        if previous - loss < tol * max(previous, 1e-12):
            break
        previous = loss
    return u, weights


def _fit_at(u: np.ndarray, weights: np.ndarray, rows: np.ndarray, columns: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``(u @ weights)[rows, columns]`` without forming ``u @ weights``."""
    out = np.empty(len(rows))
    for start in range(0, len(rows), chunk):
        part = slice(start, start + chunk)
        out[part] = np.einsum("ir,ri->i", u[rows[part]], weights[:, columns[part]])
    return out


def _projection(values: np.ndarray, rank: int) -> np.ndarray:
    """The best rank-``rank`` approximation, by projecting on the top left (or right) singular vectors."""
    m, n = values.shape
    if m <= n:
        u = _top_eigenvectors(values @ values.T, rank)
        return u @ (u.T @ values)
    v = _top_eigenvectors(values.T @ values, rank)
    return (values @ v) @ v.T


def _top_eigenvectors(gram: np.ndarray, count: int) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh(gram)
    return vectors[:, np.argsort(eigenvalues)[::-1][:count]]
