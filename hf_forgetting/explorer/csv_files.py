"""The CSV files the Space hands out, within a count and a disk budget."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path


class CsvFiles:
    """The CSV files the Space hands out, in one folder it owns: named by content (a repeated query
    writes nothing new) and only the newest kept, at most `keep` files and `max_bytes` in all (the newest
    is always kept), so that disk use stays bounded however many requests come and however wide the
    matrix (the web framework serves its own copy of each, removed by its own age limit)."""

    def __init__(self, folder: str | Path, keep: int = 64, max_bytes: int = 256 * 2**20):
        if keep < 1 or max_bytes < 1:
            raise ValueError(f"CsvFiles needs keep >= 1 and max_bytes >= 1; got {keep} and {max_bytes}")
        self.folder, self.keep, self.max_bytes = Path(folder), keep, max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, text: str, name: str = "predicted_forgetting.csv") -> Path:
        from ..files import atomic_write_text

        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        path = self.folder / digest / name
        with self._lock:
            atomic_write_text(path, text)
            folders = sorted((f for f in self.folder.iterdir() if f.is_dir()), key=lambda f: f.stat().st_mtime_ns, reverse=True)
            total = 0
            for number, folder in enumerate(folders):
                total += sum(file.stat().st_size for file in folder.iterdir())
                if number > 0 and (number >= self.keep or total > self.max_bytes):
                    for file in folder.iterdir():
                        file.unlink(missing_ok=True)
                    folder.rmdir()
        return path
