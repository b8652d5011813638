"""The FLOP count the benchmarks' "% of peak" rests on (benchmarks/flops.py), against torch's own
FlopCounterMode on a tiny Llama-style model built from a config."""

import importlib.util
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM

spec = importlib.util.spec_from_file_location("flops", Path(__file__).parents[1] / "benchmarks" / "flops.py")
flops = importlib.util.module_from_spec(spec)
spec.loader.exec_module(flops)


def counted_by_torch(model, length: int, head_positions: int) -> int:
    """Matrix-product FLOPs torch counts for the decoder on one sequence and the LM head on `head_positions`."""
    input_ids = torch.randint(0, model.config.vocab_size, (1, length))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        hidden = model.get_decoder()(input_ids=input_ids).last_hidden_state
        model.get_output_embeddings()(hidden[0, :head_positions])
    return counter.get_total_flops()


def test_forward_flops_match_torchs_count():
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    model = LlamaForCausalLM(config).eval()
    layers, width = config.num_hidden_layers, config.hidden_size

    # One token: causal attention is the whole of attention, so the counts agree exactly.
    assert flops.forward_flops(config, [1], 1) == counted_by_torch(model, 1, 1)

    # Longer: eager attention multiplies the whole length x length square; the benchmarks count the
    # causal half that is needed (QK^T and AV, 2 FLOPs a multiply-add, over positions <= t).
    length, head_positions = 12, 5
    full_square = 2 * 2 * layers * width * length * length
    causal_half = 2 * 2 * layers * width * length * (length + 1) // 2
    assert flops.forward_flops(config, [length], head_positions) == counted_by_torch(model, length, head_positions) - full_square + causal_half


def test_forward_flops_add_over_sequences():
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2)
    together = flops.forward_flops(config, [3, 7], 10)
    apart = flops.forward_flops(config, [3], 4) + flops.forward_flops(config, [7], 6)
    assert together == apart
