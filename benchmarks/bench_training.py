"""Benchmark: the collection's fine-tuning, TRL's `SFTTrainer` against `LabelPositionsSFTTrainer`, same run.

    python benchmarks/bench_training.py                  # the demo recipe's settings, 4 of its tasks, 10 steps each
    python benchmarks/bench_training.py --tasks word_sorting cryptonite --steps 20 --rounds 2

Three ways to train, each from the same base weights on the same rows in the same order (the demo
recipe's batch size, learning rate and `max_length`; float32 on the CPU):

- `SFTTrainer`, AdamW (`adamw_torch`): the baseline, what the collection ran before;
- `LabelPositionsSFTTrainer`, AdamW: the LM head on the label positions only;
- `LabelPositionsSFTTrainer`, fused AdamW (`adamw_torch_fused`): what the demo recipe runs now.

Reported per way, summed over the tasks: seconds of `trainer.train()`, the speed-up over the baseline,
and how far the result moved from the baseline's (largest relative difference of the training loss,
largest absolute difference of any trained parameter). The ways alternate within each round, so
machine noise hits all alike; nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from trl import ModelConfig, SFTConfig, SFTTrainer

from hf_forgetting.data.arguments import TaskArguments, from_settings
from hf_forgetting.label_positions_loss import LabelPositionsSFTTrainer
from hf_forgetting.modeling import load_model_and_tokenizer
from hf_forgetting.recipes import recipe_path
from hf_forgetting.training_data import prepare_training_rows

WAYS = {
    "SFTTrainer, AdamW (baseline)": (SFTTrainer, "adamw_torch"),
    "LabelPositionsSFTTrainer, AdamW": (LabelPositionsSFTTrainer, "adamw_torch"),
    "LabelPositionsSFTTrainer, fused AdamW (demo recipe)": (LabelPositionsSFTTrainer, "adamw_torch_fused"),
}


def train(way: str, model_args, rows, recipe: dict, steps: int, output_dir: str):
    """Seconds of `train()`, the training loss and the trained parameters."""
    trainer_class, optim = WAYS[way]
    model, tokenizer = load_model_and_tokenizer(model_args)
    config = SFTConfig(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=recipe["per_device_train_batch_size"],
        learning_rate=recipe["learning_rate"], lr_scheduler_type=recipe["lr_scheduler_type"], max_length=recipe["max_length"],
        seed=recipe["seed"], optim=optim, bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
        save_strategy="no", disable_tqdm=True, logging_steps=steps,
    )
    trainer = trainer_class(model=model, args=config, train_dataset=rows, processing_class=tokenizer)
    start = time.perf_counter()
    loss = trainer.train().training_loss
    seconds = time.perf_counter() - start
    return seconds, loss, {name: p.detach() for name, p in trainer.model.named_parameters()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(recipe_path("collect", "config_demo.yaml")))
    parser.add_argument("--tasks", nargs="+", default=["cryptonite", "word_sorting", "hyperbaton", "qa_wikidata"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--output-dir", default="/tmp/bench-training")
    args = parser.parse_args()
    recipe = yaml.safe_load(Path(args.config).read_text())
    model_args = ModelConfig(model_name_or_path=recipe["model_name_or_path"], dtype="float32")
    _, tokenizer = load_model_and_tokenizer(model_args, tokenizer_only=True)
    task_args = from_settings(TaskArguments, recipe)
    rows = {task: prepare_training_rows(task_args.load_task(task), tokenizer, recipe["max_length"]).dataset for task in args.tasks}

    seconds = {way: 0.0 for way in WAYS}
    loss_shift = {way: 0.0 for way in WAYS}
    parameter_shift = {way: 0.0 for way in WAYS}
    for _ in range(args.rounds):
        for task in args.tasks:
            baseline = None
            for way in WAYS:
                took, loss, parameters = train(way, model_args, rows[task], recipe, args.steps, f"{args.output_dir}/{task}")
                seconds[way] += took
                if baseline is None:
                    baseline = loss, parameters
                    continue
                loss_shift[way] = max(loss_shift[way], abs(loss - baseline[0]) / abs(baseline[0]))
                parameter_shift[way] = max(parameter_shift[way], max(
                    float((p - baseline[1][name]).abs().max()) for name, p in parameters.items()))
                del parameters
            del baseline

    reference = seconds[next(iter(WAYS))]
    print(f"\n{recipe['model_name_or_path']}, float32, {torch.get_num_threads()} threads: {args.steps} steps of "
          f"{recipe['per_device_train_batch_size']} (max_length {recipe['max_length']}) on each of {', '.join(args.tasks)}; "
          f"{args.rounds} round(s)\n")
    print("| training | seconds | speed-up | training loss, max relative difference | trained parameters, max abs difference |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for way in WAYS:
        print(f"| {way} | {seconds[way]:.1f} | {reference / seconds[way]:.2f}x | {loss_shift[way]:.1e} | {parameter_shift[way]:.1e} |")
    print(f"\nbaseline: {reference / (args.steps * len(args.tasks) * args.rounds):.2f} s per step")


if __name__ == "__main__":
    main()
