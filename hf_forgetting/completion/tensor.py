"""Tensor completion across models or checkpoints: masked CP of model x task x example (tensorly).

Several forgetting matrices over the same upstream examples (one per base model or checkpoint,
sharing some task names) form a tensor T[model, task, example] with gaps. A masked CP decomposition
``T - mu ~ sum_r A[m, r] B[t, r] C[j, r]`` is fitted once. A new (model, task) slice is predicted
from the CP prior ``w0 = A[m] * B[t]`` (or the mean over models / tasks when one is new) corrected
by ridge regression of its k known entries on the example factors ``C``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..matrix import ForgettingMatrix
from .base import ForgettingPredictor


class TensorPredictor(ForgettingPredictor):
    """Masked CP completion of a model x task x example tensor.

    Args:
        rank (`int`, *optional*, defaults to `5`):
            CP rank.
        reg (`float`, *optional*, defaults to `1.0`):
            Ridge pull of a folded-in slice toward its CP prior.
        iterations (`int`, *optional*, defaults to `200`):
            CP ALS sweeps.
    """

    name = "tensor"
    config_fields = ("rank", "reg", "iterations")

    def __init__(self, rank: int = 5, reg: float = 1.0, iterations: int = 200):
        super().__init__()
        if rank < 1 or reg <= 0 or iterations < 1:
            raise ValueError("rank and iterations must be >= 1 and reg > 0")
        self.rank, self.reg, self.iterations = int(rank), float(reg), int(iterations)
        self.model_names: list[str] = []
        self.task_names: list[str] = []

    def fit(
        self, data: Mapping[str, ForgettingMatrix] | ForgettingMatrix, *, example_texts: Mapping[str, str] | None = None
    ) -> TensorPredictor:
        """Fit on `{model_name: ForgettingMatrix}` (or one matrix, as a single model named "model")."""
        import tensorly as tl
        from tensorly.decomposition import parafac

        matrices = {"model": data} if isinstance(data, ForgettingMatrix) else data
        if not matrices:
            raise ValueError("TensorPredictor.fit needs at least one matrix")
        first = next(iter(matrices.values()))
        for name, matrix in matrices.items():
            if matrix.example_ids != first.example_ids or matrix.metric != first.metric:
                raise ValueError(f"Matrix of model {name!r} has other example ids or metric than the first one")
        self._set_examples(first.example_ids, first.metric)
        self.model_names = list(matrices)
        self.task_names = sorted({task for matrix in matrices.values() for task in matrix.task_ids})
        tensor = np.full((len(self.model_names), len(self.task_names), len(self.example_ids)), np.nan)
        for m, matrix in enumerate(matrices.values()):
            for task, row in zip(matrix.task_ids, matrix.values):
                tensor[m, self.task_names.index(task)] = row
        observed = ~np.isnan(tensor)
        self.mu = float(np.nanmean(tensor))
        tl.set_backend("numpy")
        centred = np.where(observed, tensor - self.mu, 0.0).astype(np.float32)
        rank = min(self.rank, *[s for s in tensor.shape if s > 0])
        cp = parafac(centred, rank, n_iter_max=self.iterations, init="svd", mask=observed.astype(np.float32), tol=1e-7)
        weights, (models, tasks, examples) = cp
        examples = examples.astype(np.float64)
        # Unit-RMS example factors, so that `reg` means the same at any scale; the scale moves to the models.
        scale = np.sqrt(np.mean(examples**2, axis=0)) + 1e-12
        self.example_factors = examples / scale
        self.model_factors = models.astype(np.float64) * (weights.astype(np.float64) * scale)[None, :]
        self.task_factors = tasks.astype(np.float64)
        return self

    def prior(self, model: str | None, task: str | None) -> np.ndarray:
        """The CP weights of slice (model, task); an unknown model or task uses the mean over them."""
        a = self.model_factors[self.model_names.index(model)] if model in self.model_names else self.model_factors.mean(0)
        b = self.task_factors[self.task_names.index(task)] if task in self.task_names else self.task_factors.mean(0)
        return a * b

    def _row_function(self, *, task=None, model=None, task_inputs=None, calibrated=True):
        """The row of (`model`, `task`) from its known entries and, where known, the other slices."""
        prior = self.prior(model, task)
        return lambda columns, values: self._fold_in(columns, values, prior)

    def _fold_in(self, columns, values, prior=None):
        design = self.example_factors[columns]
        w0 = self.prior(None, None) if prior is None else prior
        gram = design.T @ design + self.reg * np.eye(design.shape[1])
        weights = np.linalg.solve(gram, design.T @ (values - self.mu) + self.reg * w0)
        return self.mu + self.example_factors @ weights

    def _arrays(self):
        return {
            "model_factors": self.model_factors,
            "task_factors": self.task_factors,
            "example_factors": self.example_factors,
        }

    def _state(self):
        return {"mu": self.mu, "model_names": self.model_names, "task_names": self.task_names}

    def _load(self, arrays, state, source):
        self.mu = self._finite_state(state, "mu", source)
        self.model_names, self.task_names = list(state["model_names"]), list(state["task_names"])
        self.example_factors = self._expect(arrays, "example_factors", (len(self.example_ids), None), source)
        rank = self.example_factors.shape[1]
        self.model_factors = self._expect(arrays, "model_factors", (len(self.model_names), rank), source)
        self.task_factors = self._expect(arrays, "task_factors", (len(self.task_names), rank), source)
