"""Forgetting matrices and predictors as Hub dataset repos.

A matrix repo holds (never a pickle, never code):

- ``README.md``: the dataset card, generated from the metadata;
- ``forgetting_matrix.json``: format version, metric, number of examples, the sha256 of the
  example-id list and the matrix-level metadata (base model, upstream data, settings);
- ``examples.parquet``: column ``example_id``, the column order of every row;
- ``rows/<time>-<contributor>-<hash>.parquet``: one file per contribution, one row per task
  (``task_id``, ``forgetting`` as a list of float32, ``contributor``, ``provenance`` JSON and the
  ``example_ids_sha256`` the row is aligned with).

``datasets.load_dataset(repo_id)`` reads the rows (the card's ``configs`` name ``rows/*.parquet``)
and ``load_dataset(repo_id, "examples")`` the example ids. Adding tasks adds one file under
``rows/``; files are merged on load, oldest first. Every push is a single commit made against the
head it was checked against (``parent_commit``), so a failed push leaves the repo as it was and a
concurrent push is detected instead of silently merged.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .matrix import (
    EXAMPLES_FILE,
    FORMAT_VERSION,
    META_FILE,
    METRICS,
    ForgettingMatrix,
    ForgettingMatrixError,
    example_ids_sha256,
)
from .sources import sha256_of

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

logger = logging.getLogger(__name__)

ROWS_FOLDER = "rows"
CARD_FILE = "README.md"
ROW_SCHEMA = pa.schema(
    [
        ("task_id", pa.string()),
        ("forgetting", pa.list_(pa.float32())),
        ("contributor", pa.string()),
        ("provenance", pa.string()),
        ("example_ids_sha256", pa.string()),
    ]
)
# Suffixes of files that deserialise to code or arbitrary objects: a repo holding one is refused.
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".npy", ".npz", ".ckpt", ".py", ".sh", ".so", ".exe")
PUSH_ATTEMPTS = 4
PAPER_CITATION = """@inproceedings{jin2025demystifying,
  title     = {Demystifying Language Model Forgetting with Low-rank Example Associations},
  author    = {Jin, Xisen and Ren, Xiang},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2025},
  note      = {arXiv:2406.14026}
}"""


class HubRepoError(ForgettingMatrixError):
    """A Hub repo, or a file in it, is malformed, unsafe or too large; the message names both."""


@dataclass(frozen=True)
class DownloadLimits:
    """Upper bounds checked against the repo listing (and the parquet footers) before anything is read."""

    max_file_bytes: int = 2 * 1024**3
    max_total_bytes: int = 8 * 1024**3
    max_json_bytes: int = 1024**2
    max_examples: int = 50_000_000
    max_tasks: int = 100_000


# -- the Hub client, imported lazily (HF_ENDPOINT is read when huggingface_hub is imported) ------


def _api(token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _is_transient(error: Exception) -> bool:
    """Errors after which the state of the repo is unknown and the push may be checked and retried."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, _transport_errors()):
        return True
    response = getattr(error, "response", None) if isinstance(error, HfHubHTTPError) else None
    return response is not None and response.status_code in (408, 429, 500, 502, 503, 504)


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection-level errors of the HTTP client huggingface_hub uses (httpx2 from 2.x, httpx in 1.x)."""
    errors: list[type[Exception]] = [ConnectionError, TimeoutError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _is_conflict(error: Exception) -> bool:
    """The branch moved since we read it (``parent_commit`` no longer its head)."""
    from huggingface_hub.errors import HfHubHTTPError

    response = getattr(error, "response", None) if isinstance(error, HfHubHTTPError) else None
    return response is not None and response.status_code in (409, 412)


# -- validated reading of a repo -----------------------------------------------------------------


class RepoReader:
    """Reads files of one repo at one commit, checking names, sizes and checksums first."""

    def __init__(self, repo_id: str, revision: str | None, token: str | None, limits: DownloadLimits):
        self.repo_id, self.token, self.limits = repo_id, token, limits
        info = _api(token).dataset_info(repo_id, revision=revision, files_metadata=True)
        self.commit = info.sha
        self.files = {sibling.rfilename: sibling for sibling in info.siblings or []}
        self.where = f"{repo_id}@{(self.commit or revision or 'main')[:12]}"
        self._check_listing()

    def error(self, path: str | None, problem: str) -> HubRepoError:
        return HubRepoError(f"{self.where}: {path}: {problem}" if path else f"{self.where}: {problem}")

    def _check_listing(self) -> None:
        for path, sibling in self.files.items():
            if path.lower().endswith(UNSAFE_SUFFIXES):
                raise self.error(path, "pickle or executable files are never loaded; this repo is refused")
            if sibling.size is not None and sibling.size > self.limits.max_file_bytes:
                raise self.error(path, f"declares {sibling.size:,} bytes, over the limit of {self.limits.max_file_bytes:,}")
        total = sum(sibling.size or 0 for sibling in self.files.values())
        if total > self.limits.max_total_bytes:
            raise self.error(None, f"holds {total:,} bytes, over the limit of {self.limits.max_total_bytes:,}")

    def require(self, path: str) -> None:
        if path not in self.files:
            raise self.error(path, "file not found in the repo (is this a forgetting matrix / predictor repo?)")

    def download(self, path: str, max_bytes: int | None = None) -> Path:
        """The local path of ``path`` at this commit; its size and LFS checksum are verified."""
        from huggingface_hub import hf_hub_download

        self.require(path)
        sibling = self.files[path]
        if max_bytes is not None and (sibling.size or 0) > max_bytes:
            raise self.error(path, f"declares {sibling.size:,} bytes, over the limit of {max_bytes:,} for this file")
        local = Path(hf_hub_download(self.repo_id, path, repo_type="dataset", revision=self.commit, token=self.token))
        if sibling.size is not None and local.stat().st_size != sibling.size:
            raise self.error(path, f"downloaded {local.stat().st_size:,} bytes but the repo lists {sibling.size:,}")
        if sibling.lfs is not None and sha256_of(local) != sibling.lfs.sha256:
            raise self.error(path, "content does not match its LFS sha256")
        return local

    def read_json(self, path: str) -> dict:
        local = self.download(path, max_bytes=self.limits.max_json_bytes)
        try:
            content = json.loads(local.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise self.error(path, f"not valid JSON ({error})") from None
        if not isinstance(content, dict):
            raise self.error(path, "expected a JSON object")
        return content

    def read_parquet(self, path: str, schema: pa.Schema, max_rows: int) -> pa.Table:
        """The table in ``path``, after checking its footer: exactly ``schema``, at most ``max_rows`` rows."""
        local = self.download(path)
        try:
            parquet = pq.ParquetFile(local)
            found, rows = parquet.schema_arrow, parquet.metadata.num_rows
        except (pa.ArrowException, OSError) as error:
            raise self.error(path, f"not a readable parquet file ({error})") from None
        if [(f.name, f.type) for f in found] != [(f.name, f.type) for f in schema]:
            wanted = ", ".join(f"{f.name}: {f.type}" for f in schema)
            raise self.error(path, f"has columns ({', '.join(f'{f.name}: {f.type}' for f in found)}); expected ({wanted})")
        if rows > max_rows:
            raise self.error(path, f"declares {rows:,} rows, more than the {max_rows:,} allowed here")
        try:
            return parquet.read()
        except (pa.ArrowException, OSError) as error:
            raise self.error(path, f"cannot be read ({error})") from None


# -- matrices: loading ---------------------------------------------------------------------------


def load_matrix(
    repo_id: str,
    revision: str | None = None,
    token: str | None = None,
    on_duplicate: str = "error",
    limits: DownloadLimits | None = None,
) -> ForgettingMatrix:
    """The matrix in a Hub dataset repo, with every contribution merged (oldest first).

    Args:
        revision: branch, tag or commit; every file is read at the one commit it resolves to.
        on_duplicate: ``"error"`` (default) when two contributions hold the same task; ``"first"``
            keeps the oldest one.
    """
    if on_duplicate not in ("error", "first"):
        raise ValueError(f"on_duplicate must be 'error' or 'first'; got {on_duplicate!r}")
    return _read_matrix(RepoReader(repo_id, revision, token, limits or DownloadLimits()), on_duplicate)


def _read_matrix(reader: RepoReader, on_duplicate: str = "error") -> ForgettingMatrix:
    header = _read_hub_header(reader)
    example_ids = _read_example_ids(reader, header)
    task_ids, rows, provenance, sources = [], [], {}, {}
    for path in _row_files(reader):
        for task_id, row, contributor, row_provenance in _read_row_file(reader, path, header):
            if task_id in sources:
                if on_duplicate == "error":
                    raise reader.error(path, f"task {task_id!r} is already contributed by {sources[task_id]}")
                continue
            sources[task_id] = path
            task_ids.append(task_id)
            rows.append(row)
            provenance[task_id] = {**row_provenance, "contributor": contributor, "source_file": path}
    values = np.stack(rows) if rows else np.zeros((0, len(example_ids)), np.float32)
    metadata = {**header["metadata"], "rows": provenance, "hub": {"repo_id": reader.repo_id, "revision": reader.commit}}
    try:
        return ForgettingMatrix(values, task_ids, example_ids, header["metric"], metadata)
    except ForgettingMatrixError as error:
        raise reader.error(None, str(error)) from None


def _read_hub_header(reader: RepoReader) -> dict:
    header = reader.read_json(META_FILE)
    if header.get("format_version") != FORMAT_VERSION:
        raise reader.error(META_FILE, f"unsupported format_version {header.get('format_version')!r}")
    if header.get("metric") not in METRICS:
        raise reader.error(META_FILE, f"metric must be one of {METRICS}; got {header.get('metric')!r}")
    num_examples = header.get("num_examples")
    if not isinstance(num_examples, int) or isinstance(num_examples, bool) or not 0 < num_examples <= reader.limits.max_examples:
        raise reader.error(META_FILE, f"num_examples must be an integer in 1..{reader.limits.max_examples:,}; got {num_examples!r}")
    if not isinstance(header.get("example_ids_sha256"), str) or not isinstance(header.get("metadata"), dict):
        raise reader.error(META_FILE, "fields 'example_ids_sha256' (string) and 'metadata' (object) are required")
    return header


def _read_example_ids(reader: RepoReader, header: dict) -> list[str]:
    schema = pa.schema([("example_id", pa.string())])
    column = reader.read_parquet(EXAMPLES_FILE, schema, header["num_examples"]).column("example_id")
    if len(column) != header["num_examples"]:
        raise reader.error(EXAMPLES_FILE, f"holds {len(column)} example ids; {META_FILE} declares {header['num_examples']}")
    if column.null_count:
        raise reader.error(EXAMPLES_FILE, f"{column.null_count} example ids are missing (null)")
    example_ids = column.to_pylist()
    if example_ids_sha256(example_ids) != header["example_ids_sha256"]:
        raise reader.error(EXAMPLES_FILE, f"the example ids do not match the example_ids_sha256 in {META_FILE}")
    return example_ids


def _row_files(reader: RepoReader) -> list[str]:
    paths = sorted(path for path in reader.files if path.startswith(ROWS_FOLDER + "/"))
    strays = [path for path in paths if not path.endswith(".parquet") or path.count("/") != 1]
    if strays:
        raise reader.error(strays[0], f"only <name>.parquet files belong in {ROWS_FOLDER}/")
    if not paths:
        raise reader.error(ROWS_FOLDER, "the repo holds no row files")
    return paths


def _read_row_file(reader: RepoReader, path: str, header: dict):
    """(task_id, float32 row, contributor, provenance) for each row of one contribution file."""
    table = reader.read_parquet(path, ROW_SCHEMA, reader.limits.max_tasks)
    n = header["num_examples"]
    for record in table.to_pylist():
        task_id = record["task_id"]
        if not isinstance(task_id, str) or not task_id:
            raise reader.error(path, f"task ids must be non-empty strings; got {task_id!r}")
        if record["example_ids_sha256"] != header["example_ids_sha256"]:
            raise reader.error(path, f"task {task_id!r} was collected on a different example-id list than {EXAMPLES_FILE}")
        values = record["forgetting"]
        if values is None or len(values) != n:
            raise reader.error(path, f"task {task_id!r} has {0 if values is None else len(values)} values; expected {n}")
        row = np.array([math.nan if v is None else v for v in values], dtype=np.float32)
        if np.isinf(row).any():
            raise reader.error(path, f"task {task_id!r} has infinite values")
        try:
            provenance = json.loads(record["provenance"] or "{}")
        except json.JSONDecodeError as error:
            raise reader.error(path, f"task {task_id!r}: provenance is not valid JSON ({error})") from None
        yield task_id, row, record["contributor"] or "", provenance if isinstance(provenance, dict) else {}


# -- matrices: pushing ---------------------------------------------------------------------------


def push_matrix(
    matrix: ForgettingMatrix,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    branch: str | None = None,
    commit_message: str | None = None,
    license: str | None = None,  # noqa: A002 - the dataset-card field's name
) -> CommitInfo | None:
    """Push ``matrix`` to a dataset repo: the whole matrix into a new repo, or, into a repo that
    already holds one, its new task rows as one more contribution file. Rows already in the repo
    with the same values are skipped; rows with other values are refused. Returns the commit, or
    None if there was nothing new to push."""
    api = _api(token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    contributor = _whoami(api)
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        head, existing = _current_matrix(repo_id, branch, token)
        rows = _new_rows(matrix, existing, repo_id)
        if rows is None:
            logger.warning("%s already holds every task of this matrix; nothing to push", repo_id)
            return None
        with tempfile.TemporaryDirectory(prefix="hf-forgetting-push-") as folder:
            operations, row_file = _matrix_operations(matrix, repo_id, rows, existing, contributor, Path(folder), license)
            message = commit_message or _commit_title(rows, existing, contributor)
            outcome = _commit_once(api, repo_id, operations, message, head, branch, row_file)
        if outcome is not None:
            return outcome
        logger.warning("Push to %s did not land (attempt %d of %d); checking the repo again", repo_id, attempt, PUSH_ATTEMPTS)
    raise HubRepoError(f"{repo_id}: could not push after {PUSH_ATTEMPTS} attempts; the repo keeps changing or failing")


def _whoami(api) -> str:
    try:
        return api.whoami()["name"]
    except Exception as error:  # noqa: BLE001 - any failure means: not logged in
        raise HubRepoError(f"Pushing needs a Hub token with write access (HF_TOKEN or `hf auth login`): {error}") from None


def _current_matrix(repo_id: str, branch: str | None, token: str | None) -> tuple[str, ForgettingMatrix | None]:
    """The branch head and the matrix it holds (None for a repo without one)."""
    reader = RepoReader(repo_id, branch, token, DownloadLimits())
    return reader.commit, (_read_matrix(reader) if META_FILE in reader.files else None)


def _new_rows(matrix: ForgettingMatrix, existing: ForgettingMatrix | None, repo_id: str) -> list[int] | None:
    """Indices of the rows of ``matrix`` to contribute; None if there are none."""
    if existing is None:
        return list(range(matrix.shape[0])) or None
    if matrix.metric != existing.metric:
        raise HubRepoError(f"{repo_id}: holds a {existing.metric!r} matrix; this one is {matrix.metric!r}")
    if matrix.example_ids != existing.example_ids:
        raise HubRepoError(
            f"{repo_id}: holds a matrix over other example ids (sha256 {example_ids_sha256(existing.example_ids)[:12]}, "
            f"this one {example_ids_sha256(matrix.example_ids)[:12]}); rows must share the repo's examples.parquet"
        )
    new = []
    for index, task_id in enumerate(matrix.task_ids):
        if task_id not in existing.task_ids:
            new.append(index)
        elif not np.array_equal(existing.row(task_id), matrix.values[index], equal_nan=True):
            source = existing.metadata["rows"][task_id]["source_file"]
            raise HubRepoError(f"{repo_id}: task {task_id!r} is already in {source} with other values; rename the task")
    return new or None


def _matrix_operations(matrix, repo_id, rows, existing, contributor, folder: Path, license):
    """The files of one commit: a new repo gets everything, an existing one a row file and the card."""
    from huggingface_hub import CommitOperationAdd

    row_file = _write_row_file(matrix, rows, contributor, folder)
    operations = [CommitOperationAdd(f"{ROWS_FOLDER}/{row_file.name}", str(row_file))]
    merged = matrix if existing is None else existing.append_rows(matrix.values[rows], [matrix.task_ids[i] for i in rows])
    if existing is None:
        header = {
            "format_version": FORMAT_VERSION,
            "metric": matrix.metric,
            "num_examples": matrix.shape[1],
            "example_ids_sha256": example_ids_sha256(matrix.example_ids),
            "metadata": {key: value for key, value in matrix.metadata.items() if key not in ("rows", "hub")},
        }
        examples = pa.table({"example_id": pa.array(matrix.example_ids, pa.string())})
        pq.write_table(examples, folder / EXAMPLES_FILE)
        (folder / META_FILE).write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
        operations += [CommitOperationAdd(name, str(folder / name)) for name in (EXAMPLES_FILE, META_FILE)]
    card = matrix_card(merged, repo_id, _contributors(existing, len(rows), contributor), license)
    (folder / CARD_FILE).write_text(card)
    operations.append(CommitOperationAdd(CARD_FILE, str(folder / CARD_FILE)))
    return operations, f"{ROWS_FOLDER}/{row_file.name}"


def _write_row_file(matrix: ForgettingMatrix, rows: list[int], contributor: str, folder: Path) -> Path:
    shared = {
        key: matrix.metadata.get(key)
        for key in ("base_model", "base_model_revision", "upstream_dataset", "settings")
        if key in matrix.metadata
    }
    shared["pushed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    per_row = matrix.metadata.get("rows", {})
    sha = example_ids_sha256(matrix.example_ids)
    table = pa.table(
        {
            "task_id": [matrix.task_ids[i] for i in rows],
            "forgetting": pa.array([matrix.values[i] for i in rows], pa.list_(pa.float32())),
            "contributor": [contributor] * len(rows),
            "provenance": [json.dumps({**shared, **_row_provenance(per_row.get(matrix.task_ids[i]))}) for i in rows],
            "example_ids_sha256": [sha] * len(rows),
        },
        schema=ROW_SCHEMA,
    )
    staging = folder / "rows.parquet"
    pq.write_table(table, staging)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    safe_name = "".join(c if c.isalnum() or c in "-_" else "-" for c in contributor)
    return staging.rename(folder / f"{stamp}-{safe_name}-{sha256_of(staging)[:10]}.parquet")


def _row_provenance(provenance: dict | None) -> dict:
    """A row's own provenance, without what is only true of where it came from (its old file, its old repo)."""
    return {k: v for k, v in (provenance or {}).items() if k not in ("source_file", "contributor", "hub")}


