"""ForgettingMonitorCallback on tiny random models, with a plain `transformers.Trainer` and with
`SFTTrainer`: its numbers against forgetting computed independently before and after training.

Task data here is synthetic (string manipulation, labelled as such); the probes are docstrings of
Python's standard library.
"""

import copy
import json

import numpy as np
import pytest
import torch
from conftest import WORDS, build_model, stdlib_corpus
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments
from trl import SFTConfig, SFTTrainer

from hf_forgetting import ForgettingMatrix, ForgettingMonitorCallback, MFPredictor
from hf_forgetting.format.predicted_row import read_predicted_row

COMMON = dict(per_device_train_batch_size=4, learning_rate=5e-3, bf16=False, report_to="none", use_cpu=True, seed=0,
              logging_steps=1, disable_tqdm=True, dataloader_num_workers=0)


def probes(n=12):
    return Dataset.from_list([{"example_id": f"doc/{i}", "text": text[:160]} for i, text in enumerate(stdlib_corpus()[:n])])


def task_rows(n=32):
    return Dataset.from_list([{"prompt": f"Reverse {WORDS[i % 12]}{i}:", "completion": f" {WORDS[i % 12][::-1]}"} for i in range(n)])


def naive_nll(model, tokenizer, texts, max_length):
    """Mean NLL of every token but the first, one text at a time: the independent reference."""
    model.eval()
    with torch.no_grad():
        return np.array([float(model(input_ids=ids, labels=ids).loss) for ids in
                         (torch.tensor([tokenizer(t)["input_ids"][:max_length]]) for t in texts)])


def sft_trainer(tokenizer, tmp_path, callbacks=(), **overrides):
    args = SFTConfig(output_dir=str(tmp_path), **(COMMON | {"max_steps": 6, "max_length": 48, "save_strategy": "no"} | overrides))
    return SFTTrainer(model=build_model(len(tokenizer)), args=args, train_dataset=task_rows(), processing_class=tokenizer,
                      callbacks=list(callbacks))


def test_plain_trainer_logs_the_forgetting_measured_independently(tiny_tokenizer, tmp_path):
    texts = [f"{WORDS[i % 12]} {WORDS[(i * 5) % 12]} {WORDS[(i * 7) % 12]} {i}" for i in range(64)]
    lm_rows = Dataset.from_dict({"input_ids": [tiny_tokenizer(t)["input_ids"] for t in texts]})
    model = build_model(len(tiny_tokenizer))
    base = copy.deepcopy(model)
    monitor = ForgettingMonitorCallback(probes(), every_n_steps=3, num_probes=8, max_length=32)
    # logging_steps=100: the monitor makes the trainer log at its own steps
    args = TrainingArguments(output_dir=str(tmp_path), **(COMMON | {"max_steps": 6, "save_strategy": "no", "logging_steps": 100}))
    trainer = Trainer(model=model, args=args, train_dataset=lm_rows, processing_class=tiny_tokenizer,
                      data_collator=DataCollatorForLanguageModeling(tiny_tokenizer, mlm=False), callbacks=[monitor])
    trainer.train()

    chosen = monitor.probes["text"]
    expected = naive_nll(trainer.model, tiny_tokenizer, chosen, 32) - naive_nll(base, tiny_tokenizer, chosen, 32)
    assert len(chosen) == 8 and abs(expected.mean()) > 1e-3  # the model did move
    assert [entry["step"] for entry in monitor.history] == [3, 6]
    np.testing.assert_allclose(monitor.history[-1]["probe_forgetting"], expected, atol=1e-4)
    logged = [entry for entry in trainer.state.log_history if "forgetting/probe_mean" in entry]
    assert [entry["step"] for entry in logged] == [3, 6]
    assert logged[-1]["forgetting/probe_mean"] == pytest.approx(expected.mean(), abs=1e-4)
    assert (tmp_path / "forgetting_monitor.png").stat().st_size > 0


