"""What the benchmarks measure speed against: the floating-point operations of a Llama-style forward
pass, counted from the model's shapes, and the matrix-product peak of the device, measured now.

Counted (multiply-add = 2 FLOPs): the decoder's linear layers on every token, causal attention (QK^T
and AV over the preceding positions), and the LM head on the positions a loss or score needs. The
embedding lookup, norms, activations and softmax are not counted: the fraction of the peak reached is
that of the useful matrix products, as model FLOPs utilisation is usually reported.
"""

from __future__ import annotations

import time

import numpy as np
import torch


def shapes(config) -> tuple[int, int, int, int]:
    """(decoder linear parameters, LM head parameters, layers, attention width) of a Llama-style config."""
    hidden, heads, kv_heads = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)  # q, o and the grouped k, v
    mlp = 3 * hidden * config.intermediate_size
    return config.num_hidden_layers * (attention + mlp), config.vocab_size * hidden, config.num_hidden_layers, heads * head_dim


def forward_flops(config, lengths: np.ndarray, head_positions: float) -> float:
    """FLOPs of one forward pass over sequences of `lengths` (no padding), the LM head on `head_positions` positions."""
    lengths = np.asarray(lengths, dtype=np.float64)
    decoder, head, layers, width = shapes(config)
    attention = 2 * 2 * layers * width * float(np.sum(lengths * (lengths + 1) / 2))  # causal QK^T and AV
    return 2 * decoder * float(lengths.sum()) + attention + 2 * head * head_positions


def matmul_peak_flops(dtype: torch.dtype, device: str = "cpu", size: int | None = None, seconds: float = 3.0) -> float:
    """FLOP/s of repeated square matrix products in `dtype` on `device` (2048 on a CPU, 8192 on an accelerator)."""
    size = size or (2048 if device == "cpu" else 8192)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        torch.mm(a, b)
    synchronize()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):  # a burst between clock reads: an accelerator queues products asynchronously
            torch.mm(a, b)
        synchronize()
        count += 10
    return 2 * size**3 * count / (time.perf_counter() - start)
