"""Upstream and task datasets as ``datasets.Dataset`` objects with stable, explicit example ids.

A name is either one of the embedded offline sources (see :mod:`hf_forgetting.data.embedded`) or a
Hub dataset id (``org/name``, optionally ``org/name:config``) for users who can reach the Hub.

Upstream datasets have the columns ``example_id`` and ``text`` (raw text; every token but the first
is scored). Task datasets have ``example_id`` plus either ``prompt``/``completion``, ``messages`` or
``text``, the formats TRL's ``SFTTrainer`` trains on.
"""

from __future__ import annotations

from datasets import Dataset, concatenate_datasets

from .embedded import TASK_SOURCES, UPSTREAM_SOURCES

EMBEDDED_UPSTREAM = "embedded"
EMBEDDED_TASKS = tuple(TASK_SOURCES)
TASK_COLUMNS = ({"prompt", "completion"}, {"messages"}, {"text"})

__all__ = ["EMBEDDED_TASKS", "EMBEDDED_UPSTREAM", "load_task", "load_upstream", "subsample"]


def subsample(dataset: Dataset, num_examples: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``num_examples`` rows (all rows, shuffled, when None)."""
    if num_examples is not None and num_examples > len(dataset):
        raise ValueError(f"Asked for {num_examples} examples but the dataset has only {len(dataset)}.")
    shuffled = dataset.shuffle(seed=seed)
    return shuffled if num_examples is None else shuffled.select(range(num_examples))


def load_upstream(
    name: str = EMBEDDED_UPSTREAM,
    num_examples: int | None = None,
    seed: int = 0,
    split: str = "train",
    text_field: str = "text",
    id_field: str | None = None,
) -> Dataset:
    """Load upstream examples: ``"embedded"`` (SQuAD-shifts + Austen), ``"squad_shifts"``, ``"austen"``,
    or a Hub dataset id whose ``text_field`` holds raw text."""
    if name == EMBEDDED_UPSTREAM:
        parts = [Dataset.from_list(loader()) for loader in UPSTREAM_SOURCES.values()]
        dataset = concatenate_datasets(parts)
    elif name in UPSTREAM_SOURCES:
        dataset = Dataset.from_list(UPSTREAM_SOURCES[name]())
    else:
        dataset = _load_hub(name, split)
        if text_field not in dataset.column_names:
            raise ValueError(f"Upstream dataset {name!r} has no column {text_field!r}: {dataset.column_names}")
        dataset = _with_ids(dataset, name, split, id_field)
        dataset = dataset.select_columns(["example_id", text_field]).rename_columns(
            {text_field: "text"} if text_field != "text" else {}
        )
    _check_unique_ids(dataset, name)
    return subsample(dataset, num_examples, seed)


def load_task(
    name: str,
    max_examples: int | None = None,
    seed: int = 0,
    split: str = "train",
    id_field: str | None = None,
) -> Dataset:
    """Load a fine-tuning task by embedded name (see ``EMBEDDED_TASKS``) or Hub dataset id."""
    if name in TASK_SOURCES:
        dataset = Dataset.from_list(TASK_SOURCES[name]())
    elif "/" in name:
        dataset = _with_ids(_load_hub(name, split), name, split, id_field)
        if not any(columns <= set(dataset.column_names) for columns in TASK_COLUMNS):
            raise ValueError(
                f"Task dataset {name!r} needs prompt/completion, messages or text columns; it has {dataset.column_names}"
            )
    else:
        raise ValueError(f"Unknown task {name!r}: use one of {list(EMBEDDED_TASKS)} or a Hub dataset id 'org/name'.")
    _check_unique_ids(dataset, name)
    return subsample(dataset, max_examples, seed)


def _load_hub(name: str, split: str) -> Dataset:
    from datasets import load_dataset

    path, _, config = name.partition(":")
    return load_dataset(path, config or None, split=split)


def _with_ids(dataset: Dataset, name: str, split: str, id_field: str | None) -> Dataset:
    if id_field is not None:
        if id_field not in dataset.column_names:
            raise ValueError(f"Dataset {name!r} has no id column {id_field!r}: {dataset.column_names}")
        return dataset.map(lambda row: {"example_id": str(row[id_field])})
    if "example_id" in dataset.column_names:
        return dataset
    return dataset.map(lambda _, index: {"example_id": f"{name}/{split}/{index}"}, with_indices=True)


def _check_unique_ids(dataset: Dataset, name: str) -> None:
    ids = dataset["example_id"]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Dataset {name!r} has duplicate example ids; pass an id_field that is unique.")