def test_sft_trainer_with_a_predictor_completes_and_writes_the_row(tiny_tokenizer, tmp_path):
    upstream = probes(20)
    ids = upstream["example_id"]
    matrix = ForgettingMatrix(np.random.default_rng(0).normal(size=(6, len(ids))), [f"t{i}" for i in range(6)], ids)  # synthetic
    predictor = MFPredictor(rank=2).fit(matrix)
    monitor = ForgettingMonitorCallback(upstream, predictor=predictor, every_n_steps=2, num_probes=10, max_length=32)
    trainer = sft_trainer(tiny_tokenizer, tmp_path, save_strategy="steps", save_steps=4)
    trainer.add_callback(monitor)
    monitor.trainer = trainer  # log through trainer.log
    trainer.train()

    last = monitor.history[-1]
    expected_row = predictor.predict(list(monitor.probes["example_id"]), last["probe_forgetting"])
    row_ids, row, step = monitor.predicted_row
    assert step == 6 and row_ids == ids
    np.testing.assert_allclose(row, expected_row, rtol=1e-6)
    assert last["forgetting/predicted_mean"] == pytest.approx(float(expected_row.mean()))
    assert last["forgetting/predicted_top1pct_mean"] == pytest.approx(float(expected_row.max()))  # 1% of 20: the top one
    saved_ids, saved, saved_step, measured = read_predicted_row(tmp_path / "forgetting_row.parquet")
    assert saved_ids == ids and saved_step == 6 and np.allclose(saved, row) and measured["probe_ids"] == monitor.probe_ids
    assert read_predicted_row(tmp_path / "checkpoint-4" / "forgetting_row.parquet")[2] == 4
    logged = [entry["step"] for entry in trainer.state.log_history if "forgetting/predicted_mean" in entry]
    assert logged == [2, 4, 6]


def test_a_resumed_run_measures_against_the_saved_base_scores(tiny_tokenizer, tmp_path):
    def run(output, resume=None):
        monitor = ForgettingMonitorCallback(probes(), every_n_steps=2, num_probes=6, max_length=32)
        trainer = sft_trainer(tiny_tokenizer, output, callbacks=[monitor], save_strategy="steps", save_steps=2)
        trainer.train(resume_from_checkpoint=resume)
        return monitor, trainer

    full, _ = run(tmp_path / "full")
    resumed, trainer = run(tmp_path / "full", resume=str(tmp_path / "full" / "checkpoint-4"))
    np.testing.assert_array_equal(resumed.base_scores, full.base_scores)
    assert [e["step"] for e in resumed.history] == [2, 4, 6]  # the history before the checkpoint comes with it
    np.testing.assert_allclose(resumed.history[-1]["probe_forgetting"], full.history[-1]["probe_forgetting"], atol=1e-5)

    saved = json.loads((tmp_path / "full" / "checkpoint-4" / "forgetting_monitor.json").read_text())
    (tmp_path / "full" / "checkpoint-4" / "forgetting_monitor.json").unlink()
    with pytest.warns(UserWarning, match="monitor is off"):
        off, _ = run(tmp_path / "full", resume=str(tmp_path / "full" / "checkpoint-4"))
    assert off.base_scores is None and saved["base_scores"] == full.base_scores.tolist()


def test_a_forgetting_budget_stops_or_warns(tiny_tokenizer, tmp_path):
    stop = ForgettingMonitorCallback(probes(), every_n_steps=2, num_probes=4, max_length=32, forgetting_budget=-1e9)
    trainer = sft_trainer(tiny_tokenizer, tmp_path / "stop", callbacks=[stop])
    with pytest.warns(UserWarning, match="over the forgetting budget"):
        trainer.train()
    assert trainer.state.global_step == 2
    warn = ForgettingMonitorCallback(probes(), every_n_steps=2, num_probes=4, max_length=32, forgetting_budget=-1e9,
                                     budget_action="warn")
    trainer = sft_trainer(tiny_tokenizer, tmp_path / "warn", callbacks=[warn])
    with pytest.warns(UserWarning, match="training goes on"):
        trainer.train()
    assert trainer.state.global_step == 6


