"""The data a collected matrix came from, reloaded from the settings its metadata records.

These functions take any object with ``metadata``, ``example_ids`` and ``task_ids`` (a
``ForgettingMatrix``), so the data layer does not depend on the matrix class.
"""

from __future__ import annotations

from datasets import Dataset

from .arguments import TaskArguments, UpstreamArguments, from_settings


def collect_settings(matrix) -> dict:
    """The collect arguments a matrix was collected with, from its metadata."""
    settings = matrix.metadata.get("settings", {}).get("collect")
    if not settings:
        raise ValueError("The matrix metadata has no collect settings (was it collected with hf-forgetting collect?)")
    return settings


def load_matrix_upstream(matrix) -> Dataset:
    """The upstream examples of a collected matrix, reloaded from their sources, in column order."""
    upstream = from_settings(UpstreamArguments, collect_settings(matrix)).load_upstream()
    if list(upstream["example_id"]) != matrix.example_ids:
        raise ValueError("The reloaded upstream examples do not match the matrix's example ids")
    return upstream


def example_text(example: dict) -> str:
    """The text a person would read for an example: raw text, the prompt, or the first user turn."""
    if example.get("text"):
        return example["text"]
    if example.get("prompt"):
        return example["prompt"] if isinstance(example["prompt"], str) else example["prompt"][-1]["content"]
    return next(m["content"] for m in example["messages"] if m["role"] == "user")


def example_texts(matrix) -> dict[str, str]:
    """``{example id: text}`` of a collected matrix's upstream examples."""
    return {row["example_id"]: example_text(row) for row in load_matrix_upstream(matrix)}


def task_inputs(settings: dict, task: str, count: int = 32) -> list[str]:
    """The first ``count`` inputs of ``task``, loaded as the collection that recorded ``settings`` did."""
    dataset = from_settings(TaskArguments, settings).load_task(task, max_examples=None)
    return [example_text(row) for row in dataset.select(range(min(count, len(dataset))))]


def texts_for_matrix(matrix, examples_per_task: int = 32) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``(example_texts, task_texts)`` of a collected matrix: each upstream example's text, and a few
    inputs of each task."""
    settings = collect_settings(matrix)
    return example_texts(matrix), {task: task_inputs(settings, task, examples_per_task) for task in matrix.task_ids}
