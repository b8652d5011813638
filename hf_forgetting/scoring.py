"""Per-example scores of a causal LM: mean token NLL, and exact match for the binary variant.

Which tokens are scored depends on the example's format (the formats TRL's SFTTrainer trains on):
- raw text (``text``): every token but the first;
- prompt/completion (``prompt`` + ``completion``): the completion's tokens only;
- chat (``messages``): the assistant turns' tokens only, as rendered by the chat template.

Examples are sorted by length and batched, the final hidden states are projected through the LM
head in chunks of scored positions only (the ``[batch, length, vocab]`` logits never exist), and
under ``accelerate`` / ``torchrun`` every process scores a strided shard of the length-sorted order;
the results are gathered and returned in input order. Models whose logits are more than the LM head of
the hidden states (scaled or soft-capped, see ``LOGIT_TRANSFORM_FIELDS``) are scored with their own
forward; the first batch checks the shortcut against the model's own logits and falls back to it too.
"""

from __future__ import annotations

import re
import string
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .modeling import bf16_supported

__all__ = [
    "SCORE_DTYPES", "bf16_supported", "cast_for_scoring", "exact_match_scores", "normalize_answer", "score_examples",
    "tokenize_for_scoring", "tokenize_many_for_scoring",
]

# The precisions forgetting can be scored in (`score_dtype`); bfloat16's cost in fidelity is in benchmarks/bench_precision.py.
SCORE_DTYPES = ("float32", "bfloat16")


# ---------------------------------------------------------------------------------------------
# Tokenisation with a loss mask
# ---------------------------------------------------------------------------------------------


def _chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # BatchEncoding in recent transformers
        ids = ids["input_ids"]
    return list(ids)


