"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow is slow to import: it loads with the first parquet file written, not with `hf-forgetting --help`
    import pyarrow as pa


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, _new_file_mode())  # mkstemp's files are private; the result is as open() would make it
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the process's umask (read by setting it back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    text = text if text.endswith("\n") else text + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_parquet(path: str | os.PathLike, table: pa.Table) -> Path:
    import pyarrow.parquet as pq

    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_inventory(folder: str | os.PathLike, names: list[str]) -> dict[str, dict]:
    """``{name: {"size": bytes, "sha256": digest}}`` of the files ``names`` of ``folder``, recorded when a cached
    output is finished so that its reuse can check it (:func:`inventory_problem`)."""
    folder = Path(folder)
    return {name: {"size": (folder / name).stat().st_size, "sha256": sha256_of(folder / name)} for name in names}


def inventory_problem(folder: str | os.PathLike, inventory: dict) -> str | None:
    """What is wrong with ``folder`` against the ``inventory`` recorded when it was written (a missing, resized
    or changed file), or None when every file is as written."""
    folder = Path(folder)
    for name, recorded in sorted(inventory.items()):
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != recorded["size"]:
            return f"{path} has {size} bytes, {recorded['size']} when it was written"
        if sha256_of(path) != recorded["sha256"]:
            return f"{path} has changed since it was written (sha256 differs)"
    return None
