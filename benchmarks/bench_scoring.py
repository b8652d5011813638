"""Benchmark: score_examples against the naive per-example loop, same model, same examples, same run.

    python benchmarks/bench_scoring.py                      # embedded SmolLM2-135M on real upstream text
    python benchmarks/bench_scoring.py --model <path|id> --num-examples 256 --max-length 128

The naive loop is what one writes first: one example at a time, full logits, log_softmax over the
vocabulary, NLL of the scored tokens. Both must give the same numbers (max |diff| is printed); the
table gives scored tokens per second and the speed ratio.

On a CUDA device (issue 14, item 4; nothing is downloaded, so it runs on a machine without the Hub):

    python benchmarks/bench_scoring.py --llama-1b --dtype bfloat16 --num-examples 1024 --max-length 512 \
        --batch-size 32 128 --max-tokens-per-batch 32768 --compile

times a randomly initialised 1.1B Llama-style model (TinyLlama-1.1B's architecture, built from a
config here, with the embedded tokenizer's vocabulary) in bf16, measures the device's dense matmul
peak in the same run (8192^3 matmuls in that dtype) and reports each method's fraction of it: the
useful FLOPs of the forward pass (decoder linears and causal attention on every token, the LM head on
the scored positions; benchmarks/flops.py) over the seconds taken.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from flops import forward_flops, matmul_peak_flops

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED_MODEL)
    parser.add_argument("--num-examples", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[8], help="one row per batch size")
    parser.add_argument("--max-tokens-per-batch", type=int, default=None, help="also cap a batch's padded tokens")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--random-init", action="store_true", help="random weights from the model's config")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    extra_row = parser.add_mutually_exclusive_group()
    extra_row.add_argument("--bf16-row", action="store_true", help="also time score_examples on a bf16 copy (accuracy shown)")
    parser.add_argument("--llama-1b", action="store_true", help="a random 1.1B Llama-style model built from a config")
    extra_row.add_argument("--compile", action="store_true",
                        help="also time score_examples with the decoder under torch.compile (best of at least 2)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak in --dtype for the %% of peak column (default: measured in this run)")
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
    encoded = [tokenize_for_scoring(example, tokenizer, args.max_length) for example in dataset]
    tokens = sum(sum(mask) for _, mask in encoded)
    useful_flops = forward_flops(model.config, [len(ids) for ids, _ in encoded], tokens)

    def scored_with(batch_size: int, repeats: int = args.repeats):
        return timed(lambda: score_examples(model, tokenizer, dataset, batch_size=batch_size, max_length=args.max_length,
                                            max_tokens_per_batch=args.max_tokens_per_batch, show_progress=False), repeats)

    naive_time, naive = timed(lambda: naive_scores(model, tokenizer, dataset, args.max_length), args.repeats)
    parameters = sum(p.numel() for p in model.parameters())
    rows = [("naive per-example loop", naive_time, naive, args.dtype)]  # (method, seconds, scores, precision)
    for batch_size in args.batch_size:
        rows.append((f"score_examples, batch {batch_size}", *scored_with(batch_size), args.dtype))
    fastest = args.batch_size[int(np.argmin([row[1] for row in rows[1:]]))]
    if args.bf16_row:
        model.to(torch.bfloat16)
        rows.append((f"score_examples, batch {fastest}, bf16 weights", *scored_with(fastest), "bfloat16"))
    if args.compile:  # last: the decoder stays compiled; the first of the repeats pays the compilation
        model.get_decoder().compile(dynamic=True)
        rows.append((f"score_examples, batch {fastest}, decoder compiled", *scored_with(fastest, max(args.repeats, 2)),
                     args.dtype))
    peaks = {dtype_name: args.peak_tflops * 1e12 if args.peak_tflops and dtype_name == args.dtype
             else matmul_peak_flops(getattr(torch, dtype_name), device) for dtype_name in dict.fromkeys(row[3] for row in rows)}
    name = "random Llama-1.1B (TinyLlama's architecture)" if args.llama_1b else args.model
    cap = f", at most {args.max_tokens_per_batch} padded tokens a batch" if args.max_tokens_per_batch else ""
    print(f"\nmodel {name} ({parameters / 1e6:.0f}M parameters, {args.dtype}, {device}, "
          f"threads {torch.get_num_threads()}); {len(dataset)} examples, {tokens} scored tokens, "
          f"max_length {args.max_length}{cap}, best of {args.repeats}")
    print("matrix-product peak, this run: " + ", ".join(f"{dtype_name} {flops / 1e12:.3g} TFLOP/s" for dtype_name, flops in peaks.items()))
    print(f"% of peak: {useful_flops / 1e12:.3g} TFLOP of useful forward work (benchmarks/flops.py) a pass, at the row's precision's peak\n")
    print("| method | seconds | tokens/s | speed-up | max abs diff vs naive | % of peak |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, seconds, scores, dtype_name in rows:
        difference, fraction = np.nanmax(np.abs(scores - naive)), useful_flops / seconds / peaks[dtype_name]
        print(f"| {name} | {seconds:.2f} | {tokens / seconds:,.0f} | {naive_time / seconds:.2f}x | {difference:.1e} | {fraction:.1%} |")


if __name__ == "__main__":
    main()
