"""The forgetting-matrix format: one header schema, one writer and one reader for folders and Hub repos.

A matrix is stored as (the same names in a local folder and in a Hub dataset repo):

- ``forgetting_matrix.json``: the header, ``{"kind": "forgetting_matrix", "format_version": 2,
  "metric", "num_examples", "example_ids_sha256", "metadata"}``; ``metadata`` is the matrix-level
  provenance (base model, upstream data, settings), never per-row;
- ``examples.parquet``: column ``example_id``, the column order of every row;
- task rows as parquet tables of :data:`ROWS_SCHEMA` (``task_id``, ``forgetting`` as list<float32>,
  ``contributor``, ``provenance`` as JSON, the ``example_ids_sha256`` the row is aligned with): a local
  folder holds them all in ``forgetting.parquet``; a Hub repo holds one file per contribution under
  ``rows/``, merged oldest first.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..errors import ForgettingMatrixError, RepoKindError

MATRIX_KIND = "forgetting_matrix"
FORMAT_VERSION = 2
METRICS = ("nll_increase", "em_drop")
HEADER_FILE = "forgetting_matrix.json"
EXAMPLES_FILE = "examples.parquet"
VALUES_FILE = "forgetting.parquet"
ROWS_FOLDER = "rows"
# Metadata keys that describe rows or where a matrix was read from: kept in the rows, not the header.
NOT_IN_HEADER = ("rows", "hub")
EXAMPLES_SCHEMA = pa.schema([("example_id", pa.string())])
ROWS_SCHEMA = pa.schema(
    [
        ("task_id", pa.string()),
        ("forgetting", pa.list_(pa.float32())),
        ("contributor", pa.string()),
        ("provenance", pa.string()),
        ("example_ids_sha256", pa.string()),
    ]
)


def example_ids_sha256(example_ids: Sequence[str]) -> str:
    """Fingerprint of an example-id list (order matters): rows are comparable only if theirs agree."""
    return hashlib.sha256("\n".join(example_ids).encode()).hexdigest()


def validate_ids(ids: Sequence, kind: str) -> list[str]:
    """``ids`` as a list, checked to be unique non-empty strings (linear time)."""
    ids = list(ids)
    bad = [i for i in ids if not isinstance(i, str) or not i]
    if bad:
        raise ForgettingMatrixError(f"{kind} must be non-empty strings; got {bad[:3]!r}")
    seen, duplicates = set(), set()
    for i in ids:
        if i in seen:
            duplicates.add(i)
        seen.add(i)
    if duplicates:
        raise ForgettingMatrixError(f"{kind} must be unique; duplicated: {sorted(duplicates)[:5]!r}")
    return ids


@dataclass(frozen=True)
class MatrixHeader:
    """The header of a stored matrix (``forgetting_matrix.json``).

    Args:
        metric (`str`):
            `"nll_increase"` or `"em_drop"`.
        num_examples (`int`):
            Number of upstream examples (columns).
        example_ids_sha256 (`str`):
            :func:`example_ids_sha256` of the column order.
        metadata (`dict`):
            Matrix-level provenance, without the per-row keys of :data:`NOT_IN_HEADER`.
        format_version (`int`):
            The version the header was written with.
    """

    metric: str
    num_examples: int
    example_ids_sha256: str
    metadata: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @classmethod
    def of(cls, metric: str, example_ids: Sequence[str], metadata: dict) -> MatrixHeader:
        """The header a matrix is written with (the current version)."""
        kept = {key: value for key, value in metadata.items() if key not in NOT_IN_HEADER}
        return cls(metric, len(example_ids), example_ids_sha256(example_ids), kept)

    def to_json(self) -> str:
        content = {
            "kind": MATRIX_KIND,
            "format_version": FORMAT_VERSION,
            "metric": self.metric,
            "num_examples": self.num_examples,
            "example_ids_sha256": self.example_ids_sha256,
            "metadata": self.metadata,
        }
        return json.dumps(content, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, where: str, max_examples: int | None = None) -> MatrixHeader:
        """Parse and check a header; errors start with ``where`` (the file, or repo and file)."""
        try:
            content = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ForgettingMatrixError(f"{where}: not valid JSON ({error})") from None
        if not isinstance(content, dict):
            raise ForgettingMatrixError(f"{where}: expected a JSON object")
        check_kind(content.get("kind"), MATRIX_KIND, where)
        version = content.get("format_version")
        if version != FORMAT_VERSION:
            raise ForgettingMatrixError(
                f"{where}: unsupported format_version {version!r} (this hf_forgetting reads format_version {FORMAT_VERSION})"
            )
        if content.get("metric") not in METRICS:
            raise ForgettingMatrixError(f"{where}: metric must be one of {METRICS}; got {content.get('metric')!r}")
        num_examples = content.get("num_examples")
        limit = max_examples if max_examples is not None else math.inf
        if not _is_int(num_examples) or not 1 <= num_examples <= limit:
            bound = f"1..{max_examples:,}" if max_examples is not None else ">= 1"
            raise ForgettingMatrixError(f"{where}: num_examples must be an integer in {bound}; got {num_examples!r}")
        sha = content.get("example_ids_sha256")
        if not isinstance(sha, str):
            raise ForgettingMatrixError(f"{where}: field 'example_ids_sha256' (string) is required")
        if not isinstance(content.get("metadata"), dict):
            raise ForgettingMatrixError(f"{where}: field 'metadata' (object) is required")
        return cls(content["metric"], num_examples, sha, content["metadata"], version)


def check_kind(found, expected: str, where: str) -> None:
    """Refuse a file or repo that holds another kind of artifact."""
    if found != expected:
        named = found.replace("_", " ") if found in ("forgetting_matrix", "forgetting_predictor") else f"kind {found!r}"
        raise RepoKindError(f"{where}: holds a {named}, not a {expected.replace('_', ' ')}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- example ids ----------------------------------------------------------------------------------


def examples_table(example_ids: Sequence[str]) -> pa.Table:
    return pa.table({"example_id": pa.array(list(example_ids), pa.string())}, schema=EXAMPLES_SCHEMA)


def read_examples(table: pa.Table, header: MatrixHeader, where: str) -> list[str]:
    """The example ids of ``examples.parquet``, checked against the header."""
    check_schema(table.schema, EXAMPLES_SCHEMA, where)
    check_text(table, where)
    column = table.column("example_id")
    if len(column) != header.num_examples:
        raise ForgettingMatrixError(f"{where}: holds {len(column)} example ids; {HEADER_FILE} declares {header.num_examples}")
    if column.null_count:
        raise ForgettingMatrixError(f"{where}: {column.null_count} example ids are missing (null)")
    try:
        example_ids = validate_ids(column.to_pylist(), "example_ids")
    except ForgettingMatrixError as error:
        raise ForgettingMatrixError(f"{where}: {error}") from None
    if example_ids_sha256(example_ids) != header.example_ids_sha256:
        raise ForgettingMatrixError(f"{where}: the example ids do not match the example_ids_sha256 in {HEADER_FILE}")
    return example_ids


def check_schema(found: pa.Schema, expected: pa.Schema, where: str) -> None:
    if [(f.name, f.type) for f in found] != [(f.name, f.type) for f in expected]:
        wanted = ", ".join(f"{f.name}: {f.type}" for f in expected)
        got = ", ".join(f"{f.name}: {f.type}" for f in found)
        raise ForgettingMatrixError(f"{where}: has columns ({got}); expected ({wanted})")


def check_text(table: pa.Table, where: str) -> None:
    """Refuse string columns that are not valid UTF-8 (a hand-made or damaged file), naming the file and column,
    before any is decoded."""
    for name in table.column_names:
        if pa.types.is_string(table.schema.field(name).type):
            try:
                table.column(name).validate(full=True)
            except pa.ArrowInvalid as error:
                raise ForgettingMatrixError(f"{where}: column {name!r} is not valid UTF-8 text ({error})") from None


# -- task rows ------------------------------------------------------------------------------------


@dataclass
class TaskRow:
    """One task's row as stored: its values, who contributed it and how it was collected."""

    task_id: str
    values: np.ndarray
    contributor: str = ""
    provenance: dict = field(default_factory=dict)