def _chat_mask(tokenizer, messages: list[dict]) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered conversation and a mask that is True on assistant turns only.

    Each assistant turn's tokens are those between the rendering of the turns before it plus the
    generation prompt, and the rendering up to and including it.
    """
    if tokenizer.chat_template is None:
        raise ValueError("A `messages` example needs a tokenizer with a chat template (tokenizer.chat_template is None).")
    ids = _chat_ids(tokenizer, messages)
    mask = [False] * len(ids)
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_chat_ids(tokenizer, messages[:turn], add_generation_prompt=True))
        end = len(_chat_ids(tokenizer, messages[: turn + 1]))
        for position in range(start, min(end, len(ids))):
            mask[position] = True
    return ids, mask


def tokenize_for_scoring(
    example: dict, tokenizer, max_length: int | None = None, text_field: str = "text"
) -> tuple[list[int], list[bool]]:
    """``(input_ids, score_mask)`` of one example; ``score_mask[t]`` says whether token ``t`` is scored."""
    if "messages" in example and example["messages"] is not None:
        ids, mask = _chat_mask(tokenizer, example["messages"])
    elif "prompt" in example and "completion" in example:
        prompt, completion = example["prompt"], example["completion"]
        if isinstance(prompt, list):  # conversational prompt/completion
            ids, mask = _chat_mask(tokenizer, list(prompt) + list(completion))
        else:
            # Same convention as TRL: the completion's tokens are those of prompt+completion past the prompt's.
            prompt_ids = tokenizer(prompt)["input_ids"]
            ids = tokenizer(prompt + completion)["input_ids"]
            mask = [position >= len(prompt_ids) for position in range(len(ids))]
    elif text_field in example:
        ids = tokenizer(example[text_field])["input_ids"]
        mask = [position > 0 for position in range(len(ids))]
    else:
        raise ValueError(
            f"Cannot score an example with keys {sorted(example)}: expected '{text_field}', "
            "'prompt' + 'completion', or 'messages'."
        )
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    mask = list(mask)
    if mask:
        mask[0] = False  # the first token has nothing to be predicted from
    return list(ids), mask


def tokenize_many_for_scoring(dataset, tokenizer, max_length: int | None = None, text_field: str = "text",
                              batch_size: int = 1000) -> list[tuple[list[int], list[bool]]]:
    """:func:`tokenize_for_scoring` of every example of ``dataset`` (a `datasets.Dataset` or a list of dicts).

    Raw-text datasets are tokenised in batches from their text column (the same ids as one call per
    text); other formats one example at a time."""
    columns = getattr(dataset, "column_names", None)
    if columns is not None and text_field in columns and not {"messages", "prompt"} & set(columns):
        texts = dataset[text_field]
        encoded = []
        for start in range(0, len(texts), batch_size):
            for ids in tokenizer(texts[start : start + batch_size])["input_ids"]:
                ids = list(ids[:max_length] if max_length is not None else ids)
                encoded.append((ids, [position > 0 for position in range(len(ids))]))
        return encoded
    return [tokenize_for_scoring(dataset[i], tokenizer, max_length, text_field) for i in range(len(dataset))]


# ---------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------


def cast_for_scoring(model, score_dtype: str):
    """``model`` in the precision forgetting is scored in, cast **in place**: call it on a model that is
    done training (its fp32 weights are not restored).

    ``float32`` scores the model as it was loaded (nothing is cast); ``bfloat16`` casts the weights to
    bf16 (faster where the device computes bf16 natively; docs/benchmarks.md), or leaves the
    model as it is, with a one-line notice, where the device has no native bf16.
    """
    if score_dtype not in SCORE_DTYPES:
        raise ValueError(f"score_dtype must be one of {SCORE_DTYPES}; got {score_dtype!r}")
    if score_dtype == "float32":
        return model
    device = next(model.parameters()).device
    if not bf16_supported(device):
        warnings.warn(f"score_dtype=bfloat16: {device} has no native bf16 support; scoring in float32", stacklevel=2)
        return model
    return model.to(torch.bfloat16)


# ---------------------------------------------------------------------------------------------
# Mean token NLL
# ---------------------------------------------------------------------------------------------


def _length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None) -> list[list[int]]:
    """Indices sorted by decreasing length (ties by index), cut into batches of at most
    ``batch_size`` rows and ``max_tokens`` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, current = [], []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        too_many_tokens = max_tokens is not None and current and longest * (len(current) + 1) > max_tokens
        if current and (len(current) == batch_size or too_many_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


# Config fields with which transformers computes the logits as more than `lm_head(hidden)`: soft-capped
# (Gemma 2/3), scaled (Cohere, Granite, FalconH1, ...). Where one is set, the model computes its own logits.
LOGIT_TRANSFORM_FIELDS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def logits_are_lm_head_of_hidden(model) -> bool:
    """Whether `model`'s logits are its output embedding applied to the decoder's last hidden state, so
    that the LM head can be applied to chosen positions only (by its config; :func:`score_examples` also
    checks it on its first batch)."""
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    transformed = any(getattr(text_config, name, None) is not None for name in LOGIT_TRANSFORM_FIELDS)
    return isinstance(head, torch.nn.Linear) and hasattr(model, "get_decoder") and not transformed


@torch.no_grad()
def _head_path_matches_model(model, batch: dict, prefix: int = 64) -> bool:
    """On the first row of `batch` (up to `prefix` tokens): are `lm_head(decoder(x))` and the model's own
    logits the same, to the precision of the weights?"""
    length = int(batch["attention_mask"][0].sum().clamp(min=1, max=prefix))
    inputs = {"input_ids": batch["input_ids"][:1, :length], "attention_mask": batch["attention_mask"][:1, :length]}
    own = model(**inputs).logits.float()
    projected = model.get_output_embeddings()(model.get_decoder()(**inputs).last_hidden_state).float()
    tolerance = 1e-3 if next(model.parameters()).dtype == torch.float32 else 3e-2
    scale = max(1.0, float(own.abs().max()))
    return bool(torch.allclose(projected, own, rtol=tolerance, atol=tolerance * scale))


def padded_scoring_batch(encoded: list[tuple[list[int], list[bool]]], pad_id: int, device: torch.device) -> dict:
    """One batch on `device`: padded ``input_ids`` and ``attention_mask``, and the ``rows``,
    ``positions`` and ``targets`` of its scored tokens (hidden state p predicts token p + 1).

    Built on the host, so that nothing waits for the accelerator: on CUDA the copies are
    asynchronous (pinned memory) and the host prepares the next batch while this one runs.
    """
    width = max(max(len(ids) for ids, _ in encoded), 1)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    score_mask = torch.zeros((len(encoded), width), dtype=torch.bool)
    for row, (ids, mask) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        score_mask[row, : len(ids)] = torch.tensor(mask, dtype=torch.bool)
    rows, positions = score_mask[:, 1:].nonzero(as_tuple=True)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "rows": rows, "positions": positions,
             "targets": input_ids[:, 1:][rows, positions]}
    if device.type == "cuda":
        return {name: tensor.pin_memory().to(device, non_blocking=True) for name, tensor in batch.items()}
    return {name: tensor.to(device) for name, tensor in batch.items()}


