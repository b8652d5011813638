"""The replay experiment end to end on a tiny model, and its paired statistics (synthetic tasks, labelled)."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import configs

from hf_forgetting import ForgettingMatrix
from hf_forgetting.collect import collect_forgetting_matrix
from hf_forgetting.replay import ReplayConfig
from hf_forgetting.replay.experiment import ReplayExperimentArguments, choose_test_tasks, run_replay_experiment
from hf_forgetting.replay.experiment_stats import summarize_runs, summary_markdown


def replay_config(output_dir, **overrides) -> ReplayConfig:
    """The collection's fine-tuning settings (conftest.configs, at 2 steps), with replay."""
    settings = dict(
        output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=4, learning_rate=5e-3, bf16=False,
        gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
        max_length=64, replay_ratio=0.5, replay_heldout_size=4,
    )
    return ReplayConfig(**(settings | overrides))


def collect_matrix(data_files, checkpoint, output_dir):
    args, training, model_args = configs(data_files, checkpoint, output_dir, num_upstream_examples=10)
    collect_forgetting_matrix(args, dataclasses.replace(training, max_steps=2), model_args)
    return ForgettingMatrix.load(output_dir / "matrix"), model_args


@pytest.mark.slow
def test_experiment_arms_share_the_schedule_and_reruns_reuse_only_identical_settings(data_files, tiny_checkpoint, tmp_path):
    matrix, model_args = collect_matrix(data_files, tiny_checkpoint, tmp_path / "collect")
    experiment = ReplayExperimentArguments(
        matrix=str(tmp_path / "collect" / "matrix"), num_test_tasks=1, seeds=[0, 1], known_entries=3, task_eval_examples=2,
        methods=["none", "random", "predicted", "ground_truth", "online", "mir", "predicted_max", "ground_truth_paper"],
    )
    replay_args = replay_config(tmp_path / "replay", online_num_probe=3, mir_candidates=3)
    means = np.nanmean(matrix.values, axis=1)
    task = matrix.task_ids[int(np.argmax(means))]
    assert choose_test_tasks(matrix, experiment) == [task]  # the rule, fixed in advance

    result = run_replay_experiment(experiment, replay_args, model_args)
    runs = result["runs"]
    assert len(runs) == 2 * 8 and {r["seed"] for r in runs} == {0, 1}
    assert all(len(r["heldout_forgetting"]) == 4 and r["replay_pool"] == 6 for r in runs)
    row = dict(zip(matrix.example_ids, matrix.values[matrix.task_ids.index(task)]))
    for run in runs:
        assert len(set(run["heldout_ids"])) == 4 and run["heldout_ids"] == next(r["heldout_ids"] for r in runs if r["seed"] == run["seed"])
        # the top quartile (1 of 4) is the held-out example the matrix row forgets most, whatever the arm
        most = max(range(4), key=lambda i: row[run["heldout_ids"][i]])
        assert run["top_quartile_forgetting"] == pytest.approx(run["heldout_forgetting"][most])
        # 2 steps of 4 rows, one replay row after every 2 task rows: 2 replay rows trained of the epoch's 4
        assert run["replay_rows_trained"] == 2
    assert runs[0]["heldout_ids"] != next(r["heldout_ids"] for r in runs if r["seed"] == 1)  # the split depends on the seed
    replay = {r["method"]: r["replay"] for r in runs}
    assert replay["predicted_max"] == {**replay["predicted"], "replay_selection": "max"}
    assert replay["ground_truth_paper"] == {"replay_strategy": "ground_truth", "replay_selection": "sample",
                                            "replay_temperature": 0.1, "replay_standardize_scores": False}
    assert replay["none"]["replay_strategy"] == "masked" and replay["random"]["replay_strategy"] == "random"
    heldout_by_seed = {r["seed"]: r["settings_key"] for r in runs}
    assert len(heldout_by_seed) == 2
    assert (tmp_path / "replay" / "replay_experiment.md").exists()
    assert len(list((tmp_path / "replay").glob("heldout_base_scores-*.json"))) == 2  # one held-out split per seed

    again = run_replay_experiment(experiment, replay_args, model_args)  # every finished run is reused
    assert [r["heldout_forgetting"] for r in again["runs"]] == [r["heldout_forgetting"] for r in runs]
    broken = sorted((tmp_path / "replay" / "runs").glob("*-none-seed0-*.json"))[0]
    broken.write_text('["not", "a", "run"]')  # a damaged run file is made again, not read as a result
    impostor = sorted((tmp_path / "replay" / "runs").glob("*-random-seed1-*.json"))[0]
    impostor.write_text(sorted((tmp_path / "replay" / "runs").glob("*-ground_truth-seed1-*.json"))[0].read_text())
    base = sorted((tmp_path / "replay").glob("heldout_base_scores-*.json"))[0]
    base.write_text('{"scores": [1, 2]}')
    with pytest.warns(UserWarning, match="not a usable run file of .* / random / seed 1; running it again"):
        repaired = run_replay_experiment(experiment, replay_args, model_args)  # another arm's file is not this arm's run
    assert [r["heldout_forgetting"] for r in repaired["runs"]] == [r["heldout_forgetting"] for r in runs]
    assert [r["method"] for r in repaired["runs"]] == [r["method"] for r in runs]
    changed = run_replay_experiment(
        dataclasses.replace(experiment, methods=["predicted"], seeds=[0]),
        dataclasses.replace(replay_args, replay_temperature=0.5), model_args,
    )
    assert changed["runs"][0]["settings_key"] not in {r["settings_key"] for r in runs}  # recomputed, not reused
    bf16 = run_replay_experiment(dataclasses.replace(experiment, methods=["none"], seeds=[0], score_dtype="bfloat16"),
                                 replay_args, model_args)
    assert bf16["runs"][0]["settings_key"] not in {r["settings_key"] for r in runs}  # another precision: recomputed
    assert len(list((tmp_path / "replay").glob("heldout_base_scores-*.json"))) == 3  # and its base scores too
    assert len(list((tmp_path / "replay" / "runs").glob("*.json"))) == 2 * 8 + 2


