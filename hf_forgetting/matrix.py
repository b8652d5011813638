"""The forgetting matrix: M fine-tuning tasks x N upstream examples, NaN where not observed.

On disk (``save`` / ``load``) a matrix is a folder of three files, none of them pickled:
- ``forgetting.parquet``: one row per task, columns ``task_id`` (string) and ``forgetting``
  (list of float32, aligned with the example ids);
- ``examples.parquet``: column ``example_id`` (string), the column order;
- ``forgetting_matrix.json``: format version, metric, shape and the provenance metadata.
The same layout is what ``datasets.load_dataset("parquet", ...)`` reads and what goes to the Hub.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .files import atomic_write_parquet, atomic_write_text

METRICS = ("nll_increase", "em_drop")
FORMAT_VERSION = 1
VALUES_FILE = "forgetting.parquet"
EXAMPLES_FILE = "examples.parquet"
META_FILE = "forgetting_matrix.json"


class ForgettingMatrixError(ValueError):
    """A forgetting matrix, or a file holding one, is malformed."""


def example_ids_sha256(example_ids: Sequence[str]) -> str:
    """Fingerprint of an example-id list (order matters): rows are comparable only if theirs agree."""
    return hashlib.sha256("\n".join(example_ids).encode()).hexdigest()


def validate_ids(ids: Sequence, kind: str) -> list[str]:
    ids = list(ids)
    bad = [i for i in ids if not isinstance(i, str) or not i]
    if bad:
        raise ForgettingMatrixError(f"{kind} must be non-empty strings; got {bad[:3]!r}")
    seen, duplicates = set(), []
    for i in ids:
        if i in seen:
            duplicates.append(i)
        seen.add(i)
    if duplicates:
        raise ForgettingMatrixError(f"{kind} must be unique; duplicated: {sorted(set(duplicates))[:5]!r}")
    return ids


class ForgettingMatrix:
    """Per-example forgetting of N upstream examples after fine-tuning on each of M tasks.

    Args:
        values: ``[M, N]`` array; NaN marks an unobserved entry; infinities are rejected.
        task_ids: M unique task names (rows).
        example_ids: N unique upstream example ids (columns).
        metric: ``"nll_increase"`` (mean token NLL after minus before) or ``"em_drop"`` (exact match
            before minus after: 1 forgotten, 0 kept, -1 learned).
        metadata: JSON-serialisable provenance (base model, upstream dataset, settings, ...).
    """

    def __init__(
        self,
        values,
        task_ids: Sequence[str],
        example_ids: Sequence[str],
        metric: str = "nll_increase",
        metadata: dict[str, Any] | None = None,
    ):
        values = np.array(values, dtype=np.float32, copy=True)
        if values.ndim != 2:
            raise ForgettingMatrixError(f"values must be 2-D [tasks, examples]; got shape {values.shape}")
        self.task_ids = validate_ids(task_ids, "task_ids")
        self.example_ids = validate_ids(example_ids, "example_ids")
        if values.shape != (len(self.task_ids), len(self.example_ids)):
            raise ForgettingMatrixError(
                f"values have shape {values.shape} but there are {len(self.task_ids)} task_ids "
                f"and {len(self.example_ids)} example_ids"
            )
        if np.isinf(values).any():
            rows, cols = np.nonzero(np.isinf(values))
            raise ForgettingMatrixError(
                f"values contain {len(rows)} infinite entries, first at task {self.task_ids[rows[0]]!r}, "
                f"example {self.example_ids[cols[0]]!r}"
            )
        if metric not in METRICS:
            raise ForgettingMatrixError(f"metric must be one of {METRICS}; got {metric!r}")
        if metric == "em_drop":
            observed = values[~np.isnan(values)]
            if not np.isin(observed, (-1.0, 0.0, 1.0)).all():
                raise ForgettingMatrixError("em_drop values must be -1, 0, 1 or NaN")
        metadata = dict(metadata or {})
        try:
            json.dumps(metadata)
        except TypeError as error:
            raise ForgettingMatrixError(f"metadata must be JSON-serialisable: {error}") from error
        values.setflags(write=False)
        self.values, self.metric, self.metadata = values, metric, metadata

    # -- basic properties -----------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    @property
    def mask(self) -> np.ndarray:
        """True where an entry is observed."""
        return ~np.isnan(self.values)

    def __repr__(self) -> str:
        observed = self.mask.mean() if self.values.size else 0.0
        return (
            f"ForgettingMatrix(tasks={self.shape[0]}, examples={self.shape[1]}, metric={self.metric!r}, "
            f"observed={observed:.1%})"
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, ForgettingMatrix):
            return NotImplemented
        return (
            self.task_ids == other.task_ids
            and self.example_ids == other.example_ids
            and self.metric == other.metric
            and self.metadata == other.metadata
            and np.array_equal(self.values, other.values, equal_nan=True)
        )

    def row(self, task_id: str) -> np.ndarray:
        try:
            return self.values[self.task_ids.index(task_id)]
        except ValueError:
            raise KeyError(f"No task {task_id!r} in this matrix; tasks: {self.task_ids[:10]}...") from None

    # -- building -------------------------------------------------------------------------------

    def append_rows(self, values, task_ids: Sequence[str], example_ids: Sequence[str] | None = None) -> ForgettingMatrix:
        """A new matrix with more task rows; ``example_ids``, if given, must equal this matrix's."""
        if example_ids is not None and list(example_ids) != self.example_ids:
            raise ForgettingMatrixError("example_ids of the new rows differ from the matrix's example_ids")
        values = np.asarray(values, dtype=np.float32)
        if values.ndim == 1:
            values = values[None, :]
        overlap = sorted(set(task_ids) & set(self.task_ids))
        if overlap:
            raise ForgettingMatrixError(f"task_ids already in the matrix: {overlap}")
        if values.ndim != 2 or values.shape[1] != len(self.example_ids):
            raise ForgettingMatrixError(
                f"new rows have shape {values.shape}; expected [k, {len(self.example_ids)}]"
            )
        return ForgettingMatrix(
            np.concatenate([self.values, values]),
            self.task_ids + list(task_ids),
            self.example_ids,
            self.metric,
            self.metadata,
        )

    # -- files ----------------------------------------------------------------------------------

    def _table(self) -> pa.Table:
        return pa.table(
            {
                "task_id": pa.array(self.task_ids, pa.string()),
                "forgetting": pa.array(list(self.values), pa.list_(pa.float32())),
            }
        )

    def _header(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "metric": self.metric,
            "num_tasks": self.shape[0],
            "num_examples": self.shape[1],
            "metadata": self.metadata,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the matrix into ``directory``; each file is written atomically (temp file + rename)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        examples = pa.table({"example_id": pa.array(self.example_ids, pa.string())})
        atomic_write_parquet(directory / EXAMPLES_FILE, examples)
        atomic_write_parquet(directory / VALUES_FILE, self._table())
        atomic_write_text(directory / META_FILE, json.dumps(self._header(), indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ForgettingMatrix:
        """Read a matrix written by :meth:`save`; a bad file raises an error naming it and the problem."""
        directory = Path(directory)
        header = _read_header(directory / META_FILE)
        example_ids = _read_column(directory / EXAMPLES_FILE, "example_id", pa.string())
        path = directory / VALUES_FILE
        task_ids = _read_column(path, "task_id", pa.string())
        rows = _read_column(path, "forgetting", None)
        num_tasks, num_examples = header["num_tasks"], header["num_examples"]
        if len(example_ids) != num_examples or len(task_ids) != num_tasks:
            raise ForgettingMatrixError(
                f"{directory}: {META_FILE} declares {num_tasks} x {num_examples} but the parquet files hold "
                f"{len(task_ids)} tasks and {len(example_ids)} example ids"
            )
        if any(row is None or len(row) != num_examples for row in rows):
            raise ForgettingMatrixError(f"{path}: every 'forgetting' row must have {num_examples} values")
        values = np.array(rows, dtype=np.float32).reshape(num_tasks, num_examples)
        try:
            return cls(values, task_ids, example_ids, header["metric"], header["metadata"])
        except ForgettingMatrixError as error:
            raise ForgettingMatrixError(f"{directory}: {error}") from None

    # -- the Hub --------------------------------------------------------------------------------

    def push_to_hub(
        self,
        repo_id: str,
        token: str | None = None,
        private: bool | None = None,
        branch: str | None = None,
        commit_message: str | None = None,
        license: str | None = None,  # noqa: A002 - the dataset-card field's name
    ):
        """Push to a Hub dataset repo in one commit: the whole matrix into a new repo; into a repo
        that already holds a matrix over the same examples, only the task rows it lacks, as one
        more contribution file. Returns the ``CommitInfo`` (None when there was nothing new)."""
        from .hub import push_matrix

        return push_matrix(self, repo_id, token, private, branch, commit_message, license)

    @classmethod
    def from_hub(
        cls, repo_id: str, revision: str | None = None, token: str | None = None, on_duplicate: str = "error"
    ) -> ForgettingMatrix:
        """The matrix of a Hub dataset repo, every contribution merged, read at one commit of
        ``revision`` (branch, tag or commit id). Files are checked (names, sizes, checksums,
        schemas, ids) before use; nothing is unpickled or executed."""
        from .hub import load_matrix

        return load_matrix(repo_id, revision, token, on_duplicate)

    # -- datasets -------------------------------------------------------------------------------

    def to_dataset(self):
        """A ``datasets.Dataset`` with one row per task (``task_id``, ``forgetting``); the example ids,
        metric and metadata travel in ``dataset.info.description`` as JSON."""
        from datasets import Dataset, DatasetInfo

        description = json.dumps({**self._header(), "example_ids": self.example_ids})
        return Dataset(self._table(), info=DatasetInfo(description=description))

    @classmethod
    def from_dataset(
        cls, dataset, example_ids: Sequence[str] | None = None, metric: str | None = None, metadata: dict | None = None
    ) -> ForgettingMatrix:
        """Inverse of :meth:`to_dataset`; arguments given here take precedence over the dataset's info."""
        header = {}
        if dataset.info.description:
            try:
                header = json.loads(dataset.info.description)
            except json.JSONDecodeError:
                header = {}
        example_ids = example_ids if example_ids is not None else header.get("example_ids")
        if example_ids is None:
            raise ForgettingMatrixError("The dataset carries no example ids; pass example_ids=")
        missing = {"task_id", "forgetting"} - set(dataset.column_names)
        if missing:
            raise ForgettingMatrixError(f"The dataset lacks column(s) {sorted(missing)}: {dataset.column_names}")
        rows = dataset["forgetting"]
        if any(len(row) != len(example_ids) for row in rows):
            raise ForgettingMatrixError(f"every 'forgetting' row must have {len(example_ids)} values")
        values = np.array(list(rows), dtype=np.float32).reshape(len(rows), len(example_ids))
        return cls(
            values,
            list(dataset["task_id"]),
            example_ids,
            metric or header.get("metric", "nll_increase"),
            metadata if metadata is not None else header.get("metadata", {}),
        )


def _read_header(path: Path) -> dict:
    try:
        header = json.loads(path.read_text())
    except FileNotFoundError:
        raise ForgettingMatrixError(f"{path}: file not found (is this a forgetting matrix folder?)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ForgettingMatrixError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise ForgettingMatrixError(f"{path}: expected a JSON object")
    if header.get("format_version") != FORMAT_VERSION:
        raise ForgettingMatrixError(f"{path}: unsupported format_version {header.get('format_version')!r}")
    for key, kind in (("metric", str), ("num_tasks", int), ("num_examples", int), ("metadata", dict)):
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise ForgettingMatrixError(f"{path}: field {key!r} missing or not a {kind.__name__}")
    if header["num_tasks"] < 0 or header["num_examples"] < 0:
        raise ForgettingMatrixError(f"{path}: negative shape")
    return header


def _read_column(path: Path, column: str, expected_type) -> list:
    try:
        table = pq.read_table(path, columns=[column])
    except FileNotFoundError:
        raise ForgettingMatrixError(f"{path}: file not found") from None
    except (pa.ArrowException, OSError, KeyError) as error:
        raise ForgettingMatrixError(f"{path}: cannot read column {column!r} ({error})") from None
    field_type = table.schema.field(column).type
    if expected_type is not None and field_type != expected_type:
        raise ForgettingMatrixError(f"{path}: column {column!r} has type {field_type}, expected {expected_type}")
    if expected_type is None and not (pa.types.is_list(field_type) and pa.types.is_floating(field_type.value_type)):
        raise ForgettingMatrixError(f"{path}: column {column!r} has type {field_type}, expected a list of floats")
    return table.column(column).to_pylist()
