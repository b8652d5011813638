"""Read objects out of an R lazy-load database (``Rdata.rdb`` + ``Rdata.rdx``), as Debian ships R data.

The index (``.rdx``) is a plain RDS file mapping each variable to an (offset, length) slice of the
database (``.rdb``). Each slice is a 4-byte big-endian length followed by the serialized object,
compressed as the index says: 1 = zlib; 2/3 = a type byte first ('Z' raw LZMA2, '2' bzip2,
'1' zlib, '0' none). The serialized objects are parsed by :mod:`rdata`; nothing is evaluated.
"""

from __future__ import annotations

import bz2
import lzma
import warnings
import zlib
from pathlib import Path


def _parse_rds(raw: bytes):
    import rdata  # it brings pandas and xarray, slow to import: only when R data is read

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns that a headerless stream is "assumed RDS"
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


def _decompress(chunk: bytes, compression: int, where: str) -> bytes:
    body = chunk[4:]
    if compression == 1:
        return zlib.decompress(body)
    kind, payload = body[:1], body[1:]
    if kind == b"Z":
        filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
        return lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=filters).decompress(payload)
    if kind == b"2":
        return bz2.decompress(payload)
    if kind == b"1":
        return zlib.decompress(payload)
    if kind == b"0":
        return payload
    raise ValueError(f"{where}: unknown compression type byte {kind!r}")


def read_lazyload(database: str | Path, names: list[str] | None = None) -> dict:
    """Return ``{variable: object}`` from ``<database>.rdx/.rdb`` (``database`` without suffix)."""
    database = Path(database)
    index_path, db_path = database.with_suffix(".rdx"), database.with_suffix(".rdb")
    index = _parse_rds(index_path.read_bytes())
    compression = int(index["compressed"][0]) if hasattr(index["compressed"], "__len__") else int(index["compressed"])
    variables = {str(k): v for k, v in index["variables"].items()}
    missing = sorted(set(names or []) - set(variables))
    if missing:
        raise KeyError(f"{index_path}: no variable(s) {missing}; it has {sorted(variables)}")
    blob = db_path.read_bytes()
    result = {}
    for name in names or sorted(variables):
        offset, length = (int(x) for x in variables[name])
        chunk = blob[offset : offset + length]
        result[name] = _parse_rds(_decompress(chunk, compression, f"{db_path}[{name}]"))
    return result