def _contributors(existing: ForgettingMatrix | None, new_rows: int, contributor: str) -> dict[str, int]:
    """Tasks per contributor once this push lands."""
    counts = Counter()
    if existing is not None:
        counts.update(existing.metadata["rows"][task_id]["contributor"] for task_id in existing.task_ids)
    counts[contributor] += new_rows
    return dict(counts)


def _commit_title(rows: list[int], existing: ForgettingMatrix | None, contributor: str) -> str:
    if existing is None:
        return f"Add forgetting matrix ({len(rows)} tasks) by {contributor}"
    return f"Contribute {len(rows)} task row(s) by {contributor}"


def _commit_once(api, repo_id, operations, message, head, branch, row_file) -> CommitInfo | None:
    """One commit against ``head``. Returns it; None if the branch moved (the caller re-checks);
    after a transient failure, looks whether the commit landed before deciding."""
    try:
        return api.create_commit(
            repo_id, operations, commit_message=message, repo_type="dataset", revision=branch, parent_commit=head
        )
    except Exception as error:
        if _is_conflict(error):
            return None
        if not _is_transient(error):
            raise
        logger.warning("Push to %s failed (%s); checking whether it landed", repo_id, error)
    return _find_commit_with(api, repo_id, branch, head, row_file)


def _find_commit_with(api, repo_id, branch, parent, row_file):
    """The commit on ``branch`` right after ``parent`` that added ``row_file``, if the lost push landed."""
    from huggingface_hub import CommitInfo

    for _ in range(PUSH_ATTEMPTS):
        try:
            commits = api.list_repo_commits(repo_id, repo_type="dataset", revision=branch)
            break
        except Exception as error:
            if not _is_transient(error):
                raise
            time.sleep(1)
    else:
        return None
    ids = [commit.commit_id for commit in commits]
    if parent not in ids or ids.index(parent) == 0:
        return None
    child = ids[ids.index(parent) - 1]
    files = api.list_repo_files(repo_id, repo_type="dataset", revision=child)
    if row_file not in files:
        return None
    title = commits[ids.index(child)].title
    url = f"{api.endpoint}/datasets/{repo_id}/commit/{child}"
    return CommitInfo(commit_url=url, commit_message=title, commit_description="", oid=child)


