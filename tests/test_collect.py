"""Collection on a tiny random model: rows, resume after interruption, refusal of changed settings.

The task datasets here are synthetic string-manipulation tasks (labelled as such); the upstream
examples are docstrings of Python's standard library.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from conftest import configs, write_jsonl

from hf_forgetting import ForgettingMatrix
from hf_forgetting.collect import CollectArguments, Collector, collect_forgetting_matrix
from hf_forgetting.format.collect_rows import task_filename

WORDS = "list dict tuple string parser logger module object integer pattern".split()


def test_collect_writes_rows_matrix_heatmap_and_summary(data_files, tiny_checkpoint, tmp_path):
    matrix = collect_forgetting_matrix(*configs(data_files, tiny_checkpoint, tmp_path))
    assert matrix.shape == (3, 8) and np.isfinite(matrix.values).all()
    assert np.abs(matrix.values).max() > 1e-3  # fine-tuning moved the upstream NLLs
    assert ForgettingMatrix.load(tmp_path / "matrix") == matrix
    assert len(list((tmp_path / "rows").glob("*.parquet"))) == 3
    assert not (tmp_path / "heatmap.png").exists()  # figures are `analyze`'s: one heatmap, in analysis/
    assert "| task | mean forgetting" in (tmp_path / "summary.md").read_text()
    row = matrix.metadata["rows"][matrix.task_ids[0]]
    assert row["train_steps"] == 3
    assert 0 < row["train_seconds"] and 0 <= row["score_seconds"]  # where the time went (the demo's table)
    assert row["train_seconds"] + row["score_seconds"] <= row["seconds"] + 0.1  # each rounded to 0.1 s
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_row_equals_after_minus_before(data_files, tiny_checkpoint, tmp_path):
    """The stored row is exactly score_after - base score, each recomputable from the files."""
    import pyarrow.parquet as pq

    args, training, model_args = configs(data_files, tiny_checkpoint, tmp_path)
    args.tasks = args.tasks[:1]
    matrix = collect_forgetting_matrix(args, training, model_args)
    base = pq.read_table(tmp_path / "base_scores.parquet").column("score").to_numpy()
    row = pq.read_table(tmp_path / "rows" / task_filename(args.tasks[0]))
    np.testing.assert_allclose(matrix.values[0], row.column("score_after").to_numpy() - base, atol=1e-6)


def test_resume_after_interruption_matches_uninterrupted_run(data_files, tiny_checkpoint, tmp_path, monkeypatch):
    from trl import SFTTrainer

    reference = collect_forgetting_matrix(*configs(data_files, tiny_checkpoint, tmp_path / "reference"))

    original_train, calls = SFTTrainer.train, []

    def train_then_die_on_second_task(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill")
        return original_train(self, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "train", train_then_die_on_second_task)
    with pytest.raises(KeyboardInterrupt):
        collect_forgetting_matrix(*configs(data_files, tiny_checkpoint, tmp_path / "resumed"))
    assert len(list((tmp_path / "resumed" / "rows").glob("*.parquet"))) == 1

    calls.clear()
    monkeypatch.setattr(SFTTrainer, "train", lambda self, *a, **k: calls.append(1) or original_train(self, *a, **k))
    resumed = collect_forgetting_matrix(*configs(data_files, tiny_checkpoint, tmp_path / "resumed"))
    assert len(calls) == 2  # only the two missing rows were trained again
    np.testing.assert_allclose(resumed.values, reference.values, atol=1e-5)
    assert resumed.task_ids == reference.task_ids and resumed.example_ids == reference.example_ids


def test_changed_settings_are_refused(data_files, tiny_checkpoint, tmp_path):
    args, training, model_args = configs(data_files, tiny_checkpoint, tmp_path)
    args.tasks = args.tasks[:1]
    collect_forgetting_matrix(args, training, model_args)
    training.learning_rate = 1e-2
    with pytest.raises(ValueError, match=r"other settings \(training.learning_rate: 0.005 -> 0.01"):
        collect_forgetting_matrix(args, training, model_args)
    training.learning_rate, args.score_dtype = 5e-3, "bfloat16"
    with pytest.raises(ValueError, match=r"other settings \(collect.score_dtype: 'float32' -> 'bfloat16'"):
        collect_forgetting_matrix(args, training, model_args)
    args.score_dtype = "float32"
    for name, value in (("max_grad_norm", 0.5), ("adam_beta1", 0.8), ("label_smoothing_factor", 0.1)):  # not on any list
        changed = dataclasses.replace(training, **{name: value})
        with pytest.raises(ValueError, match=rf"other settings \(training.{name}: "):
            collect_forgetting_matrix(args, changed, model_args)
    # where and how it runs may change: output places, logging, the batch layout at the same effective batch
    relaid = dataclasses.replace(training, logging_steps=7, per_device_train_batch_size=training.per_device_train_batch_size // 2,
                                 gradient_accumulation_steps=2 * training.gradient_accumulation_steps)
    collect_forgetting_matrix(args, relaid, model_args)


def test_a_damaged_settings_file_is_a_clear_error(data_files, tiny_checkpoint, tmp_path):
    args, training, model_args = configs(data_files, tiny_checkpoint, tmp_path)
    tmp_path.mkdir(exist_ok=True)
    for text in ("[]", "{not json", '{"collect": 1}'):
        (tmp_path / "run.json").write_text(text)
        with pytest.raises(ValueError, match="run.json: not (valid JSON|the settings file of a collection)"):
            collect_forgetting_matrix(args, training, model_args)


def test_a_collection_started_by_a_version_that_recorded_fewer_settings_resumes_with_a_warning(
    data_files, tiny_checkpoint, tmp_path
):
    args, training, model_args = configs(data_files, tiny_checkpoint, tmp_path)
    args.tasks = args.tasks[:1]
    first = collect_forgetting_matrix(args, training, model_args)
    run = json.loads((tmp_path / "run.json").read_text())
    kept = ("learning_rate", "max_steps", "seed", "per_device_train_batch_size", "gradient_accumulation_steps", "bf16")
    run["training"] = {key: run["training"][key] for key in kept}  # the allowlist older versions recorded
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.warns(UserWarning, match=r"does not record .*training.max_length.*: resuming without checking them"):
        again = collect_forgetting_matrix(args, training, model_args)
    np.testing.assert_array_equal(again.values, first.values)


def test_unreadable_row_is_collected_again(data_files, tiny_checkpoint, tmp_path, capsys):
    args, training, model_args = configs(data_files, tiny_checkpoint, tmp_path)
    args.tasks = args.tasks[:1]
    first = collect_forgetting_matrix(args, training, model_args)
    (tmp_path / "rows" / task_filename(args.tasks[0])).write_bytes(b"not parquet")
    again = collect_forgetting_matrix(args, training, model_args)
    assert "unreadable" in capsys.readouterr().out
    np.testing.assert_allclose(again.values, first.values, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"metric": "accuracy"}, "metric"),
        ({"tasks": []}, "at least one"),
        ({"tasks": ["a", "a"]}, "unique"),
        ({"num_upstream_examples": 0}, "positive"),
        ({"score_dtype": "float16"}, "score_dtype"),
    ],
)
def test_bad_collect_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        CollectArguments(**overrides)


def test_too_many_upstream_examples_is_a_clear_error(data_files, tiny_checkpoint, tmp_path):
    args, training, model_args = configs(data_files, tiny_checkpoint, tmp_path, num_upstream_examples=10_000)
    with pytest.raises(ValueError, match="has only 12"):
        Collector(args, training, model_args)


@pytest.mark.slow
def test_cli_killed_with_sigkill_resumes(data_files, tiny_checkpoint, tmp_path):
    """A real kill -9 of `hf-forgetting collect` mid-run, then the same command again."""
    args, training, _ = configs(data_files, tiny_checkpoint, tmp_path)
    recipe = {
        "model_name_or_path": str(tiny_checkpoint), "upstream_dataset": args.upstream_dataset,
        "num_upstream_examples": 8, "tasks": args.tasks, "max_train_examples": 8, "score_max_length": 48,
        "score_batch_size": 4, "max_steps": 3, "per_device_train_batch_size": 4, "learning_rate": 5e-3,
        "bf16": False, "gradient_checkpointing": False, "report_to": "none", "save_strategy": "no",
        "use_cpu": True, "seed": 0, "max_length": 64, "disable_tqdm": True,
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    command = [sys.executable, "-m", "hf_forgetting", "collect", "--config", str(tmp_path / "recipe.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    subprocess.run([*command, "--output_dir", str(tmp_path / "reference")], check=True, env=env, capture_output=True)
    reference = ForgettingMatrix.load(tmp_path / "reference" / "matrix")

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([*command, "--output_dir", str(killed_dir)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((killed_dir / "rows").glob("*.parquet")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = len(list((killed_dir / "rows").glob("*.parquet")))
    assert 1 <= finished_before_kill < 3 and not (killed_dir / "matrix").exists()

    result = subprocess.run([*command, "--output_dir", str(killed_dir)], check=True, env=env,
                            capture_output=True, text=True)
    assert f"Resuming: {finished_before_kill} of 3 task rows" in result.stdout
    resumed = ForgettingMatrix.load(killed_dir / "matrix")
    np.testing.assert_allclose(resumed.values, reference.values, atol=1e-5)


def test_lora_collection(data_files, tiny_checkpoint, tmp_path):
    args, training, model_args = configs(data_files, tiny_checkpoint, tmp_path)
    args.tasks = args.tasks[:2]
    model_args.use_peft, model_args.lora_r, model_args.lora_target_modules = True, 4, ["q_proj", "v_proj"]
    training.learning_rate = 5e-2
    matrix = collect_forgetting_matrix(args, training, model_args)
    assert matrix.shape == (2, 8) and np.abs(matrix.values).max() > 1e-4
    assert matrix.metadata["settings"]["model"]["use_peft"] is True


def test_exact_match_drop_keeps_only_examples_the_base_model_answers(data_files, tiny_checkpoint, tmp_path):
    """Half the reference answers are the base model's own greedy outputs, so its exact match is
    1 on those and 0 on the rest; em_drop is then defined (0 or 1) only on the first half."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_forgetting import exact_match_scores

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    prompts = [f"Question {i}: what is {w}?\nAnswer:" for i, w in enumerate(WORDS[:8])]
    tokenizer.padding_side = "left"
    generated = []
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        generated.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    rows = [
        {"example_id": f"qa/{i}", "prompt": p, "completion": " x",
         "answers": [generated[i].strip().split("\n\n")[0]] if i < 4 else ["certainly not this"]}
        for i, p in enumerate(prompts)
    ]
    upstream = write_jsonl(tmp_path / "qa.jsonl", rows)
    before = exact_match_scores(model, tokenizer, [dict(r) for r in rows], max_new_tokens=4, show_progress=False)
    assert before.tolist() == [1.0] * 4 + [0.0] * 4

    args, training, model_args = configs(
        {**data_files, "upstream": upstream}, tiny_checkpoint, tmp_path / "out", metric="em_drop", em_max_new_tokens=4
    )
    training.learning_rate = 5e-2
    matrix = collect_forgetting_matrix(args, training, model_args)
    assert matrix.metric == "em_drop"
    first_half = [matrix.example_ids.index(f"qa/{i}") for i in range(4)]
    second_half = [matrix.example_ids.index(f"qa/{i}") for i in range(4, 8)]
    assert np.isnan(matrix.values[:, second_half]).all()
    assert np.isin(matrix.values[:, first_half], (0.0, 1.0)).all()


