"""score_examples against a naive reference: one example at a time, full logits, plain log-softmax.

The reference builds its own scored-token masks (from the tokenizer's character offsets for chat),
so a mistake in ``tokenize_for_scoring`` shows up as a disagreement.
"""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_forgetting import score_examples
from hf_forgetting.scoring import _length_batches, exact_match_scores, normalize_answer, tokenize_for_scoring

TEXTS = [
    "Return a new list containing all items from the iterable in ascending order.",
    "A string is a sequence of characters.",
    "Create a new dictionary with keys from iterable and values set to value. " * 3,
    "Parse the arguments.",
    "x",  # one token: nothing to score
]
PAIRS = [
    ("Q: What does sorted return?\nA:", " a new sorted list"),
    ("Translate to French: cheese\n", "fromage"),
    ("Q: Is a tuple mutable?\nA:", " No, tuples are immutable."),
]
CONVERSATIONS = [
    [{"role": "user", "content": "What is a deque?"}, {"role": "assistant", "content": "A double-ended queue."}],
    [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name a builtin."},
        {"role": "assistant", "content": "len"},
        {"role": "user", "content": "Another one?"},
        {"role": "assistant", "content": "sorted, which returns a list"},
    ],
]


@torch.no_grad()
def naive_mean_nll(model, ids: list[int], scored: list[bool]) -> float:
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    values = [-logprobs[t - 1, ids[t]].item() for t in range(1, len(ids)) if scored[t]]
    return float(np.mean(values)) if values else float("nan")


