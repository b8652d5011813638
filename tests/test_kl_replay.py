"""Logit replay (replay_loss="kl"): the coarse KL against its definition, the base's distributions against the
base model's own logits, and the loss against an independent computation. Tiny random model; synthetic tasks."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_TRAINING, build_model
from test_loss_weighting import task_dataset, upstream_dataset

from hf_forgetting import ReplayConfig, ReplayTrainer
from hf_forgetting.replay.distillation import coarse_kl


def _bucket_kl(base_logits, model_logits, top_k):
    """KL(base || model) over the base's top_k tokens and one bucket for the rest, from the probabilities."""
    p, q = base_logits.softmax(-1), model_logits.softmax(-1)
    top = p.topk(top_k).indices
    p_top, q_top = p[top], q[top]
    p_rest, q_rest = 1 - p_top.sum(), 1 - q_top.sum()
    return (p_top * (p_top / q_top).log()).sum() + p_rest * (p_rest / q_rest).log()


def test_coarse_kl_is_the_kl_of_the_bucketed_distributions():
    generator = torch.Generator().manual_seed(0)
    base, model = torch.randn(5, 40, generator=generator), torch.randn(5, 40, generator=generator)
    top = base.log_softmax(-1).topk(6)
    kl = coarse_kl(model, top.indices, top.values)
    expected = torch.stack([_bucket_kl(base[i], model[i], 6) for i in range(5)])
    torch.testing.assert_close(kl, expected, rtol=1e-4, atol=1e-6)
    full = (base.softmax(-1) * (base.log_softmax(-1) - model.log_softmax(-1))).sum(-1)
    assert (kl >= -1e-6).all() and (kl <= full + 1e-5).all()  # a lower bound of the full KL
    torch.testing.assert_close(coarse_kl(base, top.indices, top.values), torch.zeros(5), atol=1e-5, rtol=0)


@pytest.mark.parametrize("weighting", ["token", "sequence"])
def test_the_kl_replay_loss_equals_an_independent_computation_and_trains(tiny_tokenizer, tmp_path, weighting):
    model = build_model(len(tiny_tokenizer))
    base = copy.deepcopy(model)
    args = ReplayConfig(output_dir=str(tmp_path / "kl"), max_steps=2, replay_strategy="random", replay_ratio=1 / 2,
                        replay_loss="kl", replay_kl_top_k=8, replay_loss_weighting=weighting, **TINY_TRAINING)
    trainer = ReplayTrainer(model=model, args=args, train_dataset=task_dataset(), processing_class=tiny_tokenizer,
                            replay_dataset=upstream_dataset())
    rows = [dict(trainer.train_dataset[i]) for i in (0, 1, 24, 25)]  # two task rows, two replay rows
    assert [row["replay_row"] for row in rows] == [-1, -1, 0, 1]
    with torch.no_grad():  # the fine-tune moved the model away from the base
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    batch = trainer.data_collator([dict(row) for row in rows])
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch)).item()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        base_logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    per_row = []
    for row in range(4):
        losses = []
        for position in (labels[row] != -100).nonzero().flatten().tolist():
            if row < 2:  # a task row: its text's NLL
                losses.append(torch.nn.functional.cross_entropy(logits[row, position], labels[row, position]).item())
            else:  # a replay row: the KL to the base, in the place of its NLL
                losses.append(_bucket_kl(base_logits[row, position], logits[row, position], 8).item())
        per_row.append(losses)
    if weighting == "token":
        expected = sum(map(sum, per_row)) / sum(map(len, per_row))
    else:  # the mean over sequences of each sequence's mean
        expected = sum(sum(losses) / len(losses) for losses in per_row) / 4
    assert loss == pytest.approx(expected, rel=1e-4)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())


def test_kl_replay_settings_are_checked():
    with pytest.raises(ValueError, match="replay_loss must be one of"):
        ReplayConfig(output_dir="out", replay_loss="mse", **TINY_TRAINING)
    with pytest.raises(ValueError, match="replay_strategy='none' replays none"):
        ReplayConfig(output_dir="out", replay_loss="kl", replay_strategy="none", **TINY_TRAINING)
    with pytest.raises(ValueError, match="replay_kl_top_k must be >= 1"):
        ReplayConfig(output_dir="out", replay_loss="kl", replay_kl_top_k=0, **TINY_TRAINING)