@torch.no_grad()
def _batch_nll_sums(model, batch: dict, chunk_size: int, head_on_scored_positions: bool) -> torch.Tensor:
    """Sum of the scored tokens' NLL per row of one `padded_scoring_batch`, on its device."""
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    rows, positions, targets = batch["rows"], batch["positions"], batch["targets"]
    sums = torch.zeros(input_ids.shape[0], dtype=torch.float64, device=input_ids.device)
    if head_on_scored_positions:
        hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        selected = hidden[rows, positions]
        head = model.get_output_embeddings()
        for start in range(0, len(rows), chunk_size):
            logits = head(selected[start : start + chunk_size]).float()
            nll = F.cross_entropy(logits, targets[start : start + chunk_size], reduction="none")
            sums.index_add_(0, rows[start : start + chunk_size], nll.double())
    else:  # models with soft-capped or scaled logits: let the model compute them, one batch at a time
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        nll = F.cross_entropy(logits[rows, positions].float(), targets, reduction="none")
        sums.index_add_(0, rows, nll.double())
    return sums


def score_examples(
    model,
    tokenizer,
    dataset,
    *,
    batch_size: int = 16,
    max_length: int | None = 1024,
    max_tokens_per_batch: int | None = None,
    text_field: str = "text",
    chunk_size: int = 1024,
    show_progress: bool = True,
) -> np.ndarray:
    """Mean token NLL of every example of `dataset` under `model`.

    Examples with no scored token (e.g. a one-token text) get NaN. Run under several processes
    (`accelerate launch` / `torchrun`), each process scores a shard and all get the full result.

    Args:
        model (`PreTrainedModel` or `PeftModel`):
            A causal LM, already on its device.
        tokenizer (`PreTrainedTokenizerBase`):
            Its tokenizer (a chat template is needed for `messages` examples).
        dataset (`datasets.Dataset` or `list[dict]`):
            Examples in one of the formats above.
        batch_size (`int`, *optional*, defaults to `16`):
            At most this many examples per forward pass.
        max_length (`int`, *optional*, defaults to `1024`):
            Sequences are truncated to this many tokens (from the right).
        max_tokens_per_batch (`int`, *optional*):
            Also cap a batch's padded size (rows x longest).
        text_field (`str`, *optional*, defaults to `"text"`):
            Column of raw-text examples.
        chunk_size (`int`, *optional*, defaults to `1024`):
            Scored positions projected through the LM head at once.
        show_progress (`bool`, *optional*, defaults to `True`):
            A tqdm bar on the main process.

    Returns:
        `np.ndarray` of float32 `[len(dataset)]`.
    """
    encoded = tokenize_many_for_scoring(dataset, tokenizer, max_length, text_field)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return score_encoded(model, encoded, pad_id=pad_id, batch_size=batch_size, max_tokens_per_batch=max_tokens_per_batch,
                         chunk_size=chunk_size, show_progress=show_progress)


