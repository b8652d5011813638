"""Where a long command's time went: wall-clock seconds per stage, and a collection split into
training and scoring by the seconds its rows record (`hf-forgetting demo` prints this table)."""

from __future__ import annotations

import time
from contextlib import contextmanager

from .format.collect_rows import COLLECTED_AT_FORMAT
from .matrix import ForgettingMatrix


class StageClock:
    """Wall-clock seconds per named stage, in the order the stages ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.started_at = time.strftime(COLLECTED_AT_FORMAT, time.gmtime())

    @contextmanager
    def __call__(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


def collection_split(matrix: ForgettingMatrix, since: str, jobs: int = 1) -> dict[str, float] | None:
    """Training and scoring seconds summed over the rows collected at or after ``since`` (a
    `COLLECTED_AT_FORMAT` time), with their count; None when a row of that time does not record them.
    Rows collected by ``jobs`` jobs side by side count each job's mean: the sums divided by ``jobs``."""
    rows = [row for row in matrix.metadata.get("rows", {}).values() if row.get("collected_at", "") >= since]
    if not rows or not all("train_seconds" in row and "score_seconds" in row for row in rows):
        return None
    return {
        "rows": len(rows),
        "jobs": jobs,
        "training": sum(row["train_seconds"] for row in rows) / jobs,
        "scoring": sum(row["score_seconds"] for row in rows) / jobs,
    }


def breakdown_markdown(seconds: dict[str, float], collection: str | None = None, split: dict | None = None) -> str:
    """A Markdown table of the stages' seconds and shares; the stage named ``collection`` is split into
    its rows' training, their scoring and the rest (base-model scoring, model loading, task preparation; with
    jobs side by side, each job's mean and the wait for the last job)."""
    total = sum(seconds.values())
    lines = ["| stage | seconds | share |", "| --- | ---: | ---: |"]

    def line(name: str, value: float) -> None:
        lines.append(f"| {name} | {value:.1f} | {value / total:.0%} |")

    for stage, value in seconds.items():
        if stage == collection and split is not None:
            rest = value - split["training"] - split["scoring"]
            jobs = split.get("jobs", 1)
            side_by_side = f" in {jobs} jobs side by side, each job's mean" if jobs > 1 else ""
            line(f"{stage}: fine-tuning ({split['rows']} tasks{side_by_side})", split["training"])
            line(f"{stage}: scoring the fine-tuned models ({split['rows']} passes{side_by_side})", split["scoring"])
            waiting = ", waiting for the last job" if jobs > 1 else ""
            line(f"{stage}: the rest (base-model scoring, model loading, task preparation{waiting})", rest)
        else:
            line(stage, value)
    lines.append(f"| total | {total:.1f} | 100% |")
    return "\n".join(lines)
