"""A forgetting matrix as a Hub dataset repo (the format of :mod:`hf_forgetting.format.matrix`).

The repo holds the dataset card (``README.md``), the header (``forgetting_matrix.json``), the example
ids (``examples.parquet``) and one row file per contribution, ``rows/<time>-<contributor>-<hash>.parquet``.
``datasets.load_dataset(repo_id)`` reads the rows (the card's ``configs`` name ``rows/*.parquet``) and
``load_dataset(repo_id, "examples")`` the ids. Adding tasks adds one row file; no push rewrites or
deletes a data file. Rows are merged on load, oldest file first.
"""

from __future__ import annotations

import datetime
import logging
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

from ..errors import ForgettingMatrixError
from ..files import sha256_of
from ..format.matrix import (
    EXAMPLES_FILE,
    EXAMPLES_SCHEMA,
    HEADER_FILE,
    MATRIX_KIND,
    ROWS_FOLDER,
    ROWS_SCHEMA,
    MatrixHeader,
    TaskRow,
    examples_table,
    read_examples,
    read_rows,
    rows_table,
)
from .cards import matrix_card
from .reader import DownloadLimits, HubRepoError, RepoReader
from .transport import hf_api, push_checked, whoami

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

logger = logging.getLogger(__name__)


@dataclass
class StoredMatrix:
    """What a matrix repo holds at one commit, checked."""

    header: MatrixHeader
    example_ids: list[str]
    rows: list[TaskRow]
    commit: str
    where: str


def read_matrix_repo(
    repo_id: str,
    revision: str | None = None,
    token: str | None = None,
    on_duplicate: str = "error",
    limits: DownloadLimits | None = None,
) -> StoredMatrix:
    """The matrix of a dataset repo, every contribution merged (oldest first), read at one commit.

    Args:
        revision (`str`, *optional*):
            Branch, tag or commit; every file is read at the one commit it resolves to.
        on_duplicate (`str`, *optional*, defaults to `"error"`):
            `"error"` when two contributions hold the same task; `"first"` keeps the oldest one.
        limits (`DownloadLimits`, *optional*):
            Size limits checked before anything is read.
    """
    if on_duplicate not in ("error", "first"):
        raise ValueError(f"on_duplicate must be 'error' or 'first'; got {on_duplicate!r}")
    reader = RepoReader(repo_id, revision, token, limits)
    reader.require_kind(MATRIX_KIND)
    return _read(reader, on_duplicate)


def _read(reader: RepoReader, on_duplicate: str = "error") -> StoredMatrix:
    where = f"{reader.where}: {HEADER_FILE}"
    try:
        header = MatrixHeader.from_json(reader.read_text(HEADER_FILE), where, reader.limits.max_examples)
    except ForgettingMatrixError as error:
        raise HubRepoError(str(error)) from None
    example_ids = _checked(reader, EXAMPLES_FILE, lambda table, w: read_examples(table, header, w),
                           EXAMPLES_SCHEMA, header.num_examples)
    row_files = _row_files(reader)
    declared = sum(reader.open_parquet(path, ROWS_SCHEMA, reader.limits.max_tasks).metadata.num_rows for path in row_files)
    if declared * max(header.num_examples, 1) > reader.limits.max_values:
        raise reader.error(
            None, f"declares {declared:,} rows x {header.num_examples:,} examples, over the limit of {reader.limits.max_values:,} values"
        )
    rows, sources = [], {}
    for path in row_files:
        for row in _checked(reader, path, lambda table, w: read_rows(table, header, w), ROWS_SCHEMA, reader.limits.max_tasks):
            if row.task_id in sources:
                if on_duplicate == "error":
                    raise reader.error(path, f"task {row.task_id!r} is already contributed by {sources[row.task_id]}")
                continue
            sources[row.task_id] = path
            row.provenance = {**row.provenance, "source_file": path}
            rows.append(row)
    return StoredMatrix(header, example_ids, rows, reader.commit, reader.where)


def _checked(reader: RepoReader, path: str, parse, schema, max_rows: int):
    """``parse(table, where)`` of a parquet file whose footer was checked first."""
    table = reader.read_parquet(reader.open_parquet(path, schema, max_rows), path)
    try:
        return parse(table, f"{reader.where}: {path}")
    except ForgettingMatrixError as error:
        raise HubRepoError(str(error)) from None


def _row_files(reader: RepoReader) -> list[str]:
    paths = sorted(path for path in reader.files if path.startswith(ROWS_FOLDER + "/"))
    strays = [path for path in paths if not path.endswith(".parquet") or path.count("/") != 1]
    if strays:
        raise reader.error(strays[0], f"only <name>.parquet files belong in {ROWS_FOLDER}/")
    if not paths:
        raise reader.error(ROWS_FOLDER, "the repo holds no row files")
    return paths


# -- pushing --------------------------------------------------------------------------------------


