"""Scale-out of collection: task subsets, job arrays, 2 processes under accelerate, merging rows
from several jobs in a shared folder or a Hub repo. Tiny random model, synthetic tasks (see
test_collect.py)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import configs

from hf_forgetting import ForgettingMatrix
from hf_forgetting.collect import CollectArguments, parse_index_ranges
from hf_forgetting.data import load_task

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_index_ranges():
    assert parse_index_ranges("3,7-9", 10) == [3, 7, 8, 9]
    assert parse_index_ranges("0, 2-2,1", 3) == [0, 1, 2]
    for bad in ("10", "3-1", "a", "1,,2", "-1"):
        with pytest.raises(ValueError, match="task_indices"):
            parse_index_ranges(bad, 10)


def test_task_selection_and_its_validation():
    tasks = [f"t{i}" for i in range(7)]
    assert CollectArguments(tasks=tasks, task_indices="3,5-6").selected_tasks() == ["t3", "t5", "t6"]
    assert CollectArguments(tasks=tasks, array_index=1, array_size=3).selected_tasks() == ["t1", "t4"]
    assert CollectArguments(tasks=tasks, array_index=9, array_size=10).selected_tasks() == []
    with pytest.raises(ValueError, match="not both"):
        CollectArguments(tasks=tasks, task_indices="1", array_index=0, array_size=2)
    with pytest.raises(ValueError, match="go together"):
        CollectArguments(tasks=tasks, array_index=0)
    with pytest.raises(ValueError, match="0..array_size-1"):
        CollectArguments(tasks=tasks, array_index=2, array_size=2)
    with pytest.raises(ValueError, match="outside 0..6"):
        CollectArguments(tasks=tasks, task_indices="2-7")


def test_task_filter_and_field_mapping(tmp_path):
    rows = [{"instruction": f"Say {i}", "response": f" {i}", "category": "even" if i % 2 == 0 else "odd"} for i in range(10)]
    path = tmp_path / "mixture.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = load_task(f"{path}@category=odd", prompt_field="instruction", completion_field="response")
    assert sorted(task.column_names) == ["completion", "example_id", "prompt"]
    assert sorted(task["prompt"]) == [f"Say {i}" for i in (1, 3, 5, 7, 9)]
    assert all(example_id.startswith("mixture.jsonl@category=odd/train/") for example_id in task["example_id"])
    with pytest.raises(ValueError, match="no row has category == 'none'"):
        load_task(f"{path}@category=none", prompt_field="instruction", completion_field="response")
    with pytest.raises(ValueError, match="no column 'kind'"):
        load_task(f"{path}@kind=odd")
    with pytest.raises(ValueError, match="needs a 'text' column"):
        load_task(str(path))


def _recipe(data_files, checkpoint, path, **overrides):
    args, _, _ = configs(data_files, checkpoint, path.parent)
    recipe = {
        "model_name_or_path": str(checkpoint), "upstream_dataset": args.upstream_dataset, "num_upstream_examples": 8,
        "tasks": args.tasks, "max_train_examples": 8, "score_max_length": 48, "score_batch_size": 4, "max_steps": 3,
        "per_device_train_batch_size": 4, "learning_rate": 5e-3, "bf16": False, "gradient_checkpointing": False,
        "report_to": "none", "save_strategy": "no", "use_cpu": True, "seed": 0, "max_length": 64, "disable_tqdm": True,
        **overrides,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def _collect(recipe, output_dir, *flags, launcher=(sys.executable,), env=None):
    command = [*launcher, "-m", "hf_forgetting", "collect", "--config", str(recipe), "--output_dir", str(output_dir), *flags]
    result = subprocess.run(command, env=env or ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_the_cpu_2proc_config_give_the_one_process_matrix(data_files, tiny_checkpoint, tmp_path):
    recipe = _recipe(data_files, tiny_checkpoint, tmp_path / "recipe.yaml", per_device_train_batch_size=2)
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    two = [
        accelerate, "launch", "--config_file", str(ROOT / "recipes" / "accelerate_configs" / "cpu_2proc.yaml"),
        "--main_process_port", str(_free_port()),
    ]
    _collect(recipe, tmp_path / "two", launcher=two)
    one = [accelerate, "launch", "--config_file", str(ROOT / "recipes" / "accelerate_configs" / "cpu.yaml")]
    _collect(recipe, tmp_path / "one", "--per_device_train_batch_size", "4", launcher=one)  # the same effective batch

    two_processes = ForgettingMatrix.load(tmp_path / "two" / "matrix")
    one_process = ForgettingMatrix.load(tmp_path / "one" / "matrix")
    assert two_processes.metadata["settings"]["world_size"] == 2
    assert {row["world_size"] for row in two_processes.metadata["rows"].values()} == {2}
    assert one_process.metadata["settings"]["world_size"] == 1
    np.testing.assert_allclose(two_processes.values, one_process.values, atol=1e-5)
    assert np.abs(one_process.values).max() > 1e-3


@pytest.mark.slow
def test_two_processes_that_do_not_form_a_group_are_refused(data_files, tiny_checkpoint, tmp_path):
    recipe = _recipe(data_files, tiny_checkpoint, tmp_path / "recipe.yaml", use_cpu=False)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    command = [*torchrun, "-m", "hf_forgetting", "collect", "--config", str(recipe), "--output_dir", str(tmp_path / "out")]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    assert result.returncode != 0
    assert "2 processes were launched but they run as 1 independent one(s)" in result.stderr


@pytest.mark.slow
def test_job_array_in_a_shared_folder_merges_into_the_single_job_matrix(data_files, tiny_checkpoint, tmp_path):
    recipe = _recipe(data_files, tiny_checkpoint, tmp_path / "recipe.yaml")
    _collect(recipe, tmp_path / "single")
    single = ForgettingMatrix.load(tmp_path / "single" / "matrix")

    shared = tmp_path / "shared"
    script = ROOT / "recipes" / "slurm" / "collect_array.sbatch"
    venv_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    for index in (1, 0):  # as Slurm would: any order
        env = {**ENV, "PATH": venv_path, "SLURM_ARRAY_TASK_ID": str(index), "SLURM_ARRAY_TASK_COUNT": "2"}
        result = subprocess.run(["bash", str(script), str(recipe), "--output_dir", str(shared)], env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        if index == 1:
            assert "1 of 3 task rows are in" in result.stdout and not (shared / "matrix").exists()
    merged = ForgettingMatrix.load(shared / "matrix")
    assert merged.task_ids == single.task_ids
    np.testing.assert_allclose(merged.values, single.values, atol=1e-6)


@pytest.mark.slow
def test_jobs_pushing_rows_to_a_hub_repo_merge_into_the_single_job_matrix(data_files, tiny_checkpoint, tmp_path, hub):
    recipe = _recipe(data_files, tiny_checkpoint, tmp_path / "recipe.yaml")
    _collect(recipe, tmp_path / "single")
    single = ForgettingMatrix.load(tmp_path / "single" / "matrix")

    env = {**ENV, "HF_TOKEN": "hf_alice_token"}
    for indices, folder in (("0,2", "job-a"), ("1", "job-b")):  # separate folders: no shared filesystem
        result = _collect(recipe, tmp_path / folder, "--task_indices", indices, "--push_rows_to_hub", "alice/tiny-jobs", env=env)
        assert "Pushed" in result.stdout
    merged = ForgettingMatrix.from_hub("alice/tiny-jobs")
    order = [merged.task_ids.index(task) for task in single.task_ids]
    np.testing.assert_allclose(merged.values[order], single.values, atol=1e-6)
    assert {merged.metadata["rows"][task]["contributor"] for task in merged.task_ids} == {"alice"}
    assert len({merged.metadata["rows"][task]["source_file"] for task in merged.task_ids}) == 2  # one file per job


@pytest.mark.slow
def test_collection_jobs_side_by_side_merge_into_the_single_job_matrix(data_files, tiny_checkpoint, tmp_path, capsys):
    """`hf-forgetting demo`'s collection: two one-thread jobs over every other task; the last writes the matrix."""
    from hf_forgetting.cli.collect import collect_in_jobs

    recipe = _recipe(data_files, tiny_checkpoint, tmp_path / "recipe.yaml")
    _collect(recipe, tmp_path / "single")
    single = ForgettingMatrix.load(tmp_path / "single" / "matrix")

    jobs = tmp_path / "jobs"
    collect_in_jobs(recipe, jobs, 2)
    printed = capsys.readouterr().out
    assert "| task | mean forgetting" in printed  # the summary the last job wrote
    assert f"Matrix: {jobs / 'matrix'}" in printed  # and where it is, as a one-job collect says
    merged = ForgettingMatrix.load(jobs / "matrix")
    assert merged.task_ids == single.task_ids
    np.testing.assert_allclose(merged.values, single.values, atol=1e-5)
    job_1 = (jobs / "logs" / "collect-job-1.log").read_text()  # job 1 collected tasks[1] alone
    assert "upper.jsonl: 8/8 examples" in job_1 and "reverse.jsonl: 8/8" not in job_1


@pytest.mark.slow
def test_a_failed_collection_job_is_named_with_its_log_and_the_others_rows_are_kept(data_files, tiny_checkpoint, tmp_path):
    from hf_forgetting.cli.collect import collect_in_jobs
    from hf_forgetting.errors import CollectionJobError

    args, _, _ = configs(data_files, tiny_checkpoint, tmp_path)
    tasks = [args.tasks[0], str(tmp_path / "missing.jsonl")]  # job 1's task cannot be read
    recipe = _recipe(data_files, tiny_checkpoint, tmp_path / "recipe.yaml", tasks=tasks)
    out = tmp_path / "out"
    with pytest.raises(CollectionJobError, match=r"job\(s\) \[1\] failed \(see .*collect-job-1.log\)"):
        collect_in_jobs(recipe, out, 2)
    assert "missing.jsonl" in (out / "logs" / "collect-job-1.log").read_text()
    assert len(list((out / "rows").glob("*.parquet"))) == 1 and not (out / "matrix").exists()