@pytest.mark.slow
def test_jobs_of_an_array_make_disjoint_shares_and_a_plain_run_summarizes_them(data_files, tiny_checkpoint, tmp_path):
    _, model_args = collect_matrix(data_files, tiny_checkpoint, tmp_path / "collect")
    experiment = ReplayExperimentArguments(matrix=str(tmp_path / "collect" / "matrix"), num_test_tasks=1, seeds=[0, 1],
                                           task_eval_examples=2, methods=["none", "random", "ground_truth"])
    replay_args = replay_config(tmp_path / "replay")
    shares = [run_replay_experiment(dataclasses.replace(experiment, array_index=i, array_size=2), replay_args, model_args)
              for i in range(2)]
    assert [len(share["runs"]) for share in shares] == [3, 3] and all(share["summary"] is None for share in shares)
    made = {(r["seed"], r["method"]) for share in shares for r in share["runs"]}
    assert made == {(seed, method) for seed in (0, 1) for method in experiment.methods}  # disjoint, and all of them
    assert not (tmp_path / "replay" / "replay_experiment.json").exists()
    files = sorted((tmp_path / "replay" / "runs").glob("*.json"))
    whole = run_replay_experiment(experiment, replay_args, model_args)  # finds every run: only the summary is new
    assert sorted((tmp_path / "replay" / "runs").glob("*.json")) == files and whole["summary"]["methods"]["random"]["runs"] == 2
    with pytest.raises(ValueError, match="array_index must be in 0..array_size-1"):
        dataclasses.replace(experiment, array_index=2, array_size=2)


@pytest.mark.slow
def test_an_experiment_that_fine_tunes_otherwise_than_the_matrix_is_refused_before_training_or_recorded(
    data_files, tiny_checkpoint, tmp_path
):
    _, model_args = collect_matrix(data_files, tiny_checkpoint, tmp_path / "collect")
    experiment = ReplayExperimentArguments(matrix=str(tmp_path / "collect" / "matrix"), num_test_tasks=1, seeds=[0],
                                           task_eval_examples=2, methods=["none"])
    with pytest.raises(ValueError, match=r"training.learning_rate: 0.005 -> 0.001; training.max_steps: 2 -> 3"):
        run_replay_experiment(experiment, replay_config(tmp_path / "replay", learning_rate=1e-3, max_steps=3), model_args)
    lora = dataclasses.replace(model_args, use_peft=True, lora_r=4, lora_target_modules=["q_proj", "v_proj"])
    with pytest.raises(ValueError, match="model.use_peft: False -> True"):
        run_replay_experiment(experiment, replay_config(tmp_path / "replay"), lora)
    with pytest.raises(ValueError, match="replay_heldout_size"):
        run_replay_experiment(experiment, replay_config(tmp_path / "replay", replay_heldout_size=0), model_args)
    assert not (tmp_path / "replay" / "runs").exists()  # refused before any training

    allowed = dataclasses.replace(experiment, allow_settings_mismatch=True)
    result = run_replay_experiment(allowed, replay_config(tmp_path / "replay", learning_rate=1e-3), model_args)
    assert result["runs"][0]["settings_differences"] == ["training.learning_rate: 0.005 -> 0.001"]
    assert "Fine-tuned otherwise than the matrix" in (tmp_path / "replay" / "replay_experiment.md").read_text()


