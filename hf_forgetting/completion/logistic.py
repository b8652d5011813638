"""Logistic matrix factorisation for binary forgetting matrices: P(forgotten) = sigmoid(mu + b_i + b_j + p_i . q_j).

Entries count as forgotten when > 0 (an em_drop of 1). Fitting is full-batch Adam on the mean
log-loss of the observed entries plus L2; a new task's ``(b_i, p_i)`` is folded in by a few Newton
steps of ridge-regularised logistic regression on its known entries. ``predict`` returns
probabilities; threshold them at 0.5 for a forgotten / kept call.
"""

from __future__ import annotations

import numpy as np

from .base import BiasedFactorsPredictor


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class LogisticMFPredictor(BiasedFactorsPredictor):
    """Logistic biased MF for binary (`em_drop`) matrices: P(forgotten) = sigmoid(mu + b_i + b_j + p_i . q_j).

    Args:
        rank (`int`, *optional*, defaults to `5`):
            Number of latent factors.
        reg (`float`, *optional*, defaults to `1e-3`):
            L2 strength.
        steps (`int`, *optional*, defaults to `500`):
            Adam steps of the fit.
        learning_rate (`float`, *optional*, defaults to `0.05`):
            Adam learning rate.
        seed (`int`, *optional*, defaults to `0`):
            Initialisation.
    """

    name = "logistic_mf"
    config_fields = ("rank", "reg", "steps", "learning_rate", "seed")

    def __init__(self, rank: int = 5, reg: float = 1e-3, steps: int = 500, learning_rate: float = 0.05, seed: int = 0):
        super().__init__()
        if rank < 1 or reg <= 0 or steps < 1 or learning_rate <= 0:
            raise ValueError("rank, steps must be >= 1 and reg, learning_rate > 0")
        self.rank, self.reg, self.steps = int(rank), float(reg), int(steps)
        self.learning_rate, self.seed = float(learning_rate), int(seed)

    def _fit(self, values, matrix):
        rank = self._fitted_rank(values)
        observed = ~np.isnan(values)
        target = (np.nan_to_num(values) > 0).astype(np.float64)
        weight = observed / observed.sum()
        rng = np.random.default_rng(self.seed)
        num_tasks, num_examples = values.shape
        rate = target[observed].mean()
        params = {
            "mu": np.array([np.log(max(rate, 1e-3) / max(1 - rate, 1e-3))]),
            "task_bias": np.zeros(num_tasks),
            "example_bias": np.zeros(num_examples),
            "task_factors": rng.normal(0, 0.1, (num_tasks, rank)),
            "example_factors": rng.normal(0, 0.1, (num_examples, rank)),
        }
        moments = {name: (np.zeros_like(p), np.zeros_like(p)) for name, p in params.items()}
        for step in range(1, self.steps + 1):
            logits = (
                params["mu"][0] + params["task_bias"][:, None] + params["example_bias"][None, :]
                + params["task_factors"] @ params["example_factors"].T
            )
            error = (_sigmoid(logits) - target) * weight  # d(mean log-loss)/d(logit)
            grads = {
                "mu": np.array([error.sum()]),
                "task_bias": error.sum(1) + self.reg * params["task_bias"] / num_tasks,
                "example_bias": error.sum(0) + self.reg * params["example_bias"] / num_examples,
                "task_factors": error @ params["example_factors"] + self.reg * params["task_factors"] / num_tasks,
                "example_factors": error.T @ params["task_factors"] + self.reg * params["example_factors"] / num_examples,
            }
            for name, grad in grads.items():
                first, second = moments[name]
                first[:] = 0.9 * first + 0.1 * grad
                second[:] = 0.999 * second + 0.001 * grad**2
                corrected = first / (1 - 0.9**step), second / (1 - 0.999**step)
                params[name] -= self.learning_rate * corrected[0] / (np.sqrt(corrected[1]) + 1e-8)
        self.mu = float(params["mu"][0])
        self.example_bias, self.example_factors = params["example_bias"], params["example_factors"]
        self.task_bias, self.task_factors = params["task_bias"], params["task_factors"]

    def task_parameters(self, columns: np.ndarray, values: np.ndarray, newton_steps: int = 25) -> np.ndarray:
        """``[b_i, p_i]`` by Newton's method on the ridge-penalised log-loss of the known entries."""
        design = np.hstack([np.ones((len(columns), 1)), self.example_factors[columns]])
        offset = self.mu + self.example_bias[columns]
        target = (values > 0).astype(np.float64)
        penalty = np.eye(design.shape[1])
        parameters = np.zeros(design.shape[1])
        for _ in range(newton_steps):
            probability = _sigmoid(offset + design @ parameters)
            gradient = design.T @ (probability - target) + penalty @ parameters
            hessian = (design * (probability * (1 - probability))[:, None]).T @ design + penalty
            update = np.linalg.solve(hessian, gradient)
            parameters -= update
            if np.abs(update).max() < 1e-8:
                break
        return parameters

    def _fold_in(self, columns, values):
        parameters = self.task_parameters(columns, values)
        return _sigmoid(self.mu + self.example_bias + parameters[0] + self.example_factors @ parameters[1:])
