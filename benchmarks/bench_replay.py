"""Benchmark: training-step time of ReplayTrainer against SFTTrainer, same model, task and run.

    python benchmarks/bench_replay.py                     # embedded SmolLM2-135M, word_sorting, 24 steps each
    python benchmarks/bench_replay.py --steps 40 --replay-ratio 0.125

Both trainers start from the same weights and see the same task rows in the same order up to the
replay rows ReplayTrainer interleaves (1/32 of the rows by default, upstream text). With
``--replay-from-task`` the replay pool is other examples of the same task, so both trainers' batches
have the same length distribution and the comparison isolates the replay machinery. Reported: mean
seconds per optimizer step (first two steps excluded as warm-up), trained tokens per second, and
the ratio ReplayTrainer / SFTTrainer of both. The trainers alternate in rounds so that machine
noise hits both alike.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from hf_forgetting.data import load_task, load_upstream
from hf_forgetting.modeling import EMBEDDED_MODEL, load_model_and_tokenizer
from hf_forgetting.replay import ReplayConfig, ReplayTrainer


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self.tokens, self._start = [], [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)
        self.tokens.append(state.num_input_tokens_seen)


def run(trainer_class, config_class, args, task, upstream, **extra):
    model, tokenizer = load_model_and_tokenizer(args.model)
    common = dict(
        output_dir="/tmp/bench-replay", max_steps=args.steps, per_device_train_batch_size=8, learning_rate=5e-5,
        max_length=96, bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no", seed=0,
        disable_tqdm=True, include_num_input_tokens_seen=True, logging_steps=1000,
    )
    config = config_class(**common, **extra)
    kwargs = {"replay_dataset": upstream, "replay_scores": np.linspace(0, 1, len(upstream))} if extra else {}
    trainer = trainer_class(model=model, args=config, train_dataset=task, processing_class=tokenizer, **kwargs)
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    tokens = np.diff([0, *timer.tokens])
    return np.array(timer.times[2:]), tokens[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED_MODEL)
    parser.add_argument("--task", default="word_sorting")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replay-ratio", type=float, default=1 / 32)
    parser.add_argument("--replay-from-task", action="store_true", help="replay other examples of the same task")
    args = parser.parse_args()

    examples = load_task(args.task, max_examples=args.steps * 8 + 200, seed=0)
    task = examples.select(range(args.steps * 8)).remove_columns(["example_id"])
    if args.replay_from_task:
        upstream = examples.select(range(args.steps * 8, len(examples)))
    else:
        upstream = load_upstream(num_examples=200, seed=0)
    results = {"SFTTrainer": ([], []), "ReplayTrainer": ([], [])}
    for _ in range(args.rounds):
        for name in results:
            if name == "SFTTrainer":
                times, tokens = run(SFTTrainer, SFTConfig, args, task, upstream)
            else:
                times, tokens = run(ReplayTrainer, ReplayConfig, args, task, upstream,
                                    replay_strategy="predicted", replay_ratio=args.replay_ratio, replay_heldout_size=100)
            results[name][0].extend(times)
            results[name][1].extend(tokens)
    base_step = np.mean(results["SFTTrainer"][0])
    base_rate = np.sum(results["SFTTrainer"][1]) / np.sum(results["SFTTrainer"][0])
    print(f"\n{args.model}, task {args.task}, batch 8, {args.steps} steps x {args.rounds} rounds per trainer "
          f"(warm-up steps excluded), replay ratio {args.replay_ratio:.4f}, replay pool: "
          f"{'other examples of the task' if args.replay_from_task else 'upstream passages'}\n")
    print("| trainer | s / step | tokens / s | step-time ratio | tokens/s ratio |\n| --- | ---: | ---: | ---: | ---: |")
    for name, (times, tokens) in results.items():
        step, rate = np.mean(times), np.sum(tokens) / np.sum(times)
        print(f"| {name} | {step:.3f} +- {np.std(times):.3f} | {rate:,.0f} | {step / base_step:.3f} | {rate / base_rate:.3f} |")


if __name__ == "__main__":
    main()
