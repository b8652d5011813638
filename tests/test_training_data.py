"""What a trainer trains on: long prompts keep their completions, what survives is counted, a hollow
task is refused, and the seed changes the data order. Tiny random model and locally trained tokenizer;
the tasks are synthetic string manipulation (labelled as such)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import configs, write_jsonl
from datasets import Dataset

from hf_forgetting.collect import collect_forgetting_matrix
from hf_forgetting.training_data import HollowTaskError, prepare_training_rows

WORDS = "list dict tuple string parser logger module object integer pattern".split()
LONG_PROMPT = "Read this carefully. " + " ".join(f"{w} {w[::-1]}" for w in WORDS * 6) + " Now reverse"


def completion_ids(tokenizer, prompt, completion):
    """The completion's tokens as the scorer sees them (prompt+completion past the prompt), plus EOS."""
    return tokenizer(prompt + completion)["input_ids"][len(tokenizer(prompt)["input_ids"]):] + [tokenizer.eos_token_id]


def test_long_prompts_keep_their_whole_completion(tiny_tokenizer):
    rows = [{"prompt": f"{LONG_PROMPT} {w}:", "completion": f" {w[::-1]}"} for w in WORDS]
    assert all(len(tiny_tokenizer(r["prompt"])["input_ids"]) > 64 for r in rows)  # each prompt alone exceeds max_length
    prepared = prepare_training_rows(Dataset.from_list(rows), tiny_tokenizer, max_length=32)
    assert prepared.kept == prepared.requested == len(WORDS) and prepared.prompt_truncated == len(WORDS)
    for row, ids, labels in zip(rows, prepared.dataset["input_ids"], prepared.dataset["labels"]):
        completion = completion_ids(tiny_tokenizer, row["prompt"], row["completion"])
        assert len(ids) == 32 and ids[-len(completion):] == completion  # the end is kept
        assert [t for t in labels if t != -100] == completion  # and exactly the completion is trained


def test_completions_longer_than_max_length_are_dropped_and_counted(tiny_tokenizer):
    rows = [{"prompt": "Say:", "completion": " " + " ".join(WORDS * 4)}, {"prompt": "Say:", "completion": " yes"}]
    prepared = prepare_training_rows(Dataset.from_list(rows), tiny_tokenizer, max_length=16)
    assert (prepared.requested, prepared.kept, prepared.dropped) == (2, 1, 1)
    counts = prepared.counts()
    assert counts["num_train_examples"] == 1 and counts["num_dropped_examples"] == 1
    assert counts["num_trained_tokens"] == len(completion_ids(tiny_tokenizer, "Say:", " yes"))
    with pytest.raises(HollowTaskError, match=r"Task 'say': only 1 of 2 training examples fit max_length=16"):
        prepared.check("say", 16, 0.9)
    prepared.check("say", 16, 0.9, allow_hollow=True)  # explicitly allowed


def test_raw_text_keeps_its_start_and_chats_their_last_assistant_turn(tiny_tokenizer):
    text = " ".join(WORDS * 5)
    prepared = prepare_training_rows(Dataset.from_list([{"text": text}]), tiny_tokenizer, max_length=12)
    assert prepared.dataset["input_ids"][0] == tiny_tokenizer(text)["input_ids"][:12]

    chat = [{"messages": [{"role": "user", "content": LONG_PROMPT}, {"role": "assistant", "content": "tsil"}]}]
    prepared = prepare_training_rows(Dataset.from_list(chat), tiny_tokenizer, max_length=24)
    trained = [t for t in prepared.dataset["labels"][0] if t != -100]
    assert prepared.kept == 1 and "tsil" in tiny_tokenizer.decode(trained)


@pytest.fixture
def long_prompt_task(tmp_path):
    """8 examples with prompts longer than max_length, 2 of them with completions longer than it too."""
    rows = [{"prompt": f"{LONG_PROMPT} {w}:", "completion": f" {w[::-1]}"} for w in WORDS[:6]]
    rows += [{"prompt": f"Spell {w}:", "completion": " " + " ".join(w * 20)} for w in WORDS[6:8]]
    return write_jsonl(tmp_path / "long_prompts.jsonl", rows), rows


def test_collected_row_counts_what_the_trainer_iterates(data_files, tiny_checkpoint, tiny_tokenizer, tmp_path, long_prompt_task):
    path, rows = long_prompt_task
    args, training, model = configs(data_files, tiny_checkpoint, tmp_path / "out", tasks=[path], min_train_fraction=0.5)
    matrix = collect_forgetting_matrix(args, training, model)
    provenance = matrix.metadata["rows"][path]
    # independently: an example survives when its completion (with EOS) fits max_length = 64
    fits = sum(len(completion_ids(tiny_tokenizer, r["prompt"], r["completion"])) < training.max_length for r in rows)
    assert fits == 6
    assert provenance["num_train_examples"] == provenance["num_requested_examples"] - provenance["num_dropped_examples"] == fits
    assert provenance["num_prompt_truncated"] == 6 and provenance["hollow"] is False  # 6 of 8 passes min_train_fraction=0.5
    assert "| 6 (8) |" in (tmp_path / "out" / "summary.md").read_text()
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["preparation"] == "keep-completion-v1"


def test_a_hollow_task_is_refused_before_anything_trains(data_files, tiny_checkpoint, tmp_path, long_prompt_task):
    path, _ = long_prompt_task
    args, training, model = configs(data_files, tiny_checkpoint, tmp_path / "out", tasks=[data_files["reverse"], path])
    with pytest.raises(HollowTaskError, match=r"long_prompts.jsonl': only 6 of 8 training examples fit max_length=64"):
        collect_forgetting_matrix(args, training, model)
    assert not list((tmp_path / "out" / "rows").glob("*.parquet"))  # not even the good task was trained first
    args = dataclasses.replace(args, allow_hollow_rows=True)
    matrix = collect_forgetting_matrix(args, training, model)  # allowed explicitly, into the same folder
    assert matrix.metadata["rows"][path]["hollow"] is True  # 6 of 8 is below the default 0.9
    assert matrix.metadata["rows"][data_files["reverse"]]["hollow"] is False
    assert "6 (8) hollow" in (tmp_path / "out" / "summary.md").read_text()


def test_the_seed_changes_the_training_order_and_the_row(data_files, tiny_checkpoint, tmp_path):
    rows = {}
    for seed in (1, 2):
        args, training, model = configs(data_files, tiny_checkpoint, tmp_path / f"seed{seed}", tasks=[data_files["reverse"]])
        training = dataclasses.replace(training, seed=seed, max_steps=2, per_device_train_batch_size=2)
        rows[seed] = collect_forgetting_matrix(args, training, model).values[0]
    assert not np.allclose(rows[1], rows[2])


def test_old_collections_prepared_otherwise_are_not_resumed(data_files, tiny_checkpoint, tmp_path):
    args, training, model = configs(data_files, tiny_checkpoint, tmp_path, tasks=[data_files["reverse"]])
    collect_forgetting_matrix(args, training, model)
    run = json.loads((tmp_path / "run.json").read_text())
    del run["preparation"]  # as a run.json written before training rows kept their completions
    Path(tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(ValueError, match="preparation: None -> 'keep-completion-v1'"):
        collect_forgetting_matrix(args, training, model)
