"""Per-sequence loss weighting trains exactly the model the trainer holds (issue: a deep copy of a model
that went through a Trainer kept a forward bound to the original), and training that changes nothing
stops with a one-line error. Tiny random models; task data is synthetic string manipulation (labelled)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_TRAINING, WORDS, build_model
from datasets import Dataset
from transformers import Trainer, TrainingArguments
from trl import SFTConfig, SFTTrainer

from hf_forgetting import ReplayConfig, ReplayTrainer
from hf_forgetting.training_guard import ParameterUpdateGuard, TrainingDidNotUpdateError


def task_dataset(n=24):
    return Dataset.from_list([{"prompt": f"Reverse {WORDS[i % 12]}{i}:", "completion": f" {WORDS[i % 12][::-1]}"} for i in range(n)])


def upstream_dataset(n=12):
    return Dataset.from_list([{"example_id": f"doc/{i}", "text": f"Document {i} is about {w}s and the {w} module, at length."}
                              for i, w in enumerate(WORDS[:n])])


def replay_config(tmp_path, weighting, **overrides):
    settings = dict(max_steps=1, replay_strategy="random", replay_ratio=1 / 2, replay_heldout_size=2) | TINY_TRAINING | overrides
    return ReplayConfig(output_dir=str(tmp_path / weighting), replay_loss_weighting=weighting, **settings)


def trained_then_copied(tokenizer, tmp_path):
    """The reproduction: a model adapted with SFTTrainer, deep-copied as TRL copies reference models."""
    base = build_model(len(tokenizer))
    SFTTrainer(model=base, args=SFTConfig(output_dir=str(tmp_path / "base"), max_steps=1, **TINY_TRAINING),
               train_dataset=task_dataset(), processing_class=tokenizer).train()
    return base, copy.deepcopy(base)


def parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def changed(before, model):
    after = parameters(model)
    return [name for name in before if not torch.equal(before[name], after[name])]


@pytest.mark.parametrize("weighting", ["token", "sequence"])
def test_a_deep_copy_of_a_trained_model_trains_under_both_weightings(tiny_tokenizer, tmp_path, weighting):
    base, model = trained_then_copied(tiny_tokenizer, tmp_path)
    base_before, before = parameters(base), parameters(model)
    ReplayTrainer(model=model, args=replay_config(tmp_path, weighting), train_dataset=task_dataset(),
                  processing_class=tiny_tokenizer, replay_dataset=upstream_dataset()).train()
    assert len(changed(before, model)) == len(before)  # every parameter of the copy moved
    assert not changed(base_before, base)  # and the original did not


@pytest.mark.parametrize("weighting", ["token", "sequence"])
def test_fresh_model_lora_and_gradient_accumulation_train_under_both_weightings(tiny_tokenizer, tmp_path, weighting):
    from peft import LoraConfig

    fresh = build_model(len(tiny_tokenizer))
    before = parameters(fresh)
    ReplayTrainer(model=fresh, args=replay_config(tmp_path, weighting, gradient_accumulation_steps=2),
                  train_dataset=task_dataset(), processing_class=tiny_tokenizer, replay_dataset=upstream_dataset()).train()
    assert len(changed(before, fresh)) == len(before)

    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=replay_config(tmp_path, weighting),
                            train_dataset=task_dataset(), processing_class=tiny_tokenizer, replay_dataset=upstream_dataset(),
                            peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora_before = parameters(trainer.model)
    trainer.train()
    assert lora_before and len(changed(lora_before, trainer.model)) == len(lora_before)


def _independent_sequence_loss(model, batch):
    """Mean over sequences of each sequence's mean token NLL, from full logits (a naive reference)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_row = []
    for row in range(len(batch["input_ids"])):
        labels = batch["labels"][row, 1:]
        if (labels != -100).any():
            nll = torch.nn.functional.cross_entropy(logits[row, :-1], labels, ignore_index=-100, reduction="sum")
            per_row.append(nll / (labels != -100).sum())
    return torch.stack(per_row)


def test_sequence_loss_equals_an_independent_computation(tiny_tokenizer, tmp_path):
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=replay_config(tmp_path, "sequence"),
                            train_dataset=task_dataset(), processing_class=tiny_tokenizer, replay_dataset=upstream_dataset())
    rows = [trainer.train_dataset[i] for i in (0, 1, 24, 25)]  # two task rows, two replay rows
    batch = trainer.data_collator(rows)
    reference = _independent_sequence_loss(trainer.model, batch)
    assert trainer.compute_loss(trainer.model, dict(batch)).item() == pytest.approx(reference.mean().item(), rel=1e-5)
    # within an accumulated batch of 10 sequences, this micro-batch contributes its sum / 10
    trainer._sequences_in_batch = 10
    loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=torch.tensor(999))
    assert loss.item() == pytest.approx(reference.sum().item() / 10, rel=1e-5)


def test_sequence_weighting_refuses_losses_it_cannot_reweight(tmp_path):
    with pytest.raises(ValueError, match="needs loss_type='nll' and no label smoothing"):
        replay_config(tmp_path, "sequence", label_smoothing_factor=0.1)


def test_training_that_changes_nothing_is_a_one_line_error(tiny_tokenizer, tmp_path):
    """A plain Trainer's forward on the deep copy runs the original's parameters (TRL's patched forward
    keeps a closure over it): the guard stops the run at the first step instead of a silent result."""
    _, model = trained_then_copied(tiny_tokenizer, tmp_path)
    rows = task_dataset().map(lambda row: tiny_tokenizer(row["prompt"] + row["completion"]), remove_columns=["prompt", "completion"])
    rows = rows.map(lambda row: {"labels": row["input_ids"]})
    args = TrainingArguments(output_dir=str(tmp_path / "plain"), max_steps=2, per_device_train_batch_size=1, learning_rate=1e-2,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[ParameterUpdateGuard()])
    with pytest.raises(TrainingDidNotUpdateError, match=r"left all \d+ trainable parameters of the LlamaForCausalLM unchanged"):
        trainer.train()


def test_the_guard_waits_for_a_positive_learning_rate(tiny_tokenizer, tmp_path):
    """A warm-up from 0 changes nothing in its first step; that is not an error."""
    args = replay_config(tmp_path, "token", max_steps=3, warmup_steps=2, lr_scheduler_type="linear")
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                            processing_class=tiny_tokenizer, replay_dataset=upstream_dataset())
    trainer.train()
    guard = next(c for c in trainer.callback_handler.callbacks if isinstance(c, ParameterUpdateGuard))
    assert guard.checked


@pytest.mark.slow
def test_sequence_weighting_trains_under_two_processes(tiny_checkpoint, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent / "scripts" / "replay_distributed.py"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--master_port", "29521", "--nproc_per_node", "2"]
    subprocess.run([*launcher, str(script), str(tiny_checkpoint), str(tmp_path), "sequence"], check=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(rank["world"] == 2 and rank["after"] != rank["before"] for rank in ranks)
    assert ranks[0]["after"] == pytest.approx(ranks[1]["after"], rel=1e-9)  # the ranks stay in step