def reference_text(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    return ids, [t > 0 for t in range(len(ids))]


def reference_prompt_completion(tokenizer, prompt, completion):
    prompt_len = len(tokenizer(prompt)["input_ids"])
    ids = tokenizer(prompt + completion)["input_ids"]
    return ids, [t >= prompt_len for t in range(len(ids))]


def reference_chat(tokenizer, messages):
    """Scored tokens: those whose characters lie inside an assistant turn's content and end marker."""
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    encoding = tokenizer(rendered, return_offsets_mapping=True, add_special_tokens=False)
    spans, cursor = [], 0
    for message in messages:
        start = rendered.index(message["content"], cursor)
        end = rendered.index("<|im_end|>", start) + len("<|im_end|>\n")
        cursor = end
        if message["role"] == "assistant":
            spans.append((start, end))
    scored = [any(s <= a < e for s, e in spans) for a, _ in encoding["offset_mapping"]]
    return encoding["input_ids"], scored


def check_against_reference(model, tokenizer, dataset, references, **kwargs):
    fast = score_examples(model, tokenizer, dataset, show_progress=False, **kwargs)
    slow = np.array([naive_mean_nll(model, ids, scored) for ids, scored in references])
    assert fast.dtype == np.float32 and fast.shape == (len(dataset),)
    np.testing.assert_allclose(fast, slow, atol=1e-4, rtol=0)
    return fast


def test_raw_text_matches_naive_reference(tiny_model, tiny_tokenizer):
    dataset = Dataset.from_dict({"text": TEXTS})
    references = [reference_text(tiny_tokenizer, text) for text in TEXTS]
    scores = check_against_reference(tiny_model, tiny_tokenizer, dataset, references, batch_size=2)
    assert np.isnan(scores[-1]) and np.isfinite(scores[:-1]).all()


def test_bfloat16_scoring_casts_the_model_and_stays_near_float32(tiny_model, tiny_tokenizer, monkeypatch):
    import copy

    import torch

    from hf_forgetting import scoring

    dataset = Dataset.from_dict({"text": TEXTS[:-1]})
    fp32 = score_examples(tiny_model, tiny_tokenizer, dataset, show_progress=False)
    model = scoring.cast_for_scoring(copy.deepcopy(tiny_model), "bfloat16")
    if scoring.bf16_supported("cpu"):
        assert next(model.parameters()).dtype == torch.bfloat16
    bf16 = score_examples(model, tiny_tokenizer, dataset, show_progress=False)
    np.testing.assert_allclose(bf16, fp32, atol=0.05)  # bf16 keeps 8 bits of mantissa: NLLs move by ~1e-2
    monkeypatch.setattr(scoring, "bf16_supported", lambda device: False)
    with pytest.warns(UserWarning, match="no native bf16 support; scoring in float32"):
        fallback = scoring.cast_for_scoring(copy.deepcopy(tiny_model), "bfloat16")
    assert next(fallback.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="score_dtype must be one of"):
        scoring.cast_for_scoring(tiny_model, "float16")


def test_prompt_completion_scores_completion_only(tiny_model, tiny_tokenizer):
    dataset = Dataset.from_dict({"prompt": [p for p, _ in PAIRS], "completion": [c for _, c in PAIRS]})
    references = [reference_prompt_completion(tiny_tokenizer, p, c) for p, c in PAIRS]
    scores = check_against_reference(tiny_model, tiny_tokenizer, dataset, references, batch_size=3)
    # scoring the whole text instead would give a different number
    whole = score_examples(tiny_model, tiny_tokenizer, [{"text": p + c} for p, c in PAIRS], show_progress=False)
    assert np.abs(whole - scores).max() > 1e-3


def test_chat_scores_assistant_turns_only(tiny_model, tiny_tokenizer):
    dataset = Dataset.from_dict({"messages": CONVERSATIONS})
    references = [reference_chat(tiny_tokenizer, messages) for messages in CONVERSATIONS]
    assert sum(references[1][1]) > sum(references[0][1]) > 0
    check_against_reference(tiny_model, tiny_tokenizer, dataset, references, batch_size=2)


def test_conversational_prompt_completion(tiny_model, tiny_tokenizer):
    messages = CONVERSATIONS[0]
    example = {"prompt": messages[:1], "completion": messages[1:]}
    chat = score_examples(tiny_model, tiny_tokenizer, [{"messages": messages}], show_progress=False)
    assert score_examples(tiny_model, tiny_tokenizer, [example], show_progress=False)[0] == pytest.approx(chat[0])


def test_batching_chunking_and_token_cap_do_not_change_results(tiny_model, tiny_tokenizer):
    dataset = [{"text": text} for text in TEXTS * 3]
    one = score_examples(tiny_model, tiny_tokenizer, dataset, batch_size=1, show_progress=False)
    many = score_examples(
        tiny_model, tiny_tokenizer, dataset, batch_size=7, chunk_size=5, max_tokens_per_batch=64, show_progress=False
    )
    np.testing.assert_allclose(one, many, atol=1e-5)
    again = score_examples(tiny_model, tiny_tokenizer, dataset, batch_size=7, chunk_size=5, show_progress=False)
    np.testing.assert_array_equal(many, again)  # deterministic


def test_truncation_to_max_length(tiny_model, tiny_tokenizer):
    text = TEXTS[2]
    ids, scored = reference_text(tiny_tokenizer, text)
    expected = naive_mean_nll(tiny_model, ids[:10], scored[:10])
    got = score_examples(tiny_model, tiny_tokenizer, [{"text": text}], max_length=10, show_progress=False)
    assert got[0] == pytest.approx(expected, abs=1e-4)


def test_peft_model_scores_through_adapters(tiny_model, tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(tiny_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    references = [reference_text(tiny_tokenizer, text) for text in TEXTS[:3]]
    with_adapters = check_against_reference(peft_model, tiny_tokenizer, [{"text": t} for t in TEXTS[:3]], references)
    with peft_model.disable_adapter():
        without = score_examples(peft_model, tiny_tokenizer, [{"text": t} for t in TEXTS[:3]], show_progress=False)
    assert np.abs(with_adapters - without).max() > 1e-4


def test_model_mode_is_restored(tiny_model, tiny_tokenizer):
    tiny_model.train()
    score_examples(tiny_model, tiny_tokenizer, [{"text": TEXTS[0]}], show_progress=False)
    assert tiny_model.training


def test_bad_examples_are_rejected(tiny_model, tiny_tokenizer):
    with pytest.raises(ValueError, match="expected 'text'"):
        score_examples(tiny_model, tiny_tokenizer, [{"question": "no text here"}], show_progress=False)
    tokenizer_without_template = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer)
    with pytest.raises(ValueError, match="chat template"):
        tokenize_for_scoring({"messages": CONVERSATIONS[0]}, tokenizer_without_template)


def test_length_batches_cover_every_index_once():
    lengths = [5, 1, 9, 9, 3, 7, 2]
    batches = _length_batches(lengths, batch_size=3, max_tokens=20)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(len(b) <= 3 and max(lengths[i] for i in b) * len(b) <= 20 for b in batches)
    assert batches[0][0] == 2  # longest first, ties by index


def test_normalize_answer_and_exact_match(tiny_model, tiny_tokenizer):
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    dataset = [{"prompt": "Q: a?\nA:", "answers": ["x"]}, {"prompt": "Q: b?\nA:", "completion": "y"}]
    scores = exact_match_scores(tiny_model, tiny_tokenizer, dataset, max_new_tokens=3, show_progress=False)
    assert scores.shape == (2,) and set(scores.tolist()) <= {0.0, 1.0}


@pytest.mark.slow
def test_two_processes_give_the_same_scores_as_one(tiny_checkpoint, tmp_path):
    script = Path(__file__).parent / "scripts" / "score_distributed.py"
    single, double = tmp_path / "one.npy", tmp_path / "two.npy"
    env_cmd = [sys.executable, "-m", "torch.distributed.run", "--master_port", "29517"]
    subprocess.run([sys.executable, str(script), str(tiny_checkpoint), str(single)], check=True)
    subprocess.run([*env_cmd, "--nproc_per_node", "2", str(script), str(tiny_checkpoint), str(double)], check=True)
    one, two = np.load(single), np.load(double)
    assert one.shape == two.shape == (24,)
    np.testing.assert_allclose(one, two, atol=1e-5)


def tiny_granite(vocab_size: int, logits_scaling: float):
    from transformers import GraniteConfig, GraniteForCausalLM

    torch.manual_seed(0)
    config = GraniteConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
                           logits_scaling=logits_scaling)
    return GraniteForCausalLM(config).eval()


def tiny_falcon_h1(vocab_size: int, lm_head_multiplier: float):
    from transformers import FalconH1Config, FalconH1ForCausalLM

    torch.manual_seed(0)
    config = FalconH1Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, mamba_d_ssm=32,
                            mamba_n_heads=4, mamba_d_head=8, mamba_d_state=8, mamba_n_groups=1, mamba_chunk_size=16,
                            lm_head_multiplier=lm_head_multiplier)
    return FalconH1ForCausalLM(config).eval()


