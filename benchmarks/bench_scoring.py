"""Benchmark: score_examples against the naive per-example loop, same model, same examples, same run.

    python benchmarks/bench_scoring.py                      # embedded SmolLM2-135M on real upstream text
    python benchmarks/bench_scoring.py --model <path|id> --num-examples 256 --max-length 128

The naive loop is what one writes first: one example at a time, full logits, log_softmax over the
vocabulary, NLL of the scored tokens. Both must give the same numbers (max |diff| is printed); the
table gives scored tokens per second and the speed ratio.

On a CUDA device (issue 14, item 4; nothing is downloaded, so it runs on a machine without the Hub):

    python benchmarks/bench_scoring.py --llama-1b --dtype bfloat16 --num-examples 1024 --max-length 512 --batch-size 32

times a randomly initialised 1.1B Llama-style model (TinyLlama-1.1B's architecture, built from a
config here, with the embedded tokenizer's vocabulary) in bf16, measures the device's dense matmul
peak in the same run (8192^3 matmuls in that dtype) and reports each method's fraction of it
(forward FLOPs counted as 2 x parameters x scored tokens).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hf_forgetting import score_examples
from hf_forgetting.data import load_upstream
from hf_forgetting.modeling import EMBEDDED_MODEL, resolve_model_path
from hf_forgetting.scoring import tokenize_for_scoring


@torch.no_grad()
def naive_scores(model, tokenizer, dataset, max_length: int) -> np.ndarray:
    device = next(model.parameters()).device
    scores = []
    for example in dataset:
        ids, mask = tokenize_for_scoring(example, tokenizer, max_length)
        input_ids = torch.tensor([ids], device=device)
        logprobs = torch.log_softmax(model(input_ids=input_ids).logits[0].float(), dim=-1)
        targets = input_ids[0, 1:]
        token_nll = -logprobs[:-1].gather(1, targets[:, None])[:, 0]
        scored = torch.tensor(mask[1:], device=device)
        scores.append((token_nll[scored].sum() / scored.sum()).item())
    return np.array(scores, dtype=np.float32)


def timed(function, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def llama_1b_config(vocab_size: int):
    """TinyLlama-1.1B's architecture (1.1B parameters), with the given vocabulary."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                       num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048, rope_theta=10000.0)


def matmul_peak_tflops(device: str, dtype: torch.dtype, size: int = 8192, repeats: int = 20) -> float:
    """The device's dense matmul throughput in `dtype`, measured now (TFLOP/s)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds, _ = timed(lambda: [a @ b for _ in range(repeats)], 3)
    return 2 * size**3 * repeats / seconds / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED_MODEL)
    parser.add_argument("--num-examples", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--random-init", action="store_true", help="random weights from the model's config")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--bf16-row", action="store_true", help="also time score_examples on a bf16 copy (accuracy shown)")
    parser.add_argument("--llama-1b", action="store_true", help="a random 1.1B Llama-style model built from a config")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak for the %% of peak column (default on CUDA: measured in this run)")
    args = parser.parse_args()

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if args.llama_1b:
        model = AutoModelForCausalLM.from_config(llama_1b_config(len(tokenizer)), dtype=dtype)
    elif args.random_init:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model = model.to(device).eval()
    dataset = load_upstream(num_examples=args.num_examples, seed=1)
    tokens = sum(sum(tokenize_for_scoring(e, tokenizer, args.max_length)[1]) for e in dataset)

    naive_time, naive = timed(lambda: naive_scores(model, tokenizer, dataset, args.max_length), args.repeats)
    fast_time, fast = timed(
        lambda: score_examples(
            model, tokenizer, dataset, batch_size=args.batch_size, max_length=args.max_length, show_progress=False
        ),
        args.repeats,
    )
    parameters = sum(p.numel() for p in model.parameters())
    rows = [("naive per-example loop", naive_time, 0.0), ("score_examples", fast_time, np.nanmax(np.abs(fast - naive)))]
    if args.bf16_row:
        half = model.to(torch.bfloat16)
        half_time, half_scores = timed(
            lambda: score_examples(half, tokenizer, dataset, batch_size=args.batch_size, max_length=args.max_length,
                                   show_progress=False),
            args.repeats,
        )
        rows.append(("score_examples, bf16 weights", half_time, np.nanmax(np.abs(half_scores - naive))))
    if args.peak_tflops is None and device == "cuda":
        args.peak_tflops = matmul_peak_tflops(device, dtype)
        print(f"\nmeasured dense matmul peak: {args.peak_tflops:.0f} TFLOP/s ({args.dtype}, 8192^3)")
    name = "random Llama-1.1B (TinyLlama's architecture)" if args.llama_1b else args.model
    print(f"\nmodel {name} ({parameters / 1e6:.0f}M parameters, {args.dtype}, {device}, "
          f"threads {torch.get_num_threads()}); {len(dataset)} examples, {tokens} scored tokens, "
          f"max_length {args.max_length}, batch {args.batch_size}, best of {args.repeats}\n")
    header = "| method | seconds | tokens/s | speed-up | max abs diff vs naive |"
    print(header + (" % of peak |" if args.peak_tflops else ""))
    print("| --- | ---: | ---: | ---: | ---: |" + (" ---: |" if args.peak_tflops else ""))
    for name, seconds, difference in rows:
        line = f"| {name} | {seconds:.2f} | {tokens / seconds:,.0f} | {naive_time / seconds:.2f}x | {difference:.1e} |"
        if args.peak_tflops:
            flops = 2 * parameters * tokens  # forward pass
            line += f" {flops / seconds / (args.peak_tflops * 1e12) * 100:.1f}% |"
        print(line)


if __name__ == "__main__":
    main()