def test_collect_with_the_monitor_records_its_prediction_next_to_the_measured_row(data_files, tiny_checkpoint, tmp_path):
    from hf_forgetting import MFPredictor
    from hf_forgetting.format.predicted_row import read_predicted_row

    first = collect_forgetting_matrix(*configs(data_files, tiny_checkpoint, tmp_path / "first", tasks=[data_files["reverse"]]))
    synthetic = ForgettingMatrix(np.random.default_rng(0).normal(size=(5, 8)), [f"t{i}" for i in range(5)], first.example_ids)
    MFPredictor(rank=2).fit(synthetic).save_pretrained(tmp_path / "predictor")
    monitored = dict(monitor_probes=4, monitor_every_n_steps=3, monitor_max_length=48, monitor_predictor=str(tmp_path / "predictor"))
    matrix = collect_forgetting_matrix(*configs(data_files, tiny_checkpoint, tmp_path / "second", **monitored))
    for task, values in zip(matrix.task_ids, matrix.values):
        check = matrix.metadata["rows"][task]["monitor"]
        ids, predicted, step, measured = read_predicted_row(tmp_path / "second" / "monitor" / task_filename(task))
        assert step == 3 and ids == first.example_ids and check["probes"] == 4
        probe_columns = [ids.index(i) for i in measured["probe_ids"]]
        # the monitor's probes, measured on the tuned model, are the measured row's entries
        np.testing.assert_allclose(measured["probe_forgetting"], values[probe_columns], atol=1e-4)
        assert check["rmse"] == pytest.approx(float(np.sqrt(np.mean((predicted - values) ** 2))), rel=1e-5)
    assert "The forgetting monitor's predicted row against the measured row" in (tmp_path / "second" / "summary.md").read_text()
    # the monitor only reads the model: the same folder without it reuses every row
    again = collect_forgetting_matrix(*configs(data_files, tiny_checkpoint, tmp_path / "second"))
    assert again == matrix
