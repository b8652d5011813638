"""A predicted forgetting row written while training (``forgetting_row.parquet``).

Columns ``example_id`` (string), ``predicted_forgetting`` (float32) and ``step`` (int64, the optimizer
step it was predicted at, the same for every row), so that pandas, `datasets` and DuckDB read it as
it is; ``probe_ids`` and ``probe_forgetting`` (what was measured) ride in the schema metadata under
``hf_forgetting``. Written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import HfForgettingError
from ..files import atomic_write_parquet

PREDICTED_ROW_FILE = "forgetting_row.parquet"
PREDICTED_ROW_COLUMNS = ("example_id", "predicted_forgetting", "step")
METADATA_KEY = b"hf_forgetting"


def write_predicted_row(path: str | Path, example_ids: Sequence[str], predicted: np.ndarray, step: int, measured: dict) -> Path:
    """Write one predicted row; ``measured`` (JSON-able: the probes and their forgetting) goes in the metadata."""
    if len(example_ids) != len(predicted):
        raise ValueError(f"{len(example_ids)} example ids for {len(predicted)} predicted values")
    table = pa.table({
        "example_id": pa.array(list(example_ids), pa.string()),
        "predicted_forgetting": pa.array(np.asarray(predicted, np.float32), pa.float32()),
        "step": pa.array(np.full(len(example_ids), int(step), np.int64), pa.int64()),
    }).replace_schema_metadata({METADATA_KEY: json.dumps(measured)})
    return atomic_write_parquet(path, table)


def read_predicted_row(path: str | Path) -> tuple[list[str], np.ndarray, int, dict]:
    """``(example_ids, predicted_forgetting, step, measured)``; a bad file raises an error naming it."""
    try:
        table = pq.read_table(path)
        if table.column_names != list(PREDICTED_ROW_COLUMNS):
            raise ValueError(f"columns {table.column_names}, expected {list(PREDICTED_ROW_COLUMNS)}")
        measured = json.loads((table.schema.metadata or {})[METADATA_KEY])
        steps = set(table.column("step").to_pylist())
        if len(steps) > 1:
            raise ValueError(f"several steps {sorted(steps)} in one row")
    except (pa.ArrowException, OSError, KeyError, ValueError) as error:
        raise HfForgettingError(f"{path}: not a predicted forgetting row ({error})") from error
    step = steps.pop() if steps else 0
    return table.column("example_id").to_pylist(), table.column("predicted_forgetting").to_numpy().astype(np.float32), step, measured
