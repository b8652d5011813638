"""Upstream and task datasets as ``datasets.Dataset`` objects with stable, explicit example ids.

A name is one of the embedded offline sources (see :mod:`hf_forgetting.data.embedded`), a local
file (``.jsonl``, ``.json``, ``.parquet``, ``.csv``) or folder (``Dataset.save_to_disk`` output, or
data files), or a Hub dataset id (``org/name``, optionally ``org/name:config``). A task name may end
in ``@column=value`` to keep only the rows whose ``column`` equals ``value`` (one category of a
mixture, e.g. ``databricks/databricks-dolly-15k@category=open_qa``).

Every dataset has an ``example_id`` column plus one of the formats TRL's ``SFTTrainer`` trains on:
``text`` (raw text: every token but the first is scored), ``prompt``/``completion`` (the completion
is scored; an ``answers`` list may accompany it for exact match) or ``messages`` (chat).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .embedded import EMBEDDED_UPSTREAM_MIX, TASK_SOURCES, UPSTREAM_SOURCES

EMBEDDED_UPSTREAM = "embedded"
EMBEDDED_TASKS = tuple(TASK_SOURCES)
EXAMPLE_FORMATS = ({"prompt", "completion"}, {"messages"}, {"text"})

if TYPE_CHECKING:  # `datasets` is slow to import: it loads with the first dataset, not with this module
    from datasets import Dataset

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
    ``"squad_shifts_qa"``, a local file or folder, or a Hub dataset id; ``text_field`` names its raw-text
    column (renamed to ``text``) unless it is in prompt/completion or messages format."""
    if name == EMBEDDED_UPSTREAM:
        from datasets import Dataset, concatenate_datasets

        dataset = concatenate_datasets([Dataset.from_list(UPSTREAM_SOURCES[part]()) for part in EMBEDDED_UPSTREAM_MIX])
    elif name in UPSTREAM_SOURCES:
        from datasets import Dataset

        dataset = Dataset.from_list(UPSTREAM_SOURCES[name]())
    else:
        dataset = _with_ids(_load_external(name, split), name, split, id_field)
        if text_field != "text" and text_field in dataset.column_names:
            dataset = dataset.rename_column(text_field, "text")
        _check_format(dataset, name)
    _check_unique_ids(dataset, name)
    return subsample(dataset, num_examples, seed)


def load_task(
    name: str,
    max_examples: int | None = None,
    *,
    seed: int = 0,
    split: str = "train",
    id_field: str | None = None,
    prompt_field: str | None = None,
    completion_field: str | None = None,
) -> Dataset:
    """Load a fine-tuning task by embedded name (see ``EMBEDDED_TASKS``), local file or Hub dataset id,
    optionally filtered (``name@column=value``); ``prompt_field`` / ``completion_field`` name the
    columns to train on when the dataset has no ``prompt``/``completion``, ``messages`` or ``text``."""
    if name in TASK_SOURCES:
        from datasets import Dataset

        dataset = Dataset.from_list(TASK_SOURCES[name]())
    elif "/" in name or Path(name).exists():
        source, column, value = _split_filter(name)
        dataset = _with_ids(_filtered(_load_external(source, split), column, value, name), name, split, id_field)
        if (prompt_field or completion_field) and not _has_format(dataset):
            dataset = _renamed_to_prompt_completion(dataset, prompt_field, completion_field, name)
        _check_format(dataset, name)
    else:
        raise ValueError(
            f"Unknown task {name!r}: use one of {list(EMBEDDED_TASKS)}, a local file or folder, or a Hub dataset id."
        )
    _check_unique_ids(dataset, name)
    return subsample(dataset, max_examples, seed)


def _split_filter(name: str) -> tuple[str, str | None, str | None]:
    """``"org/name:config@column=value"`` -> ``("org/name:config", "column", "value")``."""
    source, at, condition = name.partition("@")
    if not at:
        return name, None, None
    column, equals, value = condition.partition("=")
    if not equals or not column:
        raise ValueError(f"Task {name!r}: a filter is written '@column=value'")
    return source, column, value


def _filtered(dataset: Dataset, column: str | None, value: str | None, name: str) -> Dataset:
    if column is None:
        return dataset
    if column not in dataset.column_names:
        raise ValueError(f"Task {name!r}: no column {column!r} to filter on; columns: {dataset.column_names}")
    filtered = dataset.filter(lambda row: str(row[column]) == value)
    if len(filtered) == 0:
        raise ValueError(f"Task {name!r}: no row has {column} == {value!r}")
    return filtered


def _renamed_to_prompt_completion(dataset: Dataset, prompt_field, completion_field, name: str) -> Dataset:
    missing = [f for f in (prompt_field, completion_field) if f is None or f not in dataset.column_names]
    if missing:
        raise ValueError(f"Task {name!r}: prompt/completion fields {missing} not among {dataset.column_names}")
    keep = {"example_id", prompt_field, completion_field}
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in keep])
    return dataset.rename_columns({prompt_field: "prompt", completion_field: "completion"})


DATA_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _load_external(name: str, split: str) -> Dataset:
    """A local file or folder, else a Hub dataset id (``org/name[:config]``)."""
    from datasets import load_dataset, load_from_disk

    local = Path(name)
    if local.is_file():
        builder = DATA_FILE_BUILDERS.get(local.suffix)
        if builder is None:
            raise ValueError(f"{local}: unsupported file type; use one of {sorted(DATA_FILE_BUILDERS)}")
        return load_dataset(builder, data_files=str(local), split="train")
    if local.is_dir() and (local / "state.json").exists():
        return load_from_disk(str(local))
    path, _, config = name.partition(":")
    return load_dataset(path, config or None, split=split)


def _with_ids(dataset: Dataset, name: str, split: str, id_field: str | None) -> Dataset:
    if id_field is not None:
        if id_field not in dataset.column_names:
            raise ValueError(f"Dataset {name!r} has no id column {id_field!r}: {dataset.column_names}")
        return dataset.map(lambda row: {"example_id": str(row[id_field])})
    if "example_id" in dataset.column_names:
        return dataset
    source, at, condition = name.partition("@")
    label = (Path(source).name if Path(source).exists() else source) + at + condition  # not where a file lies
    return dataset.map(lambda _, index: {"example_id": f"{label}/{split}/{index}"}, with_indices=True)


def _has_format(dataset: Dataset) -> bool:
    return any(columns <= set(dataset.column_names) for columns in EXAMPLE_FORMATS)


def _check_format(dataset: Dataset, name: str) -> None:
    if not _has_format(dataset):
        raise ValueError(
            f"Dataset {name!r} needs a 'text' column, 'prompt' + 'completion', or 'messages'; "
            f"it has {dataset.column_names}"
        )


def _check_unique_ids(dataset: Dataset, name: str) -> None:
    ids = dataset["example_id"]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Dataset {name!r} has duplicate example ids; pass an id_field that is unique.")
