"""LM-based baseline: forgetting predicted from the sentence-embedding similarity of task and example.

As in the paper's comparison, the similarity carries no knowledge of other tasks' forgetting:
``f_j = alpha + beta * cos(mean embedding of the task's inputs, embedding of example j)``, with
alpha and beta fitted by least squares (ridge on beta) on the new task's k known entries. The
encoder (torch) is loaded when the predictor is first used, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..matrix import ForgettingMatrix
from ..modeling import EMBEDDED_ENCODER
from .base import ForgettingPredictor


class EmbeddingSimilarityPredictor(ForgettingPredictor):
    """Forgetting as an affine function of task-example embedding similarity.

    It needs texts: those of the upstream examples at `fit` (given, or reloaded from the sources the
    matrix's metadata names) and a few inputs of the new task at `predict` (given as `task_inputs`, or
    reloaded for a `task` of those sources).

    Args:
        encoder (`str`, *optional*, defaults to the offline all-MiniLM-L6-v2):
            A sentence-embedding checkpoint.
        reg (`float`, *optional*, defaults to `1e-3`):
            Ridge strength on the similarity slope.
    """

    name = "embedding"
    config_fields = ("encoder", "reg")

    def __init__(self, encoder: str = EMBEDDED_ENCODER, reg: float = 1e-3):
        super().__init__()
        self.encoder, self.reg = encoder, float(reg)
        self._encoder = None
        self._similarity_cache: dict[tuple, np.ndarray] = {}
        self._sources: dict | None = None  # the collect settings of the fitted matrix, to reload task inputs
        self._inputs_cache: dict[str, list[str]] = {}

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._encoder is None:
            from ..embeddings import SentenceEncoder

            self._encoder = SentenceEncoder(self.encoder)
        return self._encoder.encode(list(texts))

    def fit(self, data, *, example_texts: Mapping[str, str] | None = None) -> EmbeddingSimilarityPredictor:
        """Embed every upstream example (see `ForgettingPredictor.fit`)."""
        from ..data.matrix_sources import collect_settings
        from ..data.matrix_sources import example_texts as reload_texts

        matrix: ForgettingMatrix = self._one_matrix(data)
        self._sources = matrix.metadata.get("settings", {}).get("collect")
        if example_texts is None:
            collect_settings(matrix)  # a clear error when the matrix does not say where its texts are
            example_texts = reload_texts(matrix)
        missing = [i for i in matrix.example_ids if i not in example_texts]
        if missing:
            raise ValueError(f"example_texts lacks {len(missing)} example ids, e.g. {missing[:3]}")
        self._set_examples(matrix.example_ids, matrix.metric)
        self.example_embeddings = self._encode([example_texts[i] for i in matrix.example_ids]).astype(np.float64)
        self._similarity_cache = {}
        return self

    def _row_function(self, *, task=None, model=None, task_inputs=None, calibrated=True):
        """The new task's row from its known entries and a few of its inputs (see `ForgettingPredictor.predict`)."""
        if not task_inputs and task is not None and self._sources:
            task_inputs = self._reloaded_inputs(task)
        if not task_inputs:
            raise ValueError("EmbeddingSimilarityPredictor.predict needs task_inputs: a few inputs of the new task")
        similarity = self.similarity(task_inputs)

        def fold_in(columns, values):
            design = np.stack([np.ones(len(columns)), similarity[columns]], axis=1)
            gram = design.T @ design + np.diag([0.0, self.reg])
            alpha, beta = np.linalg.lstsq(gram, design.T @ values, rcond=None)[0]
            return alpha + beta * similarity

        return fold_in

    def _reloaded_inputs(self, task: str) -> list[str]:
        """A few inputs of ``task``, reloaded from the fitted matrix's sources (cached per task)."""
        from ..data.matrix_sources import task_inputs

        if task not in self._inputs_cache:
            self._inputs_cache[task] = task_inputs(self._sources, task)
        return self._inputs_cache[task]

    def similarity(self, task_inputs: Sequence[str]) -> np.ndarray:
        """Cosine of every example with the task's mean embedding (cached per distinct list of inputs)."""
        key = tuple(task_inputs)
        if key not in self._similarity_cache:
            task = self._encode(key).mean(0)
            self._similarity_cache = {key: self.example_embeddings @ (task / (np.linalg.norm(task) + 1e-12))}
        return self._similarity_cache[key]

    def _arrays(self):
        return {"example_embeddings": self.example_embeddings}

    def _state(self):
        return {"sources": self._sources}

    def _load(self, arrays, state, source):
        self.example_embeddings = self._expect(arrays, "example_embeddings", (len(self.example_ids), None), source)
        self._sources = state.get("sources") if isinstance(state.get("sources"), dict) else None
