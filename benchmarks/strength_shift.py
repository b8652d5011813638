"""Collect the strength-shift test rows: held-out tasks fine-tuned at other strengths than the demo matrix's.

Runs `hf-forgetting collect` with `recipes/smollm2-135m-instruct/collect/config_strength_shift.yaml` once
per strength (each resumable, a finished one reused), then writes every row, named `task@strength`,
as one matrix whose metadata records each strength's settings and each row's task:

    python benchmarks/strength_shift.py [--output benchmarks/data/smollm2-135m-instruct-strength-shift]

Then compare the predictors on them (fitted on the demo matrix):

    hf-forgetting evaluate --matrix spaces/forgetting-explorer/data/smollm2-135m-instruct-demo \\
        --test_matrix benchmarks/data/smollm2-135m-instruct-strength-shift
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from hf_forgetting import ForgettingMatrix
from hf_forgetting.recipes import recipe_path

# name -> the recipe's settings it changes; "x1" is the demo matrix's own strength (20 steps at 5e-5)
STRENGTHS = {
    "x0.25": ["--learning_rate", "2.5e-5", "--max_steps", "10"],
    "x1": [],
    "x4": ["--learning_rate", "1e-4", "--max_steps", "40"],
    "lora": ["--use_peft", "true", "--lora_r", "16", "--lora_alpha", "32", "--lora_dropout", "0.0", "--lora_target_modules",
             "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "--learning_rate", "5e-4"],
}


def collect(root: Path) -> dict[str, ForgettingMatrix]:
    recipe = recipe_path("collect", "config_strength_shift.yaml")
    matrices = {}
    for name, overrides in STRENGTHS.items():
        output = root / f"strength-{name}"
        command = [sys.executable, "-m", "hf_forgetting", "collect", "--config", str(recipe), "--output_dir", str(output), *overrides]
        print(f"== {name}: {' '.join(command[2:])}", flush=True)
        subprocess.run(command, check=True)
        matrices[name] = ForgettingMatrix.load(output / "matrix")
    return matrices


def combine(matrices: dict[str, ForgettingMatrix]) -> ForgettingMatrix:
    """Every row of every strength, as `task@strength`; metadata: each row's task and strength, each strength's settings."""
    first = next(iter(matrices.values()))
    rows, ids, tasks, strengths = [], [], [], []
    for name, matrix in matrices.items():
        if matrix.example_ids != first.example_ids:
            raise ValueError(f"strength {name}: other upstream examples than {next(iter(matrices))}")
        for task, row in zip(matrix.task_ids, matrix.values):
            rows.append(row)
            ids.append(f"{task}@{name}")
            tasks.append(task)
            strengths.append(name)
    metadata = {
        **{key: first.metadata[key] for key in ("base_model", "upstream_dataset") if key in first.metadata},
        "settings": first.metadata["settings"],  # the x1 recipe's, for the sources of the upstream examples
        "row_tasks": tasks,
        "row_strengths": strengths,
        "strength_settings": {name: {"training": m.metadata["settings"]["training"], "model": m.metadata["settings"]["model"]}
                              for name, m in matrices.items()},
    }
    return ForgettingMatrix(np.stack(rows), ids, first.example_ids, metric=first.metric, metadata=metadata)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="outputs/smollm2-135m-instruct/strength-shift")
    parser.add_argument("--output", default="benchmarks/data/smollm2-135m-instruct-strength-shift")
    args = parser.parse_args()
    combined = combine(collect(Path(args.work_dir)))
    combined.save(args.output)
    means = {task_id: float(np.nanmean(row)) for task_id, row in zip(combined.task_ids, combined.values)}
    print(f"Wrote {len(combined.task_ids)} rows to {args.output}; mean forgetting per row:")
    for task_id, mean in means.items():
        print(f"  {task_id}: {mean:+.4f}")


if __name__ == "__main__":
    main()
