"""The adapt stage on the tiny model: continued LM training on the upstream passages, cached and
resumable. Upstream text: docstrings of Python's standard library."""

from __future__ import annotations

import json
import shutil

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
                    disable_tqdm=True, max_length=48, seed=0, eval_strategy="epoch") | training
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
    args, training, model = _configs(tmp_path, tiny_checkpoint, num_train_epochs=2)
    adapt_base_model(args, training, model)  # checkpoints at steps 3 and 6
    folder = tmp_path / "adapted"
    # As if killed during the second epoch: its checkpoint and the final model not yet written, the
    # settings (written before training) on disk.
    for name in ("checkpoint-6", "model.safetensors"):
        path = folder / name
        (shutil.rmtree(path) if path.is_dir() else path.unlink())
    settings_only = {"settings": json.loads((folder / "adapt.json").read_text())["settings"]}
    (folder / "adapt.json").write_text(json.dumps(settings_only))
    first_checkpoint = (folder / "checkpoint-3" / "trainer_state.json").stat().st_mtime_ns
    report = adapt_base_model(args, training, model)
    assert report["steps"] == 6 and (folder / "model.safetensors").exists()
    assert (folder / "checkpoint-3" / "trainer_state.json").stat().st_mtime_ns == first_checkpoint  # resumed, not redone
    assert [point["epoch"] for point in report["curve"] if "eval_loss" in point] == [1.0, 2.0]


def test_a_folder_of_unrecorded_or_other_settings_is_refused(tiny_checkpoint, tmp_path):
    args, training, model = _configs(tmp_path, tiny_checkpoint, num_train_epochs=1)
    (tmp_path / "adapted" / "checkpoint-3").mkdir(parents=True)  # e.g. left by an older version
    with pytest.raises(ValueError, match="records no adapt settings"):
        adapt_base_model(args, training, model)
    (tmp_path / "adapted" / "adapt.json").write_text(json.dumps({"settings": {"adapt": "other"}}))
    with pytest.raises(ValueError, match="other settings"):
        adapt_base_model(args, training, model)


def test_a_finished_adaptation_whose_model_was_damaged_is_not_reused(tiny_checkpoint, tmp_path):
    args, training, model = _configs(tmp_path, tiny_checkpoint, num_train_epochs=1, save_strategy="no", eval_strategy="no")
    adapt_base_model(args, training, model)
    folder = tmp_path / "adapted"
    weights = folder / "model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[: len(content) // 2])  # truncated
    with pytest.raises(ValueError, match=r"model\.safetensors has \d+ bytes, \d+ when it was written"):
        adapt_base_model(args, training, model)
    weights.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))  # same size, other content
    with pytest.raises(ValueError, match="model.safetensors has changed since it was written"):
        adapt_base_model(args, training, model)
    weights.unlink()
    with pytest.raises(ValueError, match="model.safetensors is missing"):
        adapt_base_model(args, training, model)
    weights.write_bytes(content)
    assert adapt_base_model(args, training, model)["steps"] > 0  # restored: reused


@pytest.mark.parametrize("record", ["{not json", "[1, 2]", b"\xff\xfe"])
def test_a_damaged_adapt_record_is_an_error_naming_it(tiny_checkpoint, tmp_path, record):
    args, training, model = _configs(tmp_path, tiny_checkpoint, num_train_epochs=1)
    path = tmp_path / "adapted" / "adapt.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(record if isinstance(record, bytes) else record.encode())
    with pytest.raises(ValueError, match=r"adapt\.json: not a readable adapt record"):
        adapt_base_model(args, training, model)
