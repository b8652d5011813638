"""`LabelPositionsSFTTrainer` computes TRL's loss and gradients while projecting only the label positions
through the LM head; where its shortcut is not TRL's whole loss it is `SFTTrainer`. Tiny random models;
the task data is synthetic string manipulation (labelled as such)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_TRAINING, WORDS, build_model
from datasets import Dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

from hf_forgetting.label_positions_loss import LabelPositionsSFTTrainer


def task_dataset(n=16):
    """Prompts of different lengths, so batches carry padding as well as masked prompt positions."""
    return Dataset.from_list([{"prompt": f"Reverse the word number {i} " + "please " * (i % 4) + f"{WORDS[i % 12]}:",
                               "completion": f" {WORDS[i % 12][::-1]}"} for i in range(n)])


def trainer(cls, tokenizer, tmp_path, model=None, **overrides):
    args = SFTConfig(output_dir=str(tmp_path / cls.__name__), **(TINY_TRAINING | {"max_steps": 3} | overrides))
    return cls(model=model or build_model(len(tokenizer)), args=args, train_dataset=task_dataset(), processing_class=tokenizer)


def first_batch(trainer_):
    return next(iter(trainer_.get_train_dataloader()))


def loss_and_grads(trainer_, batch, num_items_in_batch=None):
    model = trainer_.model.train()
    model.zero_grad()
    loss = trainer_.compute_loss(model, dict(batch), num_items_in_batch=num_items_in_batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def naive_loss(model, batch, num_items_in_batch=None):
    """Reference: full logits at every position, cross-entropy over the shifted labels that are not -100."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="sum")
    return total / (labels.ne(-100).sum() if num_items_in_batch is None else num_items_in_batch)


@pytest.mark.parametrize("num_items_in_batch", [None, 23])
def test_loss_and_gradients_equal_trl_and_a_naive_full_logits_loss(tiny_tokenizer, tmp_path, monkeypatch, num_items_in_batch):
    ours = trainer(LabelPositionsSFTTrainer, tiny_tokenizer, tmp_path)
    trl = trainer(SFTTrainer, tiny_tokenizer, tmp_path)
    batch = first_batch(ours)
    labels = batch["labels"][:, 1:]
    assert labels.eq(-100).any(-1).all() and batch["attention_mask"].eq(0).any()  # prompts and padding are masked
    trl_loss, trl_grads = loss_and_grads(trl, batch, num_items_in_batch)

    def trl_path(*args, **kwargs):
        raise AssertionError("the CPU training loss went through SFTTrainer.compute_loss")

    monkeypatch.setattr(SFTTrainer, "compute_loss", trl_path)
    loss, grads = loss_and_grads(ours, batch, num_items_in_batch)
    assert loss.item() == pytest.approx(trl_loss.item(), rel=1e-6)
    with torch.no_grad():
        assert loss.item() == pytest.approx(naive_loss(build_model(len(tiny_tokenizer)).train(), batch, num_items_in_batch).item(), rel=1e-6)
    assert grads.keys() == trl_grads.keys() and len(grads) > 0
    for name, grad in grads.items():
        torch.testing.assert_close(grad, trl_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_training_reaches_the_same_parameters_as_sft_trainer(tiny_tokenizer, tmp_path):
    ours = trainer(LabelPositionsSFTTrainer, tiny_tokenizer, tmp_path)
    trl = trainer(SFTTrainer, tiny_tokenizer, tmp_path)
    before = {name: p.detach().clone() for name, p in ours.model.named_parameters()}
    ours_loss, trl_loss = ours.train().training_loss, trl.train().training_loss
    assert ours_loss == pytest.approx(trl_loss, rel=1e-5)
    trained = dict(trl.model.named_parameters())
    moved = 0
    for name, p in ours.model.named_parameters():
        torch.testing.assert_close(p, trained[name], rtol=1e-4, atol=1e-5, msg=name)
        moved += not torch.equal(p, before[name])
    assert moved > 0


def test_lora_adapters_train_as_with_sft_trainer(tiny_tokenizer, tmp_path):
    lora = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    runs = []
    for cls in (LabelPositionsSFTTrainer, SFTTrainer):
        args = SFTConfig(output_dir=str(tmp_path / cls.__name__), max_steps=3, **TINY_TRAINING)
        run = cls(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                  processing_class=tiny_tokenizer, peft_config=LoraConfig(**lora))
        runs.append((run.train().training_loss, {n: p.detach() for n, p in run.model.named_parameters() if "lora_B" in n}))
    (ours_loss, ours_lora), (trl_loss, trl_lora) = runs
    assert ours_loss == pytest.approx(trl_loss, rel=1e-5)
    assert ours_lora and all(p.abs().sum() > 0 for p in ours_lora.values())  # lora_B starts at zero: it trained
    for name, p in ours_lora.items():
        torch.testing.assert_close(p, trl_lora[name], rtol=1e-4, atol=1e-5, msg=name)


def test_scaled_logits_are_left_to_trl(tiny_tokenizer, tmp_path):
    """A config whose logits are more than lm_head(hidden): TRL's path scales them, and so must we."""
    models = [build_model(len(tiny_tokenizer)) for _ in range(2)]
    for model in models:
        model.config.logit_scale = 100.0  # a random tiny model's logits are ~0.01: unscaled, every loss is ~log(vocab)
    ours = trainer(LabelPositionsSFTTrainer, tiny_tokenizer, tmp_path, model=models[0])
    trl = trainer(SFTTrainer, tiny_tokenizer, tmp_path, model=models[1])
    batch = first_batch(ours)
    scaled, _ = loss_and_grads(ours, batch)
    assert scaled.item() == pytest.approx(loss_and_grads(trl, batch)[0].item(), rel=1e-6)
    with torch.no_grad():
        assert abs(scaled.item() - naive_loss(build_model(len(tiny_tokenizer)).train(), batch).item()) > 0.1


def test_dft_loss_is_left_to_trl(tiny_tokenizer, tmp_path):
    ours = trainer(LabelPositionsSFTTrainer, tiny_tokenizer, tmp_path, loss_type="dft")
    trl = trainer(SFTTrainer, tiny_tokenizer, tmp_path, loss_type="dft")
    batch = first_batch(ours)
    assert loss_and_grads(ours, batch)[0].item() == pytest.approx(loss_and_grads(trl, batch)[0].item(), rel=1e-6)


def test_bf16_trains_in_the_mixed_precision_trl_trains_in(tiny_tokenizer, tmp_path):
    """Accelerate puts autocast on the wrapped model's forward, which this path bypasses: it must apply it itself."""
    computed_in = {}
    for cls, bf16 in ((LabelPositionsSFTTrainer, True), (SFTTrainer, True), (LabelPositionsSFTTrainer, False)):
        run = trainer(cls, tiny_tokenizer, tmp_path, bf16=bf16, max_steps=1)
        dtypes = computed_in.setdefault((cls.__name__, bf16), set())
        for layer in (run.model.model.layers[0].mlp.up_proj, run.model.lm_head):
            layer.register_forward_hook(lambda module, args, output, seen=dtypes: seen.add(output.dtype))
        run.train()
    assert computed_in["LabelPositionsSFTTrainer", True] == {torch.bfloat16}
    assert computed_in["SFTTrainer", True] == {torch.bfloat16}  # TRL's head reads the weight, not the module
    assert computed_in["LabelPositionsSFTTrainer", False] == {torch.float32}
