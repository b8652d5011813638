"""The replay experiment end to end on a tiny model, and its paired statistics (synthetic tasks, labelled)."""

import json

import numpy as np
import pytest
from conftest import configs

from hf_forgetting.collect import collect_forgetting_matrix
from hf_forgetting.replay import ReplayConfig
from hf_forgetting.replay.experiment import ReplayExperimentArguments, run_replay_experiment, summarize_runs, summary_markdown


def test_experiment_runs_every_method_on_the_same_heldout_examples(data_files, tiny_checkpoint, tmp_path):
    args, training, model_args = configs(data_files, tiny_checkpoint, tmp_path / "collect", num_upstream_examples=10)
    collect_forgetting_matrix(args, training, model_args)
    experiment = ReplayExperimentArguments(
        matrix=str(tmp_path / "collect" / "matrix"), test_tasks=args.tasks[:2], known_entries=3, task_eval_examples=2
    )
    replay_args = ReplayConfig(
        output_dir=str(tmp_path / "replay"), max_steps=3, per_device_train_batch_size=4, learning_rate=5e-3,
        bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True, seed=0,
        disable_tqdm=True, max_length=64, replay_ratio=0.5, replay_heldout_size=4,
    )
    result = run_replay_experiment(experiment, replay_args, model_args)
    runs = result["runs"]
    assert len(runs) == 8 and {r["method"] for r in runs} == {"none", "random", "predicted", "ground_truth"}
    assert all(len(r["heldout_forgetting"]) == 4 for r in runs)
    assert {r["replay_pool"] for r in runs if r["method"] != "none"} == {6}
    assert (tmp_path / "replay" / "replay_experiment.md").exists()
    # a rerun reuses every finished run
    again = run_replay_experiment(experiment, replay_args, model_args)
    assert [r["heldout_forgetting"] for r in again["runs"]] == [r["heldout_forgetting"] for r in runs]


def test_summary_is_run_level_on_synthetic_runs():
    """Synthetic runs (labelled): 8 tasks x 2 seeds; predicted replay lowers forgetting by 0.05."""
    rng = np.random.default_rng(0)
    runs = []
    for t in range(8):
        for seed in range(2):
            for method, shift in (("random", 0.05), ("predicted", 0.0), ("none", 0.1)):
                values = (rng.normal(0.1 + shift, 0.01, size=20)).tolist()
                runs.append({"task": f"t{t}", "seed": seed, "method": method, "heldout_forgetting": values,
                             "mean_heldout_forgetting": float(np.mean(values)), "task_eval_nll": 1.0 + rng.normal(0, 0.01)})
    summary = summarize_runs(runs)
    test = summary["tests"]["predicted_vs_random"]["heldout_forgetting"]
    assert test["tasks"] == 8 and test["seeds"] == 2 and test["tasks_lower"] == 8
    assert test["ci95"][0] < test["mean_difference"] < test["ci95"][1] < 0
    assert test["paired_t_p"] < 0.001 and test["sign_flip_p"] == pytest.approx(2 / 2**8)  # the exact floor for 8 tasks
    assert test["effect_in_seed_sd"] < -5 and 0 < test["detectable_difference_80"] < 0.05
    assert summary["methods"]["none"]["mean_heldout_forgetting"] > summary["methods"]["random"]["mean_heldout_forgetting"]
    assert summary["methods"]["predicted"]["runs"] == 16
    assert "top_quartile_forgetting" in summary["tests"]["predicted_vs_random"]
    json.dumps(summary)
    assert "| predicted_vs_random | heldout_forgetting |" in summary_markdown(summary)


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
