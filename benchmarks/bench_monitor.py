"""Benchmark: wall time of a run with ForgettingMonitorCallback at its defaults against the same run without.

    python benchmarks/bench_monitor.py                      # embedded SmolLM2-135M, word_sorting, 100 steps
    python benchmarks/bench_monitor.py --steps 200 --rounds 2
    python benchmarks/bench_monitor.py --predictor none    # probes only (default: the demo's predictor, if made)

Both runs start from the same weights and train on the same rows in the same order (SFTTrainer,
batch 8, max_length 96). The monitored run adds the monitor at its defaults (30 probes drawn from 200
embedded upstream passages, every 50 steps and at the end, scored on 64 tokens as the demo matrix
is), with the demo's predictor (`make demo` writes it) completing the row at every measurement.
The two runs alternate in rounds so that machine noise hits both alike. Reported: whole
`trainer.train()` wall time of each, the ratio, and the monitor's own scoring time. Writes the
monitored run's forgetting_monitor.png to --plot-dir.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from trl import SFTConfig, SFTTrainer

from hf_forgetting import ForgettingMonitorCallback
from hf_forgetting.data import load_task, load_upstream
from hf_forgetting.modeling import EMBEDDED_MODEL, load_model_and_tokenizer


def run(args, task, upstream, monitored: bool, output_dir: str) -> tuple[float, ForgettingMonitorCallback | None]:
    model, tokenizer = load_model_and_tokenizer(args.model)
    config = SFTConfig(
        output_dir=output_dir, max_steps=args.steps, per_device_train_batch_size=8, learning_rate=5e-5, max_length=96,
        bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no", seed=0, disable_tqdm=True,
        logging_steps=10, use_cpu=True,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=task, processing_class=tokenizer)
    monitor = None
    if monitored:
        monitor = ForgettingMonitorCallback(upstream, predictor=args.predictor, max_length=64, trainer=trainer)
        trainer.add_callback(monitor)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start, monitor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED_MODEL)
    parser.add_argument("--task", default="word_sorting")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--plot-dir", default="/tmp/bench-monitor")
    parser.add_argument("--predictor", default="outputs/smollm2-135m-instruct/predictor")
    args = parser.parse_args()
    if args.predictor == "none" or not Path(args.predictor).exists():
        args.predictor = None

    task = load_task(args.task, max_examples=args.steps * 8, seed=0).remove_columns(["example_id"])
    upstream = load_upstream(num_examples=200, seed=0)
    times = {"unmonitored": [], "monitored": []}
    for _ in range(args.rounds):
        for name in times:
            output_dir = f"{args.plot_dir}/{name}"
            seconds, monitor = run(args, task, upstream, name == "monitored", output_dir)
            times[name].append(seconds)
    Path(args.plot_dir).mkdir(parents=True, exist_ok=True)
    shutil.copy(f"{args.plot_dir}/monitored/forgetting_monitor.png", f"{args.plot_dir}/forgetting_monitor.png")
    base = np.mean(times["unmonitored"])
    print(f"\n{args.model}, task {args.task}, batch 8, {args.steps} steps, {args.rounds} round(s); the monitor at its "
          f"defaults: {len(monitor.probes)} probes, every {monitor.every_n_steps} steps, "
          f"{len(monitor.history) + 1} measurements (with the base), predictor: {args.predictor}\n")
    print("| run | train wall time (s) | ratio |\n| --- | ---: | ---: |")
    for name, values in times.items():
        print(f"| {name} | {np.mean(values):.1f} | {np.mean(values) / base:.3f} |")
    last = monitor.history[-1]
    print(f"\nLast measurement (step {last['step']}): probe mean forgetting {last['forgetting/probe_mean']:+.4f}, "
          f"SD {last['forgetting/probe_std']:.4f}. Plot: {args.plot_dir}/forgetting_monitor.png")


if __name__ == "__main__":
    main()
