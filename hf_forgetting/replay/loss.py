"""The replay loss's weightings, applied inside TRL's own loss path.

TRL's fused LM head returns per-token log-probabilities that TRL sums and divides by the number of trained
tokens of the accumulated batch (``num_items_in_batch``). Scaling those log-probabilities, not recomputing the
loss, keeps TRL's forward, chunked loss, metrics and gradient accumulation:

- row weights (FLOW's task weighting) multiply every token of a sequence;
- ``replay_loss_weighting="sequence"`` multiplies each token by ``tokens / (tokens of its sequence x sequences)``,
  so that TRL's token mean becomes the mean over sequences of each sequence's mean token NLL.

Logit replay (``replay_loss="kl"``) puts each replay token's KL to the base model where its NLL would be, weighted
and normalised the same way.
"""

from __future__ import annotations

import torch

from .distillation import coarse_kl


def sequence_weights(tokens, tokens_of_sequence: torch.Tensor, sequences, like: torch.Tensor) -> torch.Tensor:
    """Per-token factors that turn a token sum divided by `tokens` into the mean over `sequences` of each sequence's
    mean: ``tokens / (tokens of the token's sequence x sequences)``, in `like`'s dtype and device."""
    return torch.as_tensor(tokens, dtype=like.dtype, device=like.device) / (
        tokens_of_sequence.clamp(min=1).to(device=like.device, dtype=like.dtype) * max(int(sequences), 1)
    )


def trained_sequences(batch_samples: list[dict]) -> int:
    """Sequences with at least one trained token in an accumulated batch: the per-sequence loss's denominator."""
    return sum(int(batch["labels"][..., 1:].ne(-100).any(-1).sum()) for batch in batch_samples)


def log_prob_scaling_hook(weighting: str, tokens, sequences, row_weights: torch.Tensor | None = None):
    """A forward hook on the model that scales TRL's per-token log-probabilities: by `row_weights` (one per
    sequence) and, with ``weighting="sequence"``, so that each of `sequences` weighs the same against `tokens`
    trained tokens. With `tokens` or `sequences` None the micro-batch's own counts are used."""

    def scale_log_probs(module, args, output):
        log_probs = getattr(output, "log_probs", None)
        if log_probs is None:  # not TRL's fused forward (e.g. the logits TRL recomputes for metrics)
            return output
        if row_weights is not None:
            log_probs = log_probs * row_weights.to(device=log_probs.device, dtype=log_probs.dtype)[:, None]
        if weighting == "token":
            output.log_probs = log_probs
            return output
        per_sequence = output.label_mask.sum(-1, keepdim=True)
        if tokens is None or sequences is None:
            batch_tokens, count = output.label_mask.sum(), (per_sequence > 0).sum()
        else:
            batch_tokens, count = tokens, sequences
        output.log_probs = log_probs * sequence_weights(batch_tokens, per_sequence, count, log_probs)
        return output

    return scale_log_probs


def kl_replay_loss(logits: torch.Tensor, trained: torch.Tensor, targets: list[tuple], weighting: str, tokens, sequences) -> torch.Tensor:
    """The replay rows' part of the loss: each trained token's KL(base || model) over the base's top-k tokens and a
    bucket for the rest (`targets`: the rows' ``(indices, base log-probs)`` in order), weighted as its NLL would
    be and divided by the batch's `tokens`."""
    indices = torch.cat([t[0] for t in targets]).to(logits.device)
    base_log_probs = torch.cat([t[1] for t in targets]).to(logits.device)
    if indices.shape[0] != int(trained.sum()):
        raise RuntimeError("replay rows in the batch differ from those whose base distributions were computed")
    token_kl = coarse_kl(logits[trained], indices, base_log_probs)
    if weighting == "sequence":
        per_sequence = trained.sum(-1, keepdim=True).expand_as(trained)[trained]
        token_kl = token_kl * sequence_weights(tokens, per_sequence, sequences, token_kl)
    return token_kl.sum() / torch.as_tensor(tokens, device=token_kl.device).clamp(min=1)
