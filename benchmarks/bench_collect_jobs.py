"""Benchmark: the demo's collection as one two-thread job against two one-thread jobs side by side.

    python benchmarks/bench_collect_jobs.py          # 2 tasks x 10 steps, 3 rounds; ~12 min on 2 cores
    python benchmarks/bench_collect_jobs.py --tasks cryptonite hyperbaton --steps 20 --rounds 2

Each way runs `hf-forgetting collect` on the demo recipe, restricted to the same two tasks, from the
same base-model scores (computed once and copied in, as both ways would share them):

- one job: `OMP_NUM_THREADS=2`, both tasks in turn (what `--collect_jobs 1` runs);
- two jobs: `OMP_NUM_THREADS=1 --array_index i --array_size 2`, one task each, side by side (what
  `hf-forgetting demo` runs on a 2-core CPU).

Reported: the wall-clock seconds of each way (process start to the last exit) summed over rounds, the
speed-up, and the largest difference between the two ways' matrices. The ways alternate, and their
order flips every round, because the speed of these shared machines drifts by 20% within an hour;
nothing else may run meanwhile. The default tasks are two of similar cost, so that the two-job way is
not slowed by waiting for the longer one (the demo's 12 tasks split into two jobs whose work differs by about 10%).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hf_forgetting import ForgettingMatrix
from hf_forgetting.recipes import recipe_path


def collect(recipe: str, tasks: list[str], steps: int, output_dir: Path, threads: int, *flags: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "hf_forgetting", "collect", "--config", recipe, "--tasks", *tasks,
               "--max_steps", str(steps), "--output_dir", str(output_dir), "--disable_tqdm", "true", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(*processes: subprocess.Popen) -> None:
    for process in processes:
        _, errors = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"collect failed:\n{errors[-3000:]}")


# Each way: its jobs, started side by side, as (threads, extra `collect` flags).
WAYS = {
    "one job, 2 threads": [(2, ())],
    "two jobs, 1 thread each": [(1, ("--array_index", str(index), "--array_size", "2")) for index in (0, 1)],
}


def run_way(way: str, recipe: str, tasks: list[str], steps: int, output_dir: Path, base_scores: Path) -> float:
    output_dir.mkdir(parents=True)
    shutil.copy(base_scores, output_dir / "base_scores.parquet")
    started = time.perf_counter()
    finish(*[collect(recipe, tasks, steps, output_dir, threads, *flags) for threads, flags in WAYS[way]])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(recipe_path("collect", "config_demo.yaml")))
    parser.add_argument("--tasks", nargs=2, default=["vitaminc_fact_verification", "disfl_qa"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output-dir", default="/tmp/bench-collect-jobs")
    args = parser.parse_args()
    root = Path(args.output_dir)
    shutil.rmtree(root, ignore_errors=True)
    finish(collect(args.config, args.tasks[:1], 1, root / "base", 2))  # the base-model scores, once
    base_scores = root / "base" / "base_scores.parquet"

    ways = list(WAYS)
    seconds = dict.fromkeys(ways, 0.0)
    matrices = {}
    for round_index in range(args.rounds):
        for way in ways if round_index % 2 == 0 else ways[::-1]:
            output_dir = root / f"round{round_index}" / way.split(",")[0].replace(" ", "-")
            took = run_way(way, args.config, args.tasks, args.steps, output_dir, base_scores)
            seconds[way] += took
            matrices[way] = ForgettingMatrix.load(output_dir / "matrix").values
            print(f"round {round_index}: {way}: {took:.1f} s", flush=True)

    difference = float(np.abs(matrices[ways[0]] - matrices[ways[1]]).max())
    print(f"\ndemo recipe, {' and '.join(args.tasks)}, {args.steps} steps each, {args.rounds} rounds "
          f"({len(os.sched_getaffinity(0))} cores)\n")
    print("| collection | seconds | speed-up | max abs difference of the matrix |")
    print("| --- | ---: | ---: | ---: |")
    for way in ways:
        shift = 0.0 if way == ways[0] else difference
        print(f"| {way} | {seconds[way]:.1f} | {seconds[ways[0]] / seconds[way]:.2f}x | {shift:.1e} |")


if __name__ == "__main__":
    main()