def push_matrix(
    header: MatrixHeader,
    example_ids: Sequence[str],
    rows: Sequence[TaskRow],
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    branch: str | None = None,
    commit_message: str | None = None,
    license: str | None = None,  # noqa: A002 - the dataset-card field's name
) -> CommitInfo | None:
    """Push a matrix: all of it into a new repo, or its new task rows as one more contribution file
    into a repo that holds a matrix over the same examples. Rows already there with the same values
    are skipped, rows with other values refused. Returns the commit; None when nothing was new."""
    api = hf_api(token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    contributor = whoami(api)

    def prepare():
        reader = RepoReader(repo_id, branch, token)
        folder = Path(tempfile.mkdtemp(prefix="attempt-", dir=staging))
        existing = None
        if reader.kind() is not None:
            reader.require_kind(MATRIX_KIND)
            existing = _read(reader)
        new = _new_rows(header, example_ids, rows, existing, repo_id)
        if not new:
            logger.warning("%s already holds every task of this matrix; nothing to push", repo_id)
            return reader.commit, None
        uploaded = _files(header, example_ids, new, existing=existing, contributor=contributor, repo_id=repo_id, license=license,
                          folder=folder)
        message = commit_message or _commit_title(new, existing, contributor)
        return reader.commit, (_operations(uploaded), message, uploaded)

    with tempfile.TemporaryDirectory(prefix="hf-forgetting-push-") as staging:
        return push_checked(api, repo_id, branch, prepare)


def _new_rows(header, example_ids, rows, existing: StoredMatrix | None, repo_id: str) -> list[TaskRow]:
    """The rows to contribute."""
    if existing is None:
        return list(rows)
    if header.metric != existing.header.metric:
        raise HubRepoError(f"{repo_id}: holds a {existing.header.metric!r} matrix; this one is {header.metric!r}")
    if list(example_ids) != existing.example_ids:
        raise HubRepoError(
            f"{repo_id}: holds a matrix over other example ids (sha256 {existing.header.example_ids_sha256[:12]}, "
            f"this one {header.example_ids_sha256[:12]}); rows must share the repo's {EXAMPLES_FILE}"
        )
    stored = {row.task_id: row for row in existing.rows}
    new = []
    for row in rows:
        if row.task_id not in stored:
            new.append(row)
        elif not np.array_equal(stored[row.task_id].values, row.values, equal_nan=True):
            source = stored[row.task_id].provenance.get("source_file")
            raise HubRepoError(f"{repo_id}: task {row.task_id!r} is already in {source} with other values; rename the task")
    return new


def _files(header, example_ids, new, *, existing, contributor, repo_id, license, folder: Path) -> dict[str, Path]:
    """The files of one commit ({path in repo: local file}): a row file and the card; a new repo also
    gets the header and the example ids."""
    row_file = _write_row_file(new, example_ids, contributor, header.metadata, folder)
    files = {f"{ROWS_FOLDER}/{row_file.name}": row_file}
    if existing is None:
        pq.write_table(examples_table(example_ids), folder / EXAMPLES_FILE)
        (folder / HEADER_FILE).write_text(header.to_json())
        files.update({EXAMPLES_FILE: folder / EXAMPLES_FILE, HEADER_FILE: folder / HEADER_FILE})
        stored_header, stored_rows = header, []
    else:
        stored_header, stored_rows = existing.header, existing.rows
    all_rows = [*stored_rows, *new]
    contributors = Counter(row.contributor for row in stored_rows)
    contributors[contributor] += len(new)
    card = folder / "README.md"
    card.write_text(matrix_card(stored_header, all_rows, repo_id, dict(contributors), license))
    files["README.md"] = card
    return files


def _operations(files: dict[str, Path]) -> list:
    from huggingface_hub import CommitOperationAdd

    return [CommitOperationAdd(path, str(local)) for path, local in files.items()]


def _write_row_file(rows: Sequence[TaskRow], example_ids, contributor: str, metadata: dict, folder: Path) -> Path:
    # Each contribution carries its own collection settings: the header keeps only the first one's.
    shared = {key: metadata[key] for key in ("base_model", "base_model_revision", "upstream_dataset", "settings") if key in metadata}
    now = _utc_now()
    shared["pushed_at"] = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    stamped = [TaskRow(row.task_id, row.values, contributor, {**shared, **_own_provenance(row.provenance)}) for row in rows]
    staging = folder / "rows.parquet"
    pq.write_table(rows_table(stamped, example_ids), staging)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")  # to the microsecond: files load oldest first, also within a second
    safe_name = "".join(c if c.isalnum() or c in "-_" else "-" for c in contributor)
    return staging.rename(folder / f"{stamp}-{safe_name}-{sha256_of(staging)[:10]}.parquet")


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _own_provenance(provenance: dict) -> dict:
    """A row's own provenance, without what is only true of where it was read from."""
    return {key: value for key, value in provenance.items() if key not in ("source_file", "contributor", "hub")}


def _commit_title(new: Sequence[TaskRow], existing: StoredMatrix | None, contributor: str) -> str:
    if existing is None:
        return f"Add forgetting matrix ({len(new)} tasks) by {contributor}"
    return f"Contribute {len(new)} task row(s) by {contributor}"
