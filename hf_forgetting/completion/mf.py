"""Biased matrix factorisation z_ij ~ mu + b_i + b_j + p_i . q_j, fitted once; new tasks folded in by ridge.

The factors are fitted by alternating least squares on the observed entries (each half-step is an
exact batched ridge solve, so fitting is deterministic and needs no learning rate). A new task's
``(b_i, loading, p_i)`` is the ridge solution on its k known entries with the example factors held
fixed, the loading on the example effects ``b_j`` shrunk toward 1 (a fine-tune weaker or stronger than
the matrix's scales them): a ``(rank + 2)``-dimensional least-squares problem, solved in microseconds.
"""

from __future__ import annotations

import numpy as np

from ..fits import additive_fit
from ..matrix import ForgettingMatrix
from .base import BiasedFactorsPredictor
from .calibration import fold_in_with_loading, loading_prior


def _batched_ridge(design: np.ndarray, observed_targets: np.ndarray, offsets: np.ndarray, mask: np.ndarray | None,
                   reg: float) -> np.ndarray:
    """One ridge problem per row ``r`` of ``observed_targets`` [R, n]: regress ``observed_targets[r] - offsets``
    on ``design`` [n, d] over the entries ``mask[r]`` observes (``observed_targets`` is zero elsewhere;
    ``mask=None``: all observed, so every row shares one Gram matrix)."""
    d = design.shape[1]
    if mask is None:
        gram = design.T @ design + reg * np.eye(d)
        rhs = observed_targets @ design - (offsets @ design)[None, :]
        return np.linalg.solve(gram, rhs.T).T
    outer = (design[:, :, None] * design[:, None, :]).reshape(len(design), d * d)
    gram = (mask @ outer).reshape(-1, d, d) + reg * np.eye(d)  # sum over observed n of x_n x_n^T, as one matmul
    rhs = observed_targets @ design - mask @ (offsets[:, None] * design)
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


class MFPredictor(BiasedFactorsPredictor):
    """Biased MF ("SVD" in the paper, rank 5) with ridge fold-in of new tasks.

    Args:
        rank (`int`, *optional*, defaults to `5`):
            Number of latent factors.
        reg (`float`, *optional*, defaults to `0.1`):
            L2 regularisation of factors and biases (fitting and fold-in).
        iterations (`int`, *optional*, defaults to `30`):
            ALS sweeps.
        seed (`int`, *optional*, defaults to `0`):
            Initialisation of the example factors.
    """

    name = "mf"
    config_fields = ("rank", "reg", "iterations", "seed")

    def __init__(self, rank: int = 5, reg: float = 0.1, iterations: int = 30, seed: int = 0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1; got {rank}")
        if reg <= 0:
            raise ValueError(f"reg must be > 0 for a well-posed fold-in; got {reg}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1 (ALS sweeps); got {iterations}")
        self.rank, self.reg, self.iterations, self.seed = int(rank), float(reg), int(iterations), int(seed)

    @classmethod
    def fitted_on(cls, matrix: ForgettingMatrix) -> MFPredictor:
        """MF fitted on `matrix` at rank min(5, tasks - 1): the predictor used when none is given."""
        return cls(rank=max(1, min(5, matrix.shape[0] - 1))).fit(matrix)

    def _fit(self, values, matrix):
        rank = self._fitted_rank(values)
        missing = np.isnan(values)
        mask = (~missing).astype(np.float64) if missing.any() else None
        self.mu, _, _ = additive_fit(values)
        centred = np.where(missing, 0.0, values - self.mu)  # made once: each half-step is then two matmuls
        rng = np.random.default_rng(self.seed)
        num_tasks, num_examples = values.shape
        example_part = np.hstack([np.zeros((num_examples, 1)), rng.normal(0, 0.1, (num_examples, rank))])
        for _ in range(self.iterations):
            # tasks: [b_i, p_i] given [b_j, q_j]; design [1, q_j], target z - mu - b_j
            task_part = _batched_ridge(np.hstack([np.ones((num_examples, 1)), example_part[:, 1:]]), centred,
                                       example_part[:, 0], mask, self.reg)
            # examples: [b_j, q_j] given [b_i, p_i]; design [1, p_i], target z - mu - b_i
            example_part = _batched_ridge(np.hstack([np.ones((num_tasks, 1)), task_part[:, 1:]]), centred.T,
                                          task_part[:, 0], None if mask is None else mask.T, self.reg)
        self.example_bias, self.example_factors = example_part[:, 0], example_part[:, 1:]
        self.task_bias, self.task_factors = task_part[:, 0], task_part[:, 1:]
        fitted = self.mu + self.task_bias[:, None] + self.example_bias[None, :] + self.task_factors @ self.example_factors.T
        self.loading_prior = loading_prior(values, self.example_bias, fitted)

    def _design(self, columns: np.ndarray) -> np.ndarray:
        """``[1, b_j, q_j]`` of examples ``columns``: the new task's offset, loading and factors act on these."""
        return np.hstack([np.ones((len(columns), 1)), self.example_bias[columns, None], self.example_factors[columns]])

    def task_fit(self, columns: np.ndarray, values: np.ndarray, loading_prior: float | None = None) -> np.ndarray:
        """``[c, loading, p_i]`` of a new task from its known entries: the row is ``mu + c + loading * b_j + p_i . q_j``
        (ridge on ``c`` and ``p_i``, ``loading`` shrunk toward 1 by the prior fitted on the matrix)."""
        prior = self.loading_prior if loading_prior is None else loading_prior
        return fold_in_with_loading(self._design(columns), values - self.mu, self.reg, prior)

    def task_parameters(self, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``[b_i, p_i]`` of a new task, comparable with the known tasks' ``[task_bias, task_factors]``."""
        parameters = self.task_fit(columns, values)
        return np.concatenate([parameters[:1], parameters[2:]])

    def _fold_in(self, columns, values, loading_prior=None):
        return self.mu + self._design(np.arange(len(self.example_bias))) @ self.task_fit(columns, values, loading_prior)

    def _state(self):
        return {**super()._state(), "loading_prior": self.loading_prior}

    def _load(self, arrays, state, source):
        super()._load(arrays, state, source)
        self.loading_prior = self._finite_state(state, "loading_prior", source, positive=True)