# -- predictors ----------------------------------------------------------------------------------


def push_folder(
    folder: Path,
    repo_id: str,
    card: str,
    token: str | None = None,
    private: bool | None = None,
    branch: str | None = None,
    commit_message: str = "Upload predictor",
) -> CommitInfo:
    """Replace the contents of a dataset repo with ``folder`` plus a card, in one commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api = _api(token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    local = sorted(path for path in folder.iterdir() if path.is_file())
    with tempfile.TemporaryDirectory(prefix="hf-forgetting-card-") as tmp:
        card_path = Path(tmp) / CARD_FILE
        card_path.write_text(card)
        operations: list = [CommitOperationAdd(CARD_FILE, str(card_path))]
        operations += [CommitOperationAdd(path.name, str(path)) for path in local if path.name != CARD_FILE]
        keep = {CARD_FILE, ".gitattributes"} | {path.name for path in local}
        remote = api.list_repo_files(repo_id, repo_type="dataset", revision=branch)
        operations += [CommitOperationDelete(path) for path in remote if path not in keep]
        return api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="dataset", revision=branch)


def download_predictor(
    repo_id: str, files: tuple[str, ...], revision: str | None = None, token: str | None = None, limits: DownloadLimits | None = None
) -> Path:
    """A local folder with ``files`` of a predictor repo, each checked before and after download."""
    reader = RepoReader(repo_id, revision, token, limits or DownloadLimits())
    folder = None
    for name in files:
        max_bytes = reader.limits.max_json_bytes * 64 if name.endswith(".json") else None
        local = reader.download(name, max_bytes=max_bytes)
        if folder is not None and local.parent != folder:
            raise reader.error(name, "downloaded outside the snapshot folder")
        folder = local.parent
    return folder


# -- dataset cards -------------------------------------------------------------------------------


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def matrix_card(
    matrix: ForgettingMatrix, repo_id: str, contributors: dict[str, int] | None = None, license: str | None = None  # noqa: A002
) -> str:
    """A dataset card (README.md with YAML front matter) generated from the matrix's metadata."""
    from huggingface_hub import DatasetCard, DatasetCardData

    meta = matrix.metadata
    settings = meta.get("settings", {})
    training, model = settings.get("training", {}), settings.get("model", {})
    num_tasks, num_examples = matrix.shape
    data = DatasetCardData(
        license=license or meta.get("license") or "other",
        pretty_name=f"Forgetting matrix: {meta.get('base_model', 'unknown model')}",
        tags=["forgetting", "hf-forgetting", "continual-learning", "catastrophic-forgetting"],
        size_categories=[_size_category(num_tasks)],  # the number of dataset rows, one per task
        source_datasets=[str(meta.get("upstream_dataset", "unknown"))],
        configs=[
            {"config_name": "rows", "data_files": f"{ROWS_FOLDER}/*.parquet", "default": True},
            {"config_name": "examples", "data_files": EXAMPLES_FILE},
        ],
        base_model=meta.get("base_model"),
        base_model_revision=meta.get("base_model_revision"),
        fine_tuning_tasks=list(matrix.task_ids),
        metric=matrix.metric,
        forgetting_matrix={"num_tasks": num_tasks, "num_examples": num_examples, "format_version": FORMAT_VERSION},
    )
    observed = matrix.values[matrix.mask]
    method = "LoRA" if model.get("use_peft") else "full fine-tuning"
    lines = [
        f"# Forgetting matrix of `{meta.get('base_model', 'unknown model')}`",
        "",
        f"Per-example forgetting (`{matrix.metric}`) of **{num_examples:,} upstream examples** "
        f"(`{meta.get('upstream_dataset', 'unknown')}`) after fine-tuning the base model separately on each of "
        f"**{num_tasks} tasks**. Positive = forgotten. Collected with `hf_forgetting`; readable with "
        "`datasets` or `ForgettingMatrix.from_hub`.",
        "",
        "## Use",
        "",
        "```python",
        "from hf_forgetting import ForgettingMatrix, MFPredictor",
        "",
        f'matrix = ForgettingMatrix.from_hub("{repo_id}")',
        "predictor = MFPredictor(rank=5).fit(matrix)   # then predictor.predict(known_ids, known_values)",
        "",
        "from datasets import load_dataset",
        f'rows = load_dataset("{repo_id}", split="train")  # task_id, forgetting, contributor, provenance',
        f'examples = load_dataset("{repo_id}", "examples", split="train")  # column order of `forgetting`',
        "```",
        "",
        "## Contents",
        "",
        f"- metric: `{matrix.metric}`; observed entries: {matrix.mask.mean():.1%}",
        f"- mean {np.mean(observed):+.4f}, std {np.std(observed):.4f}, positive {np.mean(observed > 0):.0%}"
        if observed.size
        else "- no observed entries",
        f"- tasks: {', '.join(f'`{t}`' for t in matrix.task_ids[:40])}{' ...' if num_tasks > 40 else ''}",
        "",
        "## How it was collected",
        "",
        f"- base model: `{meta.get('base_model')}` (revision `{meta.get('base_model_revision')}`), {method}",
        f"- learning rate {training.get('learning_rate')}, {training.get('max_steps')} steps, batch "
        f"{training.get('per_device_train_batch_size')} x {training.get('gradient_accumulation_steps')} accumulation "
        f"x {settings.get('world_size', 1)} processes, max length {training.get('max_length')}",
        "- score: mean token NLL of each upstream example (raw text: all tokens but the first; chat: assistant "
        "tokens), after minus before fine-tuning",
        "- every task row carries its own provenance (contributor, settings, base-model revision) in the "
        "`provenance` column",
    ]
    if contributors:
        lines += ["", "## Contributors", "", "| contributor | tasks |", "| --- | --- |"]
        lines += [f"| {who} | {count} |" for who, count in sorted(contributors.items())]
    lines += ["", "## Citation", "", "```bibtex", PAPER_CITATION, "```", ""]
    return str(DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines)))


