"""Logit replay: replay rows trained to keep the base model's next-token distribution instead of their text.

At every trained position of a replay row the loss is KL(base || model) over the base model's `top_k` most
likely next tokens and one bucket for the rest of the vocabulary: the exact KL between the two distributions
coarsened to those `top_k + 1` outcomes, a lower bound of the full KL that keeps the base's mass where it is.
The base's part is computed once per replay row before training (no second model is held), and costs
`positions x top_k x 8` bytes per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..scoring import padded_scoring_batch


@torch.no_grad()
def base_distributions(
    model, encoded: Sequence[tuple[list[int], list[bool]]], top_k: int, pad_id: int = 0, batch_size: int = 16
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each row ``(token ids, trained mask)``: ``(indices [positions, top_k], log_probs [positions, top_k])`` of
    `model`'s next-token distribution at the positions that predict a trained token (in order), on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    targets: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        for start in range(0, len(encoded), batch_size):
            rows = encoded[start : start + batch_size]
            batch = padded_scoring_batch(rows, pad_id, device)  # the scorer's positions: hidden p predicts token p + 1
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            log_probs = F.log_softmax(logits[batch["rows"], batch["positions"]].float(), dim=-1)
            top = log_probs.topk(min(top_k, log_probs.shape[-1] - 1), dim=-1)  # one token left for the rest
            counts = torch.bincount(batch["rows"], minlength=len(rows)).tolist()
            targets += zip(top.indices.cpu().split(counts), top.values.cpu().split(counts))
    finally:
        model.train(was_training)
    return targets


def coarse_kl(logits: torch.Tensor, indices: torch.Tensor, base_log_probs: torch.Tensor) -> torch.Tensor:
    """Per position: KL(base || model) over the base's top tokens `indices` and the bucket of all others.

    Args:
        logits: `[positions, vocabulary]`, the model's.
        indices, base_log_probs: `[positions, top_k]`, the base's top tokens and their log-probabilities.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    model_top = log_probs.gather(-1, indices)
    model_rest = torch.logsumexp(log_probs.scatter(-1, indices, float("-inf")), dim=-1)
    base_rest = torch.log1p(-base_log_probs.exp().sum(-1).clamp(max=1 - 1e-6))
    top_part = (base_log_probs.exp() * (base_log_probs - model_top)).sum(-1)
    return top_part + base_rest.exp() * (base_rest - model_rest)