@pytest.mark.parametrize("make", [lambda v: tiny_granite(v, 8.0), lambda v: tiny_falcon_h1(v, 0.25)], ids=["granite", "falcon_h1"])
def test_models_that_scale_their_logits_are_scored_with_their_own_logits(make, tiny_tokenizer):
    model = make(len(tiny_tokenizer))
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(30)  # logits far from 0, so that their scaling shows in the NLL
    dataset = Dataset.from_dict({"text": TEXTS[:4]})
    references = [reference_text(tiny_tokenizer, text) for text in TEXTS[:4]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known by its config: no fallback warning needed
        scores = check_against_reference(model, tiny_tokenizer, dataset, references, batch_size=2)
    # the shortcut (LM head of the hidden states) would give other numbers for these models
    hidden = model.get_decoder()(input_ids=torch.tensor([references[0][0]])).last_hidden_state
    unscaled = torch.log_softmax(model.get_output_embeddings()(hidden)[0, :-1].double(), -1)
    shortcut = -unscaled[torch.arange(len(references[0][0]) - 1), torch.tensor(references[0][0][1:])].mean().item()
    assert abs(shortcut - scores[0]) > 0.5


def test_a_model_whose_logits_differ_from_its_lm_head_for_an_unlisted_reason_falls_back_with_a_warning(tiny_tokenizer):
    from conftest import build_model

    model = build_model(len(tiny_tokenizer))
    forward = model.forward

    def tempered(*args, **kwargs):  # a scaling no config field announces
        output = forward(*args, **kwargs)
        output.logits = output.logits / 3
        return output

    model.forward = tempered
    dataset = Dataset.from_dict({"text": TEXTS[:4]})
    references = [reference_text(tiny_tokenizer, text) for text in TEXTS[:4]]
    with pytest.warns(UserWarning, match="logits are not lm_head\\(hidden states\\)"):
        check_against_reference(model, tiny_tokenizer, dataset, references, batch_size=2)