def score_encoded(
    model,
    encoded: Sequence[tuple[list[int], list[bool]]],
    *,
    pad_id: int = 0,
    batch_size: int = 16,
    max_tokens_per_batch: int | None = None,
    chunk_size: int = 1024,
    show_progress: bool = True,
) -> np.ndarray:
    """:func:`score_examples` of rows already tokenised: ``(token ids, scored mask)`` each, where token ``p`` is
    scored when ``mask[p]`` (``p >= 1``), e.g. a training row's ``labels != -100``. NaN for a row with none."""
    lengths = [len(ids) for ids, _ in encoded]
    state = PartialState()
    batches = _length_batches(lengths, batch_size, max_tokens_per_batch)[state.process_index :: state.num_processes]
    device = next(model.parameters()).device

    was_training = model.training
    model.eval()
    sums = []  # stay on the device until every batch is queued: no synchronisation per batch
    head_on_scored_positions = logits_are_lm_head_of_hidden(model)
    try:
        for number, batch in enumerate(tqdm(batches, desc="scoring", disable=not (show_progress and state.is_main_process))):
            padded = padded_scoring_batch([encoded[i] for i in batch], pad_id, device)
            if number == 0 and head_on_scored_positions and not _head_path_matches_model(model, padded):
                warnings.warn(f"{type(model).__name__}: the model's logits are not lm_head(hidden states) (a scaling or "
                              "capping its config does not name?); scoring with the model's own forward", stacklevel=2)
                head_on_scored_positions = False
            sums.append(_batch_nll_sums(model, padded, chunk_size, head_on_scored_positions))
    finally:
        model.train(was_training)
    totals = torch.cat(sums).tolist() if sums else []
    order = [index for batch in batches for index in batch]
    counts = [sum(encoded[index][1][1:]) for index in order]
    local = [(index, total / count if count else float("nan")) for index, total, count in zip(order, totals, counts)]

    gathered = gather_object(local) if state.num_processes > 1 else local
    scores = np.full(len(encoded), np.nan, dtype=np.float32)
    for index, value in gathered:
        scores[index] = value
    return scores


# ---------------------------------------------------------------------------------------------
# Exact match (binary variant)
# ---------------------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _answers(example: dict) -> list[str]:
    if "answers" in example:
        answers = example["answers"]
        return [answers] if isinstance(answers, str) else list(answers)
    if "completion" in example:
        return [example["completion"]]
    raise ValueError(f"Exact match needs 'answers' or 'completion' in each example; got keys {sorted(example)}")


@torch.no_grad()
def exact_match_scores(
    model,
    tokenizer,
    dataset,
    batch_size: int = 16,
    max_new_tokens: int = 32,
    show_progress: bool = True,
) -> np.ndarray:
    """1.0 where the greedy answer to ``prompt`` (cut at the first blank line) matches one of the
    example's ``answers`` (or its ``completion``) after SQuAD normalisation, else 0.0."""
    examples = [dataset[i] for i in range(len(dataset))]
    state = PartialState()
    indices = list(range(len(examples)))[state.process_index :: state.num_processes]
    device = next(model.parameters()).device
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    was_training = model.training
    model.eval()
    local = []
    try:
        starts = range(0, len(indices), batch_size)
        for start in tqdm(starts, desc="exact match", disable=not (show_progress and state.is_main_process)):
            batch = indices[start : start + batch_size]
            prompts = [examples[i]["prompt"] for i in batch]
            inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
            output = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            for index, text in zip(batch, texts):
                prediction = normalize_answer(text.strip().split("\n\n")[0])
                hit = any(prediction == normalize_answer(answer) for answer in _answers(examples[index]))
                local.append((index, 1.0 if hit else 0.0))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    gathered = gather_object(local) if state.num_processes > 1 else local
    scores = np.zeros(len(examples), dtype=np.float32)
    for index, value in gathered:
        scores[index] = value
    return scores