def predictor_card(predictor, repo_id: str) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    name = type(predictor).__name__
    data = DatasetCardData(
        license="other",
        pretty_name=f"{name} forgetting predictor",
        tags=["forgetting", "hf-forgetting", "forgetting-predictor"],
        predictor_class=name,
        metric=predictor.metric,
        num_examples=len(predictor.example_ids),
    )
    body = "\n".join(
        [
            f"# {name}: predicted forgetting of {len(predictor.example_ids):,} upstream examples",
            "",
            "Fitted on a forgetting matrix with `hf_forgetting`. Measure the forgetting of a "
            "few upstream examples after fine-tuning on a new task, and it completes the rest of the row.",
            "",
            "```python",
            "from hf_forgetting import ForgettingPredictor",
            "",
            f'predictor = ForgettingPredictor.from_pretrained("{repo_id}")',
            "row = predictor.predict(known_example_ids, known_values)  # float32 [N], aligned with predictor.example_ids",
            "```",
            "",
            f"Configuration: `{json.dumps(predictor.get_config())}`. Files: `predictor.json` (class, settings, example "
            "ids) and `model.safetensors` (arrays); nothing is pickled.",
            "",
            "## Citation",
            "",
            "```bibtex",
            PAPER_CITATION,
            "```",
            "",
        ]
    )
    return str(DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body))

