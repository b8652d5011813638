"""The demo's time table: stages timed by a clock, a collection split by what its rows record
(synthetic matrices, labelled as such: only their provenance matters here)."""

import time

import numpy as np
import pytest

from hf_forgetting import ForgettingMatrix
from hf_forgetting.stage_times import StageClock, breakdown_markdown, collection_split


def synthetic_matrix(rows: dict) -> ForgettingMatrix:
    tasks = list(rows)
    return ForgettingMatrix(np.zeros((len(tasks), 2), np.float32), tasks, ["u0", "u1"], "nll_increase", {"rows": rows})


def test_the_clock_adds_up_each_stage_and_keeps_their_order():
    clock = StageClock()
    with clock("first"):
        time.sleep(0.05)
    with pytest.raises(RuntimeError), clock("second"):
        raise RuntimeError("a stage that fails is still timed")
    with clock("first"):
        time.sleep(0.05)
    assert list(clock.seconds) == ["first", "second"]
    assert 0.1 <= clock.seconds["first"] < 1.0 and clock.seconds["second"] < 0.05


def test_the_collection_split_counts_only_the_rows_of_this_run():
    matrix = synthetic_matrix({
        "old": {"collected_at": "2026-01-01T00:00:00Z", "train_seconds": 100.0, "score_seconds": 50.0},
        "a": {"collected_at": "2026-12-02T10:00:00Z", "train_seconds": 30.0, "score_seconds": 10.0},
        "b": {"collected_at": "2026-12-02T10:05:00Z", "train_seconds": 20.5, "score_seconds": 9.5},
    })
    assert collection_split(matrix, since="2026-12-02T09:59:59Z") == {"rows": 2, "jobs": 1, "training": 50.5, "scoring": 19.5}
    assert collection_split(matrix, since="2026-12-03T00:00:00Z") is None  # every row resumed: nothing to split


def test_rows_collected_by_jobs_side_by_side_count_each_jobs_mean():
    matrix = synthetic_matrix({
        "a": {"collected_at": "2026-12-02T10:00:00Z", "train_seconds": 30.0, "score_seconds": 10.0},
        "b": {"collected_at": "2026-12-02T10:00:01Z", "train_seconds": 20.0, "score_seconds": 9.0},
    })
    split = collection_split(matrix, since="2026-12-02T00:00:00Z", jobs=2)
    assert split == {"rows": 2, "jobs": 2, "training": 25.0, "scoring": 9.5}
    table = breakdown_markdown({"collection": 40.0}, collection="collection", split=split)
    assert "| collection: fine-tuning (2 tasks in 2 jobs side by side, each job's mean) | 25.0 | 62% |" in table
    assert "task preparation, waiting for the last job) | 5.5 | 14% |" in table


def test_rows_of_an_older_version_leave_the_collection_unsplit():
    matrix = synthetic_matrix({"a": {"collected_at": "2026-12-02T10:00:00Z", "seconds": 40.0}})
    assert collection_split(matrix, since="2026-12-02T00:00:00Z") is None
    table = breakdown_markdown({"collection": 40.0, "analysis": 10.0}, collection="collection", split=None)
    assert "| collection | 40.0 | 80% |" in table and "| total | 50.0 | 100% |" in table


def test_the_table_splits_the_collection_into_training_scoring_and_the_rest():
    split = {"rows": 2, "training": 50.0, "scoring": 20.0}
    table = breakdown_markdown({"fetch": 20.0, "collection": 80.0}, collection="collection", split=split)
    lines = table.splitlines()
    assert lines[2] == "| fetch | 20.0 | 20% |"
    assert lines[3] == "| collection: fine-tuning (2 tasks) | 50.0 | 50% |"
    assert lines[4] == "| collection: scoring the fine-tuned models (2 passes) | 20.0 | 20% |"
    assert lines[5].startswith("| collection: the rest (") and lines[5].endswith("| 10.0 | 10% |")
    assert lines[6] == "| total | 100.0 | 100% |"
