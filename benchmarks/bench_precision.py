"""Benchmark: forgetting rows in bfloat16 against float32, next to the training-seed noise floor.

    python benchmarks/bench_precision.py          # the adapted collection's recipe, its first 4 tasks
    python benchmarks/bench_precision.py --config recipes/smollm2-135m-instruct/collect/config_demo.yaml --tasks cryptonite word_sorting

What the project stores is forgetting, a difference of two NLLs scored the same way, so precision is
judged on that difference, row by row. For each task, with the recipe's settings, data and data order:

- reference: trained in fp32, scored in fp32 (base and tuned model alike);
- scoring precision: the same fp32-trained model scored in bf16 autocast and with bf16 weights;
- training precision: trained with bf16 autocast (fp32 weights), scored in fp32 and with bf16 weights;
- noise floor: trained in fp32 with the next seed (another data order), scored in fp32: how much the
  row moves for a reason nobody would call an error.

Each row is compared with the reference row: Pearson r, RMSE, top-10% overlap (`row_agreement`).
Times: scoring the upstream examples per mode and a training run per precision, measured in this
run (nothing else should run meanwhile). Both precisions score the base model the same way as the
tuned one. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from trl import ModelConfig, SFTConfig, SFTTrainer

from hf_forgetting.completion.evaluation import row_agreement
from hf_forgetting.data.arguments import TaskArguments, UpstreamArguments, from_settings
from hf_forgetting.modeling import load_model_and_tokenizer
from hf_forgetting.scoring import cast_for_scoring, score_examples
from hf_forgetting.training_data import prepare_training_rows

SCORING_MODES = ("fp32", "bf16 autocast", "bf16 weights")


def score(model, tokenizer, upstream, mode: str, recipe: dict) -> tuple[np.ndarray, float]:
    """Mean token NLL of the upstream examples in one mode, and the seconds it took (on a copy for bf16 weights)."""
    if mode == "bf16 weights":
        model = cast_for_scoring(copy.deepcopy(model), "bfloat16")
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16 autocast"):
        scores = score_examples(model, tokenizer, upstream, batch_size=recipe.get("score_batch_size", 16),
                                max_length=recipe["score_max_length"], show_progress=False)
    return scores, time.perf_counter() - start


def train(model_args, rows, recipe: dict, bf16: bool, seed: int, output_dir: str) -> tuple[torch.nn.Module, float]:
    model, tokenizer = load_model_and_tokenizer(model_args)
    config = SFTConfig(
        output_dir=output_dir, max_steps=recipe["max_steps"], per_device_train_batch_size=recipe["per_device_train_batch_size"],
        learning_rate=recipe["learning_rate"], lr_scheduler_type=recipe.get("lr_scheduler_type", "linear"),
        warmup_steps=recipe.get("warmup_steps", 0), max_length=recipe["max_length"], bf16=bf16, seed=seed,
        gradient_checkpointing=False, report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=rows, processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    return trainer.model, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="recipes/smollm2-135m-instruct/collect/config_adapted.yaml")
    parser.add_argument("--tasks", nargs="+", help="default: the recipe's first 4 tasks")
    parser.add_argument("--output-dir", default="/tmp/bench-precision")
    args = parser.parse_args()
    recipe = yaml.safe_load(Path(args.config).read_text())
    tasks = args.tasks or recipe["tasks"][:4]
    model_args = ModelConfig(model_name_or_path=recipe["model_name_or_path"], dtype="float32")
    upstream = from_settings(UpstreamArguments, recipe).load_upstream()
    task_args = from_settings(TaskArguments, recipe)
    base_model, tokenizer = load_model_and_tokenizer(model_args)
    base = {mode: score(base_model, tokenizer, upstream, mode, recipe) for mode in SCORING_MODES}
    seed = recipe.get("seed", 42)

    cells = []  # (task, training, scoring, row, reference row)
    times = {"scoring": {mode: [base[mode][1]] for mode in SCORING_MODES}, "training": {"fp32": [], "bf16 autocast": []}}
    for task in tasks:
        rows = prepare_training_rows(task_args.load_task(task), tokenizer, recipe["max_length"]).dataset
        runs = [("fp32", seed, SCORING_MODES), ("bf16 autocast", seed, ("fp32", "bf16 weights")), ("fp32", seed + 1, ("fp32",))]
        reference = None
        for training, run_seed, modes in runs:
            model, seconds = train(model_args, rows, recipe, training != "fp32", run_seed, f"{args.output_dir}/{task}")
            times["training"][training].append(seconds)
            for mode in modes:
                after, seconds = score(model, tokenizer, upstream, mode, recipe)
                times["scoring"][mode].append(seconds)
                row = after - base[mode][0]
                if reference is None:
                    reference = row
                name = f"{training} training" + (f", seed {run_seed}" if run_seed != seed else "")
                cells.append((task, name, mode, row_agreement(reference, row)))
            del model

    print(f"\n{recipe['model_name_or_path']}: {len(upstream)} upstream examples scored on {recipe['score_max_length']} "
          f"tokens; {recipe['max_steps']} steps of {recipe['per_device_train_batch_size']}; tasks: {', '.join(tasks)}\n")
    print("| trained | scored | rows | Pearson r (min) | RMSE (max) | top-10% overlap | mean forgetting shift |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for trained in dict.fromkeys(c[1] for c in cells):
        for mode in SCORING_MODES:
            picked = [c[3] for c in cells if c[1] == trained and c[2] == mode]
            if not picked or (trained == "fp32 training" and mode == "fp32"):
                continue
            r = [p["pearson"] for p in picked]
            rmse = [p["rmse"] for p in picked]
            shift = [p["predicted_mean"] - p["measured_mean"] for p in picked]
            print(f"| {trained} | {mode} | {len(picked)} | {np.mean(r):.4f} ({min(r):.4f}) | {np.mean(rmse):.4f} "
                  f"({max(rmse):.4f}) | {np.mean([p['top10pct_precision'] for p in picked]):.2f} | {np.mean(shift):+.4f} |")
    print("\n| timing (this run) | seconds (mean) | speed-up over fp32 |\n| --- | ---: | ---: |")
    for kind, by_mode in times.items():
        reference = np.mean(by_mode["fp32"])
        for mode, values in by_mode.items():
            what = f"{len(upstream)} examples" if kind == "scoring" else f"{recipe['max_steps']} steps"
            print(f"| {kind} {what}, {mode} | {np.mean(values):.1f} | {reference / np.mean(values):.2f}x |")


if __name__ == "__main__":
    main()
