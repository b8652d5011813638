"""Loading upstream and task datasets from local files: formats, stable ids, clear errors."""

import json

import pytest
from datasets import Dataset

from hf_forgetting.data import load_task, load_upstream, subsample


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_local_upstream_with_custom_text_field_and_ids(tmp_path):
    rows = [{"doc": f"passage number {i}", "uid": f"u{i}"} for i in range(10)]
    path = write_jsonl(tmp_path / "corpus.jsonl", rows)
    dataset = load_upstream(path, text_field="doc", id_field="uid", num_examples=4, seed=1)
    assert set(dataset.column_names) >= {"example_id", "text"} and len(dataset) == 4
    assert all(i.startswith("u") for i in dataset["example_id"])


def test_ids_do_not_depend_on_where_the_file_lies(tmp_path):
    rows = [{"prompt": f"Q{i}:", "completion": f" A{i}"} for i in range(5)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = load_task(write_jsonl(tmp_path / "a" / "task.jsonl", rows))
    second = load_task(write_jsonl(tmp_path / "b" / "task.jsonl", rows))
    assert first["example_id"] == second["example_id"]
    assert sorted(first["example_id"])[0] == "task.jsonl/train/0"


def test_save_to_disk_folder_and_parquet(tmp_path):
    dataset = Dataset.from_dict({"example_id": ["x", "y"], "text": ["one two", "three four"]})
    dataset.save_to_disk(tmp_path / "saved")
    dataset.to_parquet(tmp_path / "data.parquet")
    assert sorted(load_upstream(str(tmp_path / "saved"))["example_id"]) == ["x", "y"]
    assert sorted(load_upstream(str(tmp_path / "data.parquet"))["example_id"]) == ["x", "y"]


def test_subsample_is_seeded_and_nested(tmp_path):
    dataset = Dataset.from_dict({"example_id": [str(i) for i in range(50)]})
    assert subsample(dataset, 10, seed=0)["example_id"] == subsample(dataset, 10, seed=0)["example_id"]
    assert subsample(dataset, 10, seed=0)["example_id"] == subsample(dataset, 20, seed=0)["example_id"][:10]
    with pytest.raises(ValueError, match="only 50"):
        subsample(dataset, 51, seed=0)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown task 'nonexistent_task'"):
        load_task("nonexistent_task")
    bad_format = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "label": 1}])
    with pytest.raises(ValueError, match="needs a 'text' column"):
        load_task(bad_format)
    duplicated = write_jsonl(tmp_path / "dup.jsonl", [{"example_id": "a", "text": "x"}, {"example_id": "a", "text": "y"}])
    with pytest.raises(ValueError, match="duplicate example ids"):
        load_upstream(duplicated)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_upstream(str(tmp_path / "notes.txt"))
