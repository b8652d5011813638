"""``hf-forgetting collect``: fine-tune the base model on each task and record the forgetting matrix."""

from __future__ import annotations

import sys

from .parsing import parse_training_stage


def main(argv: list[str]) -> int:
    from trl import ModelConfig, SFTConfig

    from ..collect import CollectArguments, collect_forgetting_matrix

    args, training_args, model_args = parse_training_stage((CollectArguments, SFTConfig, ModelConfig), "collect", argv)
    collect_forgetting_matrix(args, training_args, model_args)
    return 0


def collect_in_jobs(recipe: str, output_dir, jobs: int) -> None:
    """`collect` of ``recipe`` into ``output_dir`` as ``jobs`` processes side by side (``--array_index i
    --array_size jobs``), each with its share of the cores; the last to finish writes the matrix. A step
    of a small model on a few short rows does not keep two threads busy, so one-thread jobs side by side use
    the cores better than one job with every thread.
    Job 0 prints to this terminal, the others to ``<output_dir>/logs/collect-job-<i>.log``."""
    import os
    import time
    from pathlib import Path

    from ..collect_summary import print_outputs

    argv = ["--config", str(recipe), "--output_dir", str(output_dir)]
    if jobs == 1:
        main(argv)
        return
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    logs = [None, *(Path(output_dir) / "logs" / f"collect-job-{index}.log" for index in range(1, jobs))]
    logs[1].parent.mkdir(parents=True, exist_ok=True)
    print(f"Collecting in {jobs} jobs of {threads} thread(s) each; job 0 prints here, "
          f"the others to {', '.join(str(log) for log in logs[1:])}")
    launched = time.time()
    _run_jobs([sys.executable, "-m", "hf_forgetting", "collect", *argv, "--array_size", str(jobs)], logs, threads)
    written = Path(output_dir) / "matrix" / "forgetting_matrix.json"
    if written.exists() and written.stat().st_mtime >= launched:  # the last job found every row
        print_outputs(output_dir)
    else:
        main(argv)


def _run_jobs(command: list[str], logs: list, threads: int) -> None:
    """Run ``command --array_index i`` for each log (None: this terminal) and wait for all; a failed job is an
    error naming its log, and every job still running is stopped first."""
    import os
    import subprocess

    from ..errors import CollectionJobError

    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    processes = []
    try:
        for index, log in enumerate(logs):
            output = open(log, "w") if log else None  # noqa: SIM115 (closed when the job ends)
            processes.append((subprocess.Popen([*command, "--array_index", str(index)], env=env, stdout=output,
                                               stderr=subprocess.STDOUT if output else None), output))
        failed = [index for index, (process, _) in enumerate(processes) if process.wait() != 0]
    finally:
        for process, output in processes:
            if process.poll() is None:
                process.terminate()
                process.wait()
            if output:
                output.close()
    if failed:
        where = ", ".join(str(logs[index]) if logs[index] else "the output above" for index in failed)
        raise CollectionJobError(f"collection job(s) {failed} failed (see {where}); run again to resume: finished rows are kept")


def default_collect_jobs() -> int:
    """2 collection jobs on a CPU machine with 2 or more cores, 1 with an accelerator."""
    import os

    from ..modeling import has_accelerator

    return 1 if has_accelerator() or len(os.sched_getaffinity(0)) < 2 else 2
