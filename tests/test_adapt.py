"""The adapt stage on the tiny model: continued LM training on the upstream passages, cached and
resumable. Upstream text: docstrings of Python's standard library."""

from __future__ import annotations

import json

import pytest
from conftest import stdlib_corpus, write_jsonl
from trl import ModelConfig, SFTConfig

from hf_forgetting.adapt import AdaptArguments, adapt_base_model


def _configs(tmp_path, checkpoint, **training):
    upstream = [{"example_id": f"doc/{i}", "text": text[:200]} for i, text in enumerate(stdlib_corpus()[:40])]
    args = AdaptArguments(upstream_dataset=write_jsonl(tmp_path / "upstream.jsonl", upstream), num_upstream_examples=12,
                          check_examples=8, score_max_length=32)
    settings = dict(output_dir=str(tmp_path / "adapted"), num_train_epochs=3, per_device_train_batch_size=4, learning_rate=3e-3,
                    bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="epoch", use_cpu=True,
                    disable_tqdm=True, max_length=48, seed=0) | training
    return args, SFTConfig(**settings), ModelConfig(model_name_or_path=str(checkpoint))


def test_adapting_lowers_the_nll_of_the_passages_and_is_reused(tiny_checkpoint, tmp_path):
    args, training, model = _configs(tmp_path, tiny_checkpoint, num_train_epochs=6)
    report = adapt_base_model(args, training, model)
    assert report["trained_passages"] == 12 and report["unseen_passages"] == 8
    assert report["nll_after"]["trained"] < report["nll_before"]["trained"] - 0.5
    assert (tmp_path / "adapted" / "config.json").exists() and (tmp_path / "adapted" / "tokenizer_config.json").exists()
    saved = json.loads((tmp_path / "adapted" / "adapt.json").read_text())
    assert adapt_base_model(args, training, model) == saved  # a finished folder is reused, not retrained
    args_other, training, model = _configs(tmp_path, tiny_checkpoint, num_train_epochs=6, learning_rate=1e-3)
    with pytest.raises(ValueError, match="adapted with other settings"):
        adapt_base_model(args_other, training, model)


def test_a_killed_adaptation_resumes_from_its_last_checkpoint(tiny_checkpoint, tmp_path):
    args, training, model = _configs(tmp_path, tiny_checkpoint, num_train_epochs=1)
    adapt_base_model(args, training, model)  # one epoch, leaving checkpoint-3 behind
    (tmp_path / "adapted" / "adapt.json").unlink()  # as if killed after the checkpoint, before finishing
    args, training, model = _configs(tmp_path, tiny_checkpoint, num_train_epochs=2)
    report = adapt_base_model(args, training, model)
    assert report["steps"] == 6  # continued from step 3, not restarted