def test_the_control_arm_trains_on_the_random_arms_task_rows_in_their_order(tiny_tokenizer, tmp_path):
    """`none` in the experiment is the random arm's schedule with the replay rows trained on nothing."""
    from conftest import build_model
    from datasets import Dataset

    from hf_forgetting import ReplayTrainer

    words = "list dict tuple string parser logger module object".split()
    task = Dataset.from_list([{"prompt": f"Reverse {w}{i}:", "completion": f" {w[::-1]}"} for i, w in enumerate(words * 2)])
    upstream = Dataset.from_list([{"example_id": f"doc/{i}", "text": f"Notes {i} on {w}."} for i, w in enumerate(words)])
    trainers = {}
    for strategy in ("random", "masked"):
        args = ReplayConfig(output_dir=str(tmp_path / strategy), max_steps=2, per_device_train_batch_size=4, use_cpu=True,
                            bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no", max_length=32,
                            replay_ratio=0.5, replay_heldout_size=2, replay_strategy=strategy, disable_tqdm=True)
        trainers[strategy] = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task,
                                           processing_class=tiny_tokenizer, replay_dataset=upstream)
    assert list(trainers["random"].replay_sampler) == list(trainers["masked"].replay_sampler)
    masked = trainers["masked"].train_dataset
    assert all(set(masked[i]["labels"]) == {-100} for i in range(len(task), len(masked)))
    assert all(masked[i]["labels"] == trainers["random"].train_dataset[i]["labels"] for i in range(len(task)))


def test_summary_is_run_level_on_synthetic_runs():
    """Synthetic runs (labelled): 8 tasks x 2 seeds; predicted replay lowers forgetting by 0.05."""
    rng = np.random.default_rng(0)
    runs = []
    for t in range(8):
        for seed in range(2):
            for method, shift in (("random", 0.05), ("predicted", 0.0), ("none", 0.1)):
                values = (rng.normal(0.1 + shift, 0.01, size=20)).tolist()
                runs.append({"task": f"t{t}", "seed": seed, "method": method, "heldout_forgetting": values,
                             "mean_heldout_forgetting": float(np.mean(values)), "task_eval_nll": 1.0 + rng.normal(0, 0.01),
                             "top_quartile_forgetting": float(np.mean(values[:5])) + 2 * shift,
                             "replayed_true_mean": {"random": 0.1, "predicted": 0.2}.get(method), "pool_true_mean": 0.1})
    summary = summarize_runs(runs)
    test = summary["tests"]["predicted_vs_random"]["heldout_forgetting"]
    assert test["tasks"] == 8 and test["seeds"] == 2 and test["tasks_lower"] == 8
    assert test["ci95"][0] < test["mean_difference"] < test["ci95"][1] < 0
    assert test["paired_t_p"] < 0.001 and test["sign_flip_p"] == pytest.approx(2 / 2**8)  # the exact floor for 8 tasks
    assert test["effect_in_seed_sd"] < -5 and 0 < test["detectable_difference_80"] < 0.05
    assert summary["methods"]["none"]["mean_heldout_forgetting"] > summary["methods"]["random"]["mean_heldout_forgetting"]
    assert summary["methods"]["predicted"]["runs"] == 16
    top = summary["tests"]["predicted_vs_random"]["top_quartile_forgetting"]  # each run's own value, as recorded
    assert top["mean_difference"] == pytest.approx(-0.15, abs=0.01) and top["tasks_lower"] == 8
    replay_at_all = summary["tests"]["random_vs_none"]["heldout_forgetting"]  # random (+0.15) against none (+0.2)
    assert replay_at_all["mean_difference"] == pytest.approx(-0.05, abs=0.01) and replay_at_all["tasks_lower"] == 8
    json.dumps(summary)
    assert summary["methods"]["predicted"]["replayed_true_mean"] == pytest.approx(0.2)
    assert summary["methods"]["none"]["replayed_true_mean"] is None
    markdown = summary_markdown(summary)
    assert "| predicted_vs_random | heldout_forgetting |" in markdown and "| +0.2000 (+0.1000) |" in markdown


def test_sign_flip_p_against_a_naive_enumeration():
    import itertools

    from hf_forgetting.stats import sign_flip_p

    d = np.array([0.3, -0.1, 0.2, 0.25, 0.05])
    count = sum(abs(np.mean(np.array(signs) * d)) >= abs(d.mean()) - 1e-15 for signs in itertools.product((1, -1), repeat=5))
    assert sign_flip_p(d) == pytest.approx(count / 32)
    assert sign_flip_p(np.full(30, 0.1)) < 1e-4  # Monte Carlo beyond 20 tasks


def test_unknown_method():
    with pytest.raises(ValueError, match="Unknown method"):
        ReplayExperimentArguments(matrix="m", methods=["oracle"])


def test_a_matrix_with_too_few_tasks_for_a_test_task_is_refused():
    matrix = ForgettingMatrix(np.zeros((2, 5)), ["a", "b"], [f"e{j}" for j in range(5)])
    with pytest.raises(ValueError, match="at least 2 others: m has 2 tasks"):
        choose_test_tasks(matrix, ReplayExperimentArguments(matrix="m"))
