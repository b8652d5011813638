"""One CSV schema for a row of forgetting, measured or predicted: ``example_id,forgetting``.

Every stage writes it (`predict`, the Space's download) and every stage reads it (`predict --known`,
`train --known` and `--replay_scores_file`, the Space's upload), so the output of one step is the
input of the next. A bad file raises an error that names it and the line.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import HfForgettingError
from ..files import atomic_write_text

ID_COLUMN, VALUE_COLUMN = "example_id", "forgetting"
INTERVAL_COLUMNS = ("lower_95", "upper_95")  # a predicted row's 95% interval, after the value


class ForgettingCsvError(HfForgettingError, ValueError):
    """A forgetting CSV is malformed; the message names the file (and line) and the problem."""


def forgetting_csv_text(example_ids: Sequence[str], values: Sequence[float], lower: Sequence[float] | None = None,
                        upper: Sequence[float] | None = None) -> str:
    """The CSV text of one row (values with 6 significant digits; NaN as ``nan``); with ``lower`` and
    ``upper``, two more columns give each value's 95% interval (readers use the first two columns)."""
    if len(example_ids) != len(values):
        raise ValueError(f"{len(example_ids)} example ids for {len(values)} values")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if lower is None or upper is None:
        writer.writerow([ID_COLUMN, VALUE_COLUMN])
        writer.writerows([example_id, f"{float(value):.6g}"] for example_id, value in zip(example_ids, values))
    else:
        writer.writerow([ID_COLUMN, VALUE_COLUMN, *INTERVAL_COLUMNS])
        writer.writerows([example_id, *(f"{float(v):.6g}" for v in row)] for example_id, *row in zip(example_ids, values, lower, upper))
    return buffer.getvalue()


def write_forgetting_csv(path: str | Path, example_ids: Sequence[str], values: Sequence[float],
                         lower: Sequence[float] | None = None, upper: Sequence[float] | None = None) -> Path:
    """Write one row as ``example_id,forgetting`` (and its interval, when given), atomically."""
    return atomic_write_text(path, forgetting_csv_text(example_ids, values, lower, upper))


def read_forgetting_csv(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(example_ids, values)`` of a forgetting CSV; the values must be finite."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ForgettingCsvError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    return parse_forgetting_csv(text, str(path))


def parse_forgetting_csv(text: str, where: str = "the CSV") -> tuple[list[str], np.ndarray]:
    """``(example_ids, values)`` of CSV text in the schema; blank lines skipped."""
    reader = csv.reader(io.StringIO(text))
    header = [cell.strip() for cell in next(reader, [])]
    column, id_column = _value_column(header, where), header.index(ID_COLUMN)
    ids, values = [], []
    for line, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) <= max(column, id_column):
            raise ForgettingCsvError(f"{where}, line {line}: no {header[column]} value")
        try:
            value = float(cells[column])
        except ValueError:
            raise ForgettingCsvError(f"{where}, line {line}: {header[column]} {cells[column][:50]!r} is not a number") from None
        if not math.isfinite(value):
            raise ForgettingCsvError(f"{where}, line {line}: {header[column]} {cells[column][:50]!r} is not a finite number")
        ids.append(cells[id_column].strip())
        values.append(value)
    return ids, np.array(values, dtype=np.float64)


def _value_column(header: list[str], where: str) -> int:
    if ID_COLUMN not in header or VALUE_COLUMN not in header:
        raise ForgettingCsvError(f"{where}: expected the columns {ID_COLUMN},{VALUE_COLUMN}; got {header[:10]}")
    return header.index(VALUE_COLUMN)
