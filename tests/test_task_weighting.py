"""FLOW task weighting (task_weighting="flow"): the weights against the formula of the authors' code, and the loss
against an independent computation. Tiny random model; task data is synthetic string manipulation (labelled)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING, build_model
from test_loss_weighting import task_dataset, upstream_dataset

from hf_forgetting import ReplayConfig, ReplayTrainer
from hf_forgetting.replay import trainer as trainer_module
from hf_forgetting.replay.task_weighting import flow_weights


def test_flow_weights_are_exp_of_minus_the_loss_over_its_median():
    losses = np.array([1.0, 2.0, 4.0, np.nan])
    np.testing.assert_allclose(flow_weights(losses), [np.exp(-0.5), np.exp(-1.0), np.exp(-2.0), 0.0])  # median 2
    np.testing.assert_allclose(flow_weights(losses, temperature=1.0), [np.exp(-1), np.exp(-2), np.exp(-4), 0.0])
    with pytest.raises(ValueError, match="none is finite"):
        flow_weights([np.nan, np.nan])
    with pytest.raises(ValueError, match="finite number > 0"):
        flow_weights([0.0, 0.0])  # a median of 0 cannot be a temperature


def _row_nll(model, input_ids, labels):
    """Mean NLL of one row's labelled tokens, by a plain forward (the reference)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([input_ids])).logits[0, :-1]
    targets = torch.tensor(labels[1:])
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100).item()


@pytest.mark.parametrize("strategy", ["none", "random"])
def test_flow_weights_every_task_row_by_the_base_loss_and_the_loss_uses_them(tiny_tokenizer, tmp_path, strategy, monkeypatch):
    model = build_model(len(tiny_tokenizer))
    args = ReplayConfig(output_dir=str(tmp_path / strategy), max_steps=2, replay_strategy=strategy, replay_ratio=1 / 2,
                        task_weighting="flow", **TINY_TRAINING)
    trainer = ReplayTrainer(model=model, args=args, train_dataset=task_dataset(), processing_class=tiny_tokenizer,
                            replay_dataset=upstream_dataset() if strategy != "none" else None)
    rows = trainer.train_dataset
    losses = np.array([_row_nll(model, rows[i]["input_ids"], rows[i]["labels"]) for i in range(24)])
    np.testing.assert_allclose(trainer.task_weights, np.exp(-losses / np.median(losses)), rtol=1e-4)
    assert rows["sequence_weight"][24:] == [1.0] * (len(rows) - 24)  # replay rows are not re-weighted
    picked = [rows[i] for i in ((0, 1, 24, 25) if strategy != "none" else (0, 1, 2, 3))]
    weights = [row["sequence_weight"] for row in picked]
    batch = trainer.data_collator([dict(row) for row in picked])
    torch.testing.assert_close(batch["sequence_weight"], torch.tensor(weights))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"][:, 1:], ignore_index=-100, reduction="none")
    expected = (token_nll.sum(-1) * torch.tensor(weights)).sum() / (batch["labels"][:, 1:] != -100).sum()
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    seen, hook = [], trainer_module.log_prob_scaling_hook
    monkeypatch.setattr(trainer_module, "log_prob_scaling_hook",
                        lambda weighting, tokens, sequences, row_weights=None: seen.append(row_weights) or hook(weighting, tokens, sequences, row_weights))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.train()  # the weights reach training through the dataloader, not dropped with the unused columns
    column = np.array(rows["sequence_weight"])
    assert len(seen) == 2 and all(w is not None and len(w) == 4 for w in seen)
    assert all(np.abs(w.numpy()[:, None] - column[None, :]).min(axis=1).max() < 1e-6 for w in seen)  # the rows' own weights
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())


def test_flow_settings_are_checked():
    with pytest.raises(ValueError, match="task_weighting must be one of"):
        ReplayConfig(output_dir="out", task_weighting="focal", **TINY_TRAINING)
    with pytest.raises(ValueError, match="task_weighting_temperature must be a finite number > 0"):
        ReplayConfig(output_dir="out", task_weighting="flow", task_weighting_temperature=0.0, **TINY_TRAINING)
    with pytest.raises(ValueError, match="task_weighting='flow' re-weights the per-token NLL"):
        ReplayConfig(output_dir="out", task_weighting="flow", label_smoothing_factor=0.1, **TINY_TRAINING)
