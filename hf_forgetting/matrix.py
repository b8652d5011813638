"""The forgetting matrix: M fine-tuning tasks x N upstream examples, NaN where not observed.

``save`` / ``load`` write and read a folder in the format of :mod:`hf_forgetting.format.matrix` (the
same header and files a Hub dataset repo holds; nothing is pickled); ``push_to_hub`` / ``from_hub``
share it through the Hub.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ForgettingMatrixError, RepoKindError, UnknownExampleError
from .files import atomic_write_parquet, atomic_write_text
from .format.matrix import (
    EXAMPLES_FILE,
    HEADER_FILE,
    METRICS,
    VALUES_FILE,
    MatrixHeader,
    example_ids_sha256,
    examples_table,
    metadata_with_rows,
    read_examples,
    read_rows_and_values,
    rows_of,
    rows_table,
    validate_ids,
)
from .format.predictor import CONFIG_FILE as PREDICTOR_CONFIG_FILE

__all__ = ["ForgettingMatrix", "ForgettingMatrixError", "METRICS", "example_ids_sha256", "validate_ids"]


class ForgettingMatrix:
    """Per-example forgetting of N upstream examples after fine-tuning on each of M tasks.

    Args:
        values (`np.ndarray` of shape `[M, N]`):
            Forgetting values; NaN marks an unobserved entry; infinities are rejected.
        task_ids (`Sequence[str]`):
            M unique task names (rows).
        example_ids (`Sequence[str]`):
            N unique upstream example ids (columns).
        metric (`str`, *optional*, defaults to `"nll_increase"`):
            `"nll_increase"` (mean token NLL after minus before) or `"em_drop"` (exact match before minus
            after: 1 forgotten, 0 kept, -1 learned).
        metadata (`dict`, *optional*):
            JSON-serialisable provenance (base model, upstream dataset, settings, ...); per-row provenance
            goes under `metadata["rows"][task_id]`.
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

    def select_tasks(self, task_ids: Sequence[str]) -> ForgettingMatrix:
        """A new matrix of the rows of ``task_ids``, in that order (their row provenance kept)."""
        self._check_tasks(task_ids)
        kept = set(task_ids)
        if len(kept) != len(task_ids):
            raise ValueError(f"task_ids must be unique; got {list(task_ids)}")
        row_of = {task: row for row, task in enumerate(self.task_ids)}
        metadata = dict(self.metadata)
        if isinstance(metadata.get("rows"), dict):
            metadata["rows"] = {t: v for t, v in metadata["rows"].items() if t in kept}
        return ForgettingMatrix(self.values[[row_of[t] for t in task_ids]], list(task_ids), self.example_ids, self.metric, metadata)

    def drop_tasks(self, task_ids: Sequence[str]) -> ForgettingMatrix:
        """A new matrix without the rows of ``task_ids``."""
        self._check_tasks(task_ids)
        dropped = set(task_ids)
        return self.select_tasks([t for t in self.task_ids if t not in dropped])

    def _check_tasks(self, task_ids: Sequence[str]) -> None:
        known = set(self.task_ids)
        unknown = [t for t in task_ids if t not in known]
        if unknown:
            raise UnknownExampleError(f"tasks not in the matrix: {unknown[:10]}")

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

    def header(self) -> MatrixHeader:
        """The header this matrix is stored with, locally and on the Hub."""
        return MatrixHeader.of(self.metric, self.example_ids, self.metadata)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the matrix into `directory`; each file is written atomically (temp file + rename).

        The header (`forgetting_matrix.json`) is written last, so a folder with a header is complete.
        """
        directory = Path(directory)
        if (directory / PREDICTOR_CONFIG_FILE).exists():
            raise RepoKindError(f"{directory}: holds a saved predictor; save the matrix into another folder")
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_parquet(directory / EXAMPLES_FILE, examples_table(self.example_ids))
        rows = rows_of(self.task_ids, self.values, self.metadata)
        atomic_write_parquet(directory / VALUES_FILE, rows_table(rows, self.example_ids))
        atomic_write_text(directory / HEADER_FILE, self.header().to_json())
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ForgettingMatrix:
        """Read a matrix written by :meth:`save`.

        A bad file raises `ForgettingMatrixError` naming the file and the problem.
        """
        directory = Path(directory)
        path = directory / HEADER_FILE
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise ForgettingMatrixError(f"{path}: file not found (is this a forgetting matrix folder?)") from None
        except OSError as error:
            raise ForgettingMatrixError(f"{path}: cannot read ({error})") from None
        header = MatrixHeader.from_json(text, str(path))
        example_ids = read_examples(_read_table(directory / EXAMPLES_FILE), header, str(directory / EXAMPLES_FILE))
        values, rows = read_rows_and_values(_read_table(directory / VALUES_FILE), header, str(directory / VALUES_FILE))
        try:
            return cls(values, [row.task_id for row in rows], example_ids, header.metric, metadata_with_rows(header, rows))
        except ForgettingMatrixError as error:
            raise ForgettingMatrixError(f"{directory}: {error}") from None

    # -- the Hub --------------------------------------------------------------------------------

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        branch: str | None = None,
        commit_message: str | None = None,
        license: str | None = None,  # noqa: A002 - the dataset-card field's name
    ):
        """Push to a Hub dataset repo in one commit.

        Into a new repo the whole matrix goes; into a repo that already holds a matrix over the same
        examples, only the task rows it lacks, as one more contribution file. A repo that holds another
        kind of artifact (a predictor) is refused, and no file is ever deleted.

        Args:
            repo_id (`str`):
                The dataset repo, `"user/name"`.
            token (`str`, *optional*):
                Hub token (default: `HF_TOKEN` or the saved login).
            private (`bool`, *optional*):
                Create the repo private (new repos only).
            branch (`str`, *optional*):
                Branch to commit to (default: `main`).
            commit_message (`str`, *optional*):
                Commit title (default: says what was added).
            license (`str`, *optional*):
                License of the dataset card.

        Returns:
            `huggingface_hub.CommitInfo` of the commit, or `None` when the repo already held every row.
        """
        from .hub.matrix_repo import push_matrix

        rows = rows_of(self.task_ids, self.values, self.metadata)
        return push_matrix(self.header(), self.example_ids, rows, repo_id, token=token, private=private, branch=branch,
                           commit_message=commit_message, license=license)

    @classmethod
    def from_hub(
        cls,
        repo_id: str,
        revision: str | None = None,
        token: str | None = None,
        on_duplicate: str = "error",
        limits=None,
    ) -> ForgettingMatrix:
        """The matrix of a Hub dataset repo, every contribution merged, read at one commit.

        Files are checked (names, sizes, checksums, schemas, ids) before use; nothing is unpickled
        or executed.

        Args:
            repo_id (`str`):
                The dataset repo, `"user/name"`.
            revision (`str`, *optional*):
                Branch, tag or commit id (default: `main`).
            token (`str`, *optional*):
                Hub token, for private repos.
            on_duplicate (`str`, *optional*, defaults to `"error"`):
                Two contributions of one task: `"error"`, or `"first"` to keep the oldest.
            limits (`hf_forgetting.hub.DownloadLimits`, *optional*):
                Size limits checked before anything is read (default: `DownloadLimits()`).
        """
        from .hub.matrix_repo import read_matrix_repo

        stored = read_matrix_repo(repo_id, revision, token, on_duplicate, limits)
        rows = stored.rows
        values = np.stack([row.values for row in rows]) if rows else np.zeros((0, len(stored.example_ids)), np.float32)
        metadata = metadata_with_rows(stored.header, rows, {"hub": {"repo_id": repo_id, "revision": stored.commit}})
        try:
            return cls(values, [row.task_id for row in rows], stored.example_ids, stored.header.metric, metadata)
        except ForgettingMatrixError as error:
            raise ForgettingMatrixError(f"{stored.where}: {error}") from None

    # -- datasets -------------------------------------------------------------------------------

    def to_dataset(self):
        """A ``datasets.Dataset`` with one row per task (``task_id``, ``forgetting``); the example ids,
        metric and metadata travel in ``dataset.info.description`` as JSON."""
        from datasets import Dataset, DatasetInfo

        header = self.header()
        description = json.dumps(
            {"metric": self.metric, "metadata": self.metadata, "format_version": header.format_version, "example_ids": self.example_ids}
        )
        table = pa.table(
            {"task_id": pa.array(self.task_ids, pa.string()), "forgetting": pa.array(list(self.values), pa.list_(pa.float32()))}
        )
        return Dataset(table, info=DatasetInfo(description=description))

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


def _read_table(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise ForgettingMatrixError(f"{path}: file not found") from None
    except (pa.ArrowException, OSError) as error:
        raise ForgettingMatrixError(f"{path}: not a readable parquet file ({error})") from None