def test_bad_inputs_fail_before_training():
    upstream = probes(8)
    with pytest.raises(ValueError, match="needs 'text', 'prompt' \\+ 'completion' or 'messages'"):
        ForgettingMonitorCallback(upstream.rename_column("text", "body"))
    with pytest.raises(ValueError, match="every_n_steps must be >= 1"):
        ForgettingMonitorCallback(upstream, every_n_steps=0)
    with pytest.raises(ValueError, match="budget_action"):
        ForgettingMonitorCallback(upstream, budget_action="panic")
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        ForgettingMonitorCallback(upstream, max_length=1)
    blank = Dataset.from_dict({"example_id": ["a", "b"], "text": ["Some prose.", " "]})
    with pytest.raises(ValueError, match="probe_dataset row 1: the text is ' ', not a non-empty string"):
        ForgettingMonitorCallback(blank)
    other = ForgettingMatrix(np.zeros((3, 4)), ["a", "b", "c"], ["x/0", "x/1", "x/2", "x/3"])  # synthetic
    with pytest.raises(KeyError, match="doc/0"):
        ForgettingMonitorCallback(upstream, predictor=MFPredictor(rank=1).fit(other))
    with pytest.raises(ValueError, match="example_id"):
        ForgettingMonitorCallback(upstream.remove_columns("example_id"), predictor=MFPredictor(rank=1).fit(other))


def test_the_numbers_reach_tensorboard(tiny_tokenizer, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monitor = ForgettingMonitorCallback(probes(), every_n_steps=3, num_probes=4, max_length=32)
    trainer = sft_trainer(tiny_tokenizer, tmp_path, report_to="tensorboard")
    monitor.trainer = trainer
    trainer.add_callback(monitor)
    trainer.train()
    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    steps = [event.step for event in events.Scalars("train/forgetting/probe_mean")]
    assert steps == [3, 6]


def test_lora_base_scores_are_the_base_models(tiny_tokenizer, tmp_path):
    from peft import LoraConfig

    model = build_model(len(tiny_tokenizer))
    monitor = ForgettingMonitorCallback(probes(), every_n_steps=3, num_probes=5, max_length=32)
    expected_base = naive_nll(copy.deepcopy(model), tiny_tokenizer, monitor.probes["text"], 32)
    args = SFTConfig(output_dir=str(tmp_path), **(COMMON | {"max_steps": 3, "max_length": 48, "save_strategy": "no"}))
    trainer = SFTTrainer(model=model, args=args, train_dataset=task_rows(), processing_class=tiny_tokenizer, callbacks=[monitor],
                         peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    trainer.train()
    np.testing.assert_allclose(monitor.base_scores, expected_base, atol=1e-5)
    expected = naive_nll(trainer.model, tiny_tokenizer, monitor.probes["text"], 32) - expected_base
    np.testing.assert_allclose(monitor.history[-1]["probe_forgetting"], expected, atol=1e-4)
    assert np.abs(expected).max() > 1e-4  # the adapter moved the model


def test_a_predictor_of_another_model_warns_and_sets_the_scored_length(tiny_checkpoint, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    upstream = probes(10)
    other = ForgettingMatrix(np.random.default_rng(0).normal(size=(4, 10)), [f"t{i}" for i in range(4)], upstream["example_id"],
                             metadata={"base_model": "someone/another-model", "settings": {"collect": {"score_max_length": 24}}})
    predictor = MFPredictor(rank=1).fit(other)  # synthetic rows
    predictor.save_pretrained(tmp_path / "predictor")
    loaded = MFPredictor.from_pretrained(tmp_path / "predictor")
    assert loaded.source == {"base_model": "someone/another-model", "score_max_length": 24}
    monitor = ForgettingMonitorCallback(upstream, predictor=loaded, every_n_steps=3, num_probes=4)
    assert monitor.max_length == 24  # as the predictor's matrix was measured
    args = SFTConfig(output_dir=str(tmp_path / "run"), **(COMMON | {"max_steps": 3, "max_length": 48, "save_strategy": "no"}))
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_checkpoint), args=args, train_dataset=task_rows(),
                         processing_class=tiny_tokenizer, callbacks=[monitor])
    with pytest.warns(UserWarning, match="fitted on the forgetting of 'someone/another-model'"):
        trainer.train()


def test_model_identity_matches_spellings_of_one_model(tiny_checkpoint):
    from hf_forgetting.modeling import model_identity

    assert model_identity(str(tiny_checkpoint)) == model_identity(f"{tiny_checkpoint}/../{tiny_checkpoint.name}")
    assert model_identity("someone/model") != model_identity(str(tiny_checkpoint))


@pytest.mark.integration
def test_the_embedded_models_name_and_its_folder_are_one_model():
    from hf_forgetting.modeling import EMBEDDED_MODEL, model_identity, resolve_model_path

    # the embedded name and the folder it loads from (a model's name_or_path) are one model
    assert model_identity(EMBEDDED_MODEL) == model_identity(resolve_model_path(EMBEDDED_MODEL))