def rows_table(rows: Sequence[TaskRow], example_ids: Sequence[str]) -> pa.Table:
    """The parquet table of ``rows`` (:data:`ROWS_SCHEMA`)."""
    sha = example_ids_sha256(example_ids)
    return pa.table(
        {
            "task_id": [row.task_id for row in rows],
            "forgetting": pa.array([np.asarray(row.values, np.float32) for row in rows], pa.list_(pa.float32())),
            "contributor": [row.contributor for row in rows],
            "provenance": [json.dumps(row.provenance, sort_keys=True) for row in rows],
            "example_ids_sha256": [sha] * len(rows),
        },
        schema=ROWS_SCHEMA,
    )


def read_rows(table: pa.Table, header: MatrixHeader, where: str) -> list[TaskRow]:
    """The task rows of a rows table, each checked against the header."""
    return read_rows_and_values(table, header, where)[1]


def read_rows_and_values(table: pa.Table, header: MatrixHeader, where: str) -> tuple[np.ndarray, list[TaskRow]]:
    """``(values [rows, examples] float32, rows)`` of a rows table; each row's ``values`` is a view of the array.

    The values are converted column-wise (one float32 array, NaN for nulls): a Python object per entry
    would cost many times the values in memory on a paper-sized matrix."""
    check_schema(table.schema, ROWS_SCHEMA, where)
    check_text(table, where)
    task_ids = table.column("task_id").to_pylist()
    column = table.column("forgetting").combine_chunks()
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)  # NaN where a row's list is null
    for task_id, length in zip(task_ids, lengths):
        if not isinstance(task_id, str) or not task_id:
            raise ForgettingMatrixError(f"{where}: task ids must be non-empty strings; got {task_id!r}")
        if np.isnan(length) or length != header.num_examples:
            count = 0 if np.isnan(length) else int(length)
            raise ForgettingMatrixError(f"{where}: task {task_id!r} has {count} values; expected {header.num_examples}")
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(task_ids), header.num_examples)
    infinite = np.isinf(values).any(axis=1)
    if infinite.any():
        raise ForgettingMatrixError(f"{where}: task {task_ids[int(np.argmax(infinite))]!r} has infinite values")
    shas, contributors, provenances = (table.column(name).to_pylist() for name in ("example_ids_sha256", "contributor", "provenance"))
    rows = []
    for index, (task_id, sha, contributor, text) in enumerate(zip(task_ids, shas, contributors, provenances)):
        if sha != header.example_ids_sha256:
            raise ForgettingMatrixError(f"{where}: task {task_id!r} was collected on a different example-id list than {EXAMPLES_FILE}")
        try:
            provenance = json.loads(text or "{}")
        except json.JSONDecodeError as error:
            raise ForgettingMatrixError(f"{where}: task {task_id!r}: provenance is not valid JSON ({error})") from None
        rows.append(TaskRow(task_id, values[index], contributor or "", provenance if isinstance(provenance, dict) else {}))
    return values, rows


def rows_of(task_ids: Sequence[str], values: np.ndarray, metadata: dict) -> list[TaskRow]:
    """The stored rows of a matrix: each row's provenance comes from ``metadata["rows"][task]``."""
    per_row = metadata.get("rows", {})
    rows = []
    for task_id, row in zip(task_ids, values):
        provenance = dict(per_row.get(task_id) or {})
        contributor = str(provenance.pop("contributor", "") or "")
        rows.append(TaskRow(task_id, row, contributor, provenance))
    return rows


def metadata_with_rows(header: MatrixHeader, rows: Sequence[TaskRow], extra: dict | None = None) -> dict:
    """The in-memory metadata of a read matrix: the header's, plus each row's provenance under ``"rows"``."""
    metadata = dict(header.metadata)
    per_row = {
        row.task_id: {**row.provenance, **({"contributor": row.contributor} if row.contributor else {})}
        for row in rows
        if row.provenance or row.contributor
    }
    if per_row:
        metadata["rows"] = per_row
    return {**metadata, **(extra or {})}
