"""Benchmark: how fast `make demo` could be on this machine: its arithmetic against the matrix-product
peak measured in the same run.

    python benchmarks/bench_demo_floor.py              # the demo recipe; ~1 min
    python benchmarks/bench_demo_floor.py --config recipes/smollm2-135m-instruct/collect/config_adapted.yaml

The demo's collection is matrix products: 12 fine-tunes and 13 scoring passes of a 135M model. This
counts their floating-point operations from the recipe's real rows (the tokenised training rows of
every task, the upstream passages cut to ``score_max_length``) and the model's shapes, measures what
one large matrix product reaches on this CPU in float32 (and bfloat16, for comparison), and prints
the shortest time the collection could take if every operation ran at that peak. Nothing else may
run meanwhile.

Counted (multiply-add = 2 FLOPs): the decoder's linear layers on every token (forward 2x their
parameters, forward and backward 6x), causal attention (QK^T and AV over the preceding positions),
and the LM head on the positions a loss or score needs (the label positions in training, as
`LabelPositionsSFTTrainer` does; the scored positions when scoring). Training rows are counted at their
own length (no padding) and a task trains on ``max_steps x batch`` rows of its mean length. Norms,
activations, softmax and the optimizer are not counted, so the floor is below anything reachable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml
from flops import forward_flops, matmul_peak_flops
from transformers import AutoConfig
from trl import ModelConfig

from hf_forgetting.data.arguments import TaskArguments, UpstreamArguments, from_settings
from hf_forgetting.modeling import load_model_and_tokenizer, resolve_model_path
from hf_forgetting.recipes import recipe_path
from hf_forgetting.scoring import tokenize_for_scoring
from hf_forgetting.training_data import prepare_training_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(recipe_path("collect", "config_demo.yaml")))
    parser.add_argument("--measured", type=float, nargs=2, metavar=("TRAIN_S", "SCORE_S"),
                        help="the collection's measured fine-tuning and scoring seconds (demo_time.md), to report the fraction of peak")
    args = parser.parse_args()
    recipe = yaml.safe_load(Path(args.config).read_text())
    config = AutoConfig.from_pretrained(resolve_model_path(recipe["model_name_or_path"]))
    _, tokenizer = load_model_and_tokenizer(ModelConfig(model_name_or_path=recipe["model_name_or_path"]), tokenizer_only=True)

    rows_per_task = recipe["max_steps"] * recipe["per_device_train_batch_size"] * recipe.get("gradient_accumulation_steps", 1)
    task_args = from_settings(TaskArguments, recipe)
    training = 0.0
    for task in recipe["tasks"]:
        rows = prepare_training_rows(task_args.load_task(task), tokenizer, recipe["max_length"])
        lengths = np.array([len(ids) for ids in rows.dataset["input_ids"]], dtype=np.float64)
        per_row = forward_flops(config, lengths, rows.counts()["num_trained_tokens"]) / len(lengths)
        training += 3 * per_row * rows_per_task  # backward = 2x forward

    upstream = from_settings(UpstreamArguments, recipe).load_upstream()
    encoded = [tokenize_for_scoring(example, tokenizer, recipe["score_max_length"]) for example in upstream]
    lengths = np.array([len(ids) for ids, _ in encoded], dtype=np.float64)
    scored = float(sum(sum(mask) for _, mask in encoded))
    passes = len(recipe["tasks"]) + 1  # the base model, then every tuned model
    scoring = passes * forward_flops(config, lengths, scored)

    peaks = {name: matmul_peak_flops(getattr(torch, name)) / 1e9 for name in ("float32", "bfloat16")}
    print(f"\n{recipe['model_name_or_path']}: {len(recipe['tasks'])} tasks x {rows_per_task} rows; {passes} scoring passes "
          f"of {len(lengths)} passages ({int(lengths.sum())} tokens); {torch.get_num_threads()} threads\n")
    print("| work | TFLOP | floor at the float32 peak (s) | floor at the bfloat16 peak (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, flops in (("fine-tuning", training), ("scoring", scoring), ("collection", training + scoring)):
        print(f"| {name} | {flops / 1e12:.1f} | {flops / 1e9 / peaks['float32']:.0f} | {flops / 1e9 / peaks['bfloat16']:.0f} |")
    print(f"\nmatrix-product peak (2048 x 2048, this run): float32 {peaks['float32']:.0f} GFLOP/s, "
          f"bfloat16 {peaks['bfloat16']:.0f} GFLOP/s")
    if args.measured:
        for name, flops, seconds in (("fine-tuning", training, args.measured[0]), ("scoring", scoring, args.measured[1])):
            rate = flops / 1e9 / seconds
            print(f"{name} as measured: {seconds:.0f} s = {rate:.0f} GFLOP/s, {rate / peaks['float32']:.0%} of the float32 peak")


if __name__ == "__main__":
    main()
