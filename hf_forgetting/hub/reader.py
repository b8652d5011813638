"""Validated reading of one Hub dataset repo at one commit.

The listing is checked first (no pickle or executable files; declared sizes within the limits), then
each download (its size and LFS sha256), then parquet footers (schema, row count, decompressed size)
before any data is read. Every error names the repo, the commit and the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ForgettingMatrixError, HubRepoError, RepoKindError
from ..files import sha256_of
from ..format.matrix import HEADER_FILE, MATRIX_KIND, check_schema
from ..format.predictor import CONFIG_FILE, PREDICTOR_KIND
from .transport import hf_api

# Suffixes of files that deserialise to code or arbitrary objects: a repo holding one is refused.
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".npy", ".npz", ".ckpt", ".py", ".sh", ".so", ".exe")
# The file whose presence says what a repo holds.
KIND_FILES = {HEADER_FILE: MATRIX_KIND, CONFIG_FILE: PREDICTOR_KIND}


@dataclass(frozen=True)
class DownloadLimits:
    """Upper bounds checked before anything is read into memory: a repo of a few KB can declare a matrix
    of any size, and its example ids alone (Python strings) cost about 100 bytes each. The defaults hold
    the paper's matrices (100 x 141,871) with room to spare: 2 x 10^6 examples, 2.5 x 10^8 values (1 GB).

    Args:
        max_file_bytes (`int`): largest file, as listed.
        max_total_bytes (`int`): all files of the repo together, as listed.
        max_json_bytes (`int`): largest JSON header.
        max_examples (`int`): columns of a matrix.
        max_tasks (`int`): rows of one contribution file.
        max_values (`int`): rows x examples of all row files together (memory of the matrix: 4 bytes each).
        max_decompressed_bytes (`int`): decompressed size of one parquet file, from its footer.
    """

    max_file_bytes: int = 2 * 1024**3
    max_total_bytes: int = 8 * 1024**3
    max_json_bytes: int = 1024**2
    max_examples: int = 2_000_000
    max_tasks: int = 100_000
    max_values: int = 250_000_000
    max_decompressed_bytes: int = 4 * 1024**3


class RepoReader:
    """Reads files of one dataset repo at one commit, checking names, sizes and checksums first."""

    def __init__(self, repo_id: str, revision: str | None, token: str | None, limits: DownloadLimits | None = None):
        self.repo_id, self.token, self.limits = repo_id, token, limits or DownloadLimits()
        info = hf_api(token).dataset_info(repo_id, revision=revision, files_metadata=True)
        self.commit: str = info.sha
        self.files = {sibling.rfilename: sibling for sibling in info.siblings or []}
        self.where = f"{repo_id}@{(self.commit or revision or 'main')[:12]}"
        self._check_listing()

    def error(self, path: str | None, problem: str) -> HubRepoError:
        return HubRepoError(f"{self.where}: {path}: {problem}" if path else f"{self.where}: {problem}")

    def kind(self) -> str | None:
        """What the repo holds (``forgetting_matrix`` or ``forgetting_predictor``); None when empty."""
        kinds = {kind for name, kind in KIND_FILES.items() if name in self.files}
        if len(kinds) > 1:
            raise RepoKindError(f"{self.where}: holds both a matrix and a predictor; refusing to guess which to read")
        return kinds.pop() if kinds else None

    def require_kind(self, expected: str) -> None:
        found = self.kind()
        if found is None:
            raise self.error(None, f"holds no {expected.replace('_', ' ')} (no {_kind_file(expected)})")
        if found != expected:
            raise RepoKindError(f"{self.where}: holds a {found.replace('_', ' ')}, not a {expected.replace('_', ' ')}")

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
            raise self.error(path, "file not found in the repo")

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

    def read_text(self, path: str) -> bytes:
        """A small file's bytes (JSON headers), within ``max_json_bytes``."""
        return self.download(path, max_bytes=self.limits.max_json_bytes).read_bytes()

    def open_parquet(self, path: str, schema: pa.Schema, max_rows: int) -> pq.ParquetFile:
        """The parquet file ``path``, its footer checked: exactly ``schema``, at most ``max_rows`` rows,
        a decompressed size within the limit. Nothing but the footer has been read."""
        local = self.download(path)
        try:
            parquet = pq.ParquetFile(local)
            found, metadata = parquet.schema_arrow, parquet.metadata
        except (pa.ArrowException, OSError) as error:
            raise self.error(path, f"not a readable parquet file ({error})") from None
        try:
            check_schema(found, schema, f"{self.where}: {path}")
        except ForgettingMatrixError as error:
            raise HubRepoError(str(error)) from None
        if metadata.num_rows > max_rows:
            raise self.error(path, f"declares {metadata.num_rows:,} rows, more than the {max_rows:,} allowed here")
        decompressed = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        if decompressed > self.limits.max_decompressed_bytes:
            raise self.error(
                path, f"decompresses to {decompressed:,} bytes, over the limit of {self.limits.max_decompressed_bytes:,}"
            )
        return parquet

    def read_parquet(self, parquet: pq.ParquetFile, path: str) -> pa.Table:
        try:
            return parquet.read()
        except (pa.ArrowException, OSError) as error:
            raise self.error(path, f"cannot be read ({error})") from None


def _kind_file(kind: str) -> str:
    return next(name for name, value in KIND_FILES.items() if value == kind)
