"""LM-based baseline: forgetting predicted from the sentence-embedding similarity of task and example.

As in the paper's comparison, the similarity carries no knowledge of other tasks' forgetting:
``f_j = alpha + beta * cos(mean embedding of the task's inputs, embedding of example j)``, with
alpha and beta fitted by least squares (ridge on beta) on the new task's k known entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..embeddings import EMBEDDED_ENCODER, SentenceEncoder
from ..matrix import ForgettingMatrix
from .base import ForgettingPredictor


class EmbeddingSimilarityPredictor(ForgettingPredictor):
    """Args:
    encoder: a sentence-embedding checkpoint (default: the offline all-MiniLM-L6-v2).
    reg: ridge strength on the similarity slope.
    """

    config_fields = ("encoder", "reg")
    requires_task_texts = True

    def __init__(self, encoder: str = EMBEDDED_ENCODER, reg: float = 1e-3):
        super().__init__()
        self.encoder, self.reg = encoder, float(reg)
        self._encoder: SentenceEncoder | None = None
        self._similarity_cache: dict[tuple, np.ndarray] = {}

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._encoder is None:
            self._encoder = SentenceEncoder(self.encoder)
        return self._encoder.encode(list(texts))

    def fit(self, matrix: ForgettingMatrix, example_texts: Mapping[str, str] | None = None) -> EmbeddingSimilarityPredictor:
        """Embed every upstream example; ``example_texts`` maps each example id to its text."""
        if example_texts is None:
            raise ValueError("EmbeddingSimilarityPredictor.fit needs example_texts={example_id: text}")
        missing = [i for i in matrix.example_ids if i not in example_texts]
        if missing:
            raise KeyError(f"example_texts lacks {len(missing)} example ids, e.g. {missing[:3]}")
        self._set_examples(matrix.example_ids, matrix.metric)
        self.example_embeddings = self._encode([example_texts[i] for i in matrix.example_ids]).astype(np.float64)
        self._similarity_cache = {}
        return self

    def predict(self, known_example_ids, known_values, task_texts: Sequence[str] | None = None) -> np.ndarray:
        """The new task's row from its known entries and a few of its inputs (``task_texts``)."""
        columns, values = self.validate_known(known_example_ids, known_values)
        if not task_texts:
            raise ValueError("EmbeddingSimilarityPredictor.predict needs task_texts: a few inputs of the new task")
        similarity = self.similarity(task_texts)
        design = np.stack([np.ones(len(columns)), similarity[columns]], axis=1)
        gram = design.T @ design + np.diag([0.0, self.reg])
        alpha, beta = np.linalg.lstsq(gram, design.T @ values, rcond=None)[0]
        return (alpha + beta * similarity).astype(np.float32)

    def similarity(self, task_texts: Sequence[str]) -> np.ndarray:
        """Cosine of every example with the task's mean embedding (cached per distinct list of texts)."""
        key = tuple(task_texts)
        if key not in self._similarity_cache:
            task = self._encode(key).mean(0)
            self._similarity_cache = {key: self.example_embeddings @ (task / (np.linalg.norm(task) + 1e-12))}
        return self._similarity_cache[key]

    def _arrays(self):
        return {"example_embeddings": self.example_embeddings}

    def _load(self, arrays, state, source):
        self.example_embeddings = self._expect(arrays, "example_embeddings", (len(self.example_ids), None), source)


def _example_text(example: dict) -> str:
    if example.get("text"):
        return example["text"]
    if example.get("prompt"):
        return example["prompt"] if isinstance(example["prompt"], str) else example["prompt"][-1]["content"]
    return next(m["content"] for m in example["messages"] if m["role"] == "user")


def texts_for_matrix(matrix: ForgettingMatrix, examples_per_task: int = 32) -> tuple[dict, dict]:
    """``(example_texts, task_texts)`` of a matrix collected by ``hf-forgetting collect``, reloaded from
    the data sources its metadata names (the upstream subset must come back with the same ids)."""
    from ..collect import collect_settings, load_matrix_upstream
    from ..data import load_task

    settings = collect_settings(matrix)
    example_texts = {row["example_id"]: _example_text(row) for row in load_matrix_upstream(matrix)}
    task_texts = {}
    for task in matrix.task_ids:
        dataset = load_task(
            task, max_examples=None, seed=settings["task_seed"], split=settings["task_split"],
            prompt_field=settings.get("task_prompt_field"), completion_field=settings.get("task_completion_field"),
        )
        dataset = dataset.select(range(min(examples_per_task, len(dataset))))
        task_texts[task] = [_example_text(row) for row in dataset]
    return example_texts, task_texts
