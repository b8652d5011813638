"""One finished task row of a running collection (``<output_dir>/rows/<task>.parquet``).

Columns ``example_id``, ``score_after`` and ``forgetting`` (float32), and the row's provenance as JSON in
the parquet schema metadata under ``hf_forgetting``. Written atomically when a task is done; a file that
cannot be read, or that belongs to other examples or another task, counts as missing (recollected).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..files import atomic_write_parquet

ROW_COLUMNS = ("example_id", "score_after", "forgetting")
PROVENANCE_KEY = b"hf_forgetting"
COLLECTED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the provenance's `collected_at` (UTC): sorts as it reads


def task_filename(task: str) -> str:
    """A file name for a task id: readable, and unique through a short hash of the id."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", task)[:80]
    return f"{readable}-{hashlib.sha256(task.encode()).hexdigest()[:8]}.parquet"


def write_collect_row(
    path: Path, example_ids: Sequence[str], after: np.ndarray, forgetting: np.ndarray, provenance: dict
) -> Path:
    table = pa.table(
        {
            "example_id": list(example_ids),
            "score_after": pa.array(np.asarray(after, np.float32), pa.float32()),
            "forgetting": pa.array(np.asarray(forgetting, np.float32), pa.float32()),
        }
    ).replace_schema_metadata({PROVENANCE_KEY: json.dumps(provenance)})
    return atomic_write_parquet(path, table)


def read_collect_row(path: Path, task: str, example_ids: Sequence[str]) -> tuple[np.ndarray, dict] | None:
    """``(forgetting, provenance)`` of a finished row, or None if it is missing or unusable."""
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
        provenance = json.loads(table.schema.metadata[PROVENANCE_KEY])
        ids_match = table.column("example_id").to_pylist() == list(example_ids)
    except (pa.ArrowException, OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        print(f"Warning: {path} is unreadable ({error}); task {task!r} will be collected again")
        return None
    if not ids_match or not isinstance(provenance, dict) or provenance.get("task_id") != task or table.column_names != list(ROW_COLUMNS):
        print(f"Warning: {path} does not match this run's examples or task; task {task!r} will be collected again")
        return None
    return table.column("forgetting").to_numpy().astype(np.float32), provenance
