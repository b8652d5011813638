"""ForgettingMatrix: construction, validation errors, save/load and datasets round trips.

Values here are synthetic (random numbers), used only to test storage and validation.
"""

import json
import os
import stat

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import invalid_utf8_strings

from hf_forgetting import ForgettingMatrix
from hf_forgetting.errors import RepoKindError
from hf_forgetting.matrix import ForgettingMatrixError, example_ids_sha256


@pytest.fixture
def matrix():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 5)).astype(np.float32)
    values[1, 2] = np.nan
    return ForgettingMatrix(
        values,
        task_ids=["qa", "sorting", "sentiment"],
        example_ids=[f"doc/{i}" for i in range(5)],
        metric="nll_increase",
        metadata={"base_model": "tiny", "upstream": "synthetic", "settings": {"lr": 1e-4}},
    )


def test_save_load_round_trip(matrix, tmp_path):
    matrix.save(tmp_path / "m")
    loaded = ForgettingMatrix.load(tmp_path / "m")
    assert loaded == matrix
    assert np.isnan(loaded.values[1, 2]) and loaded.mask.sum() == 14
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "examples.parquet",
        "forgetting.parquet",
        "forgetting_matrix.json",
    ]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_saved_files_have_the_mode_open_would_give_them(matrix, tmp_path, umask):
    """Files are written atomically through a private temporary file; the result must not stay private
    (a matrix on a shared disk is read by colleagues), nor be wider than the umask allows."""
    previous = os.umask(umask)
    try:
        matrix.save(tmp_path / "m")
        (tmp_path / "plain.txt").write_text("made by open()")
    finally:
        os.umask(previous)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~umask
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").iterdir()} == {
        name: expected for name in ("examples.parquet", "forgetting.parquet", "forgetting_matrix.json")
    }


def test_parquet_is_readable_by_datasets(matrix, tmp_path):
    from datasets import load_dataset

    matrix.save(tmp_path)
    dataset = load_dataset("parquet", data_files=str(tmp_path / "forgetting.parquet"), split="train")
    assert dataset["task_id"] == matrix.task_ids
    np.testing.assert_array_equal(np.array(dataset["forgetting"], dtype=np.float32), matrix.values)


def test_dataset_round_trip(matrix):
    dataset = matrix.to_dataset()
    assert dataset.column_names == ["task_id", "forgetting"] and len(dataset) == 3
    assert ForgettingMatrix.from_dataset(dataset) == matrix


def test_append_rows(matrix):
    bigger = matrix.append_rows(np.zeros(5), ["new_task"])
    assert bigger.shape == (4, 5) and bigger.task_ids[-1] == "new_task" and matrix.shape == (3, 5)
    with pytest.raises(ForgettingMatrixError, match="already in the matrix"):
        matrix.append_rows(np.zeros(5), ["qa"])
    with pytest.raises(ForgettingMatrixError, match="expected"):
        matrix.append_rows(np.zeros(4), ["other"])
    with pytest.raises(ForgettingMatrixError, match="differ"):
        matrix.append_rows(np.zeros(5), ["other"], example_ids=list("abcde"))


def test_values_are_read_only(matrix):
    with pytest.raises(ValueError):
        matrix.values[0, 0] = 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"values": np.zeros((2, 3, 1))}, "2-D"),
        ({"values": np.zeros((2, 4))}, "shape"),
        ({"task_ids": ["a", "a"]}, "unique"),
        ({"example_ids": ["x", "y", "x"]}, "unique"),
        ({"example_ids": ["x", None, "z"]}, "non-empty strings"),
        ({"values": np.array([[0, np.inf, 0], [0, 0, 0]])}, "infinite"),
        ({"metric": "accuracy"}, "metric"),
        ({"metric": "em_drop", "values": np.full((2, 3), 0.5)}, "em_drop"),
        ({"metadata": {"when": object()}}, "JSON"),
    ],
)
def test_validation_errors(kwargs, message):
    arguments = {"values": np.zeros((2, 3)), "task_ids": ["a", "b"], "example_ids": ["x", "y", "z"]} | kwargs
    with pytest.raises(ForgettingMatrixError, match=message):
        ForgettingMatrix(**arguments)


def test_binary_matrix(tmp_path):
    values = np.array([[1, 0, np.nan], [0, -1, 1]])
    matrix = ForgettingMatrix(values, ["a", "b"], ["x", "y", "z"], metric="em_drop")
    assert ForgettingMatrix.load(matrix.save(tmp_path)) == matrix


def test_load_errors_name_the_file_and_problem(matrix, tmp_path):
    with pytest.raises(ForgettingMatrixError, match="forgetting_matrix.json: file not found"):
        ForgettingMatrix.load(tmp_path / "missing")

    matrix.save(tmp_path)
    header = json.loads((tmp_path / "forgetting_matrix.json").read_text())
    (tmp_path / "forgetting_matrix.json").write_text(json.dumps({**header, "num_examples": 6}))
    with pytest.raises(ForgettingMatrixError, match="examples.parquet: holds 5 example ids; forgetting_matrix.json declares 6"):
        ForgettingMatrix.load(tmp_path)

    (tmp_path / "forgetting_matrix.json").write_text("{not json")
    with pytest.raises(ForgettingMatrixError, match="forgetting_matrix.json: not valid JSON"):
        ForgettingMatrix.load(tmp_path)

    matrix.save(tmp_path)
    (tmp_path / "forgetting.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(ForgettingMatrixError, match="forgetting.parquet: not a readable parquet file"):
        ForgettingMatrix.load(tmp_path)

    matrix.save(tmp_path)
    pq.write_table(pa.table({"example_id": pa.array([1, 2, 3, 4, 5])}), tmp_path / "examples.parquet")
    with pytest.raises(ForgettingMatrixError, match=r"examples.parquet: has columns \(example_id: int64\); expected \(example_id: string\)"):
        ForgettingMatrix.load(tmp_path)

    matrix.save(tmp_path)
    sha = example_ids_sha256(matrix.example_ids)
    short = pa.table({"task_id": ["a", "b", "c"], "forgetting": pa.array([[0.0]] * 3, pa.list_(pa.float32())),
                      "contributor": [""] * 3, "provenance": ["{}"] * 3, "example_ids_sha256": [sha] * 3})
    pq.write_table(short, tmp_path / "forgetting.parquet")
    with pytest.raises(ForgettingMatrixError, match="forgetting.parquet: task 'a' has 1 values; expected 5"):
        ForgettingMatrix.load(tmp_path)

    matrix.save(tmp_path)
    other = pa.table({"example_id": ["d", "e", "f", "g", "h"]})
    pq.write_table(other, tmp_path / "examples.parquet")
    with pytest.raises(ForgettingMatrixError, match="examples.parquet: the example ids do not match the example_ids_sha256"):
        ForgettingMatrix.load(tmp_path)
    duplicated = pa.table({"example_id": ["d", "d", "e", "f", "g"]})
    pq.write_table(duplicated, tmp_path / "examples.parquet")
    with pytest.raises(ForgettingMatrixError, match=r"examples.parquet: example_ids must be unique"):
        ForgettingMatrix.load(tmp_path)


def test_ids_that_are_not_utf8_are_an_error_naming_the_file_and_column(matrix, tmp_path):
    matrix.save(tmp_path / "m")
    ids = [i.encode() for i in matrix.example_ids]
    pq.write_table(pa.table({"example_id": invalid_utf8_strings(b"\xff\xfe", *ids[1:])}), tmp_path / "m" / "examples.parquet")
    with pytest.raises(ForgettingMatrixError, match=r"examples\.parquet: column 'example_id' is not valid UTF-8 text"):
        ForgettingMatrix.load(tmp_path / "m")


def test_from_dataset_errors(matrix):
    from datasets import Dataset

    with pytest.raises(ForgettingMatrixError, match="no example ids"):
        ForgettingMatrix.from_dataset(Dataset.from_dict({"task_id": ["a"], "forgetting": [[0.0]]}))
    with pytest.raises(ForgettingMatrixError, match="lacks column"):
        ForgettingMatrix.from_dataset(Dataset.from_dict({"task_id": ["a"]}), example_ids=["x"])


def test_a_header_of_another_format_version_is_refused_naming_the_file_and_version(matrix, tmp_path):
    saved = matrix.save(tmp_path / "m")
    header = json.loads((saved / "forgetting_matrix.json").read_text())
    (saved / "forgetting_matrix.json").write_text(json.dumps({**header, "format_version": 1}))
    with pytest.raises(ForgettingMatrixError, match=r"forgetting_matrix.json: unsupported format_version 1 \(this hf_forgetting "
                                                    r"reads format_version 2\)"):
        ForgettingMatrix.load(saved)
    (saved / "forgetting_matrix.json").write_text(json.dumps({k: v for k, v in header.items() if k != "kind"}))
    with pytest.raises(RepoKindError, match="holds a kind None, not a forgetting matrix"):
        ForgettingMatrix.load(saved)


def test_a_predictor_folder_is_not_read_as_a_matrix(tmp_path):
    (tmp_path / "forgetting_matrix.json").write_text(json.dumps({"kind": "forgetting_predictor", "format_version": 2}))
    from hf_forgetting.errors import RepoKindError

    with pytest.raises(RepoKindError, match="holds a forgetting predictor, not a forgetting matrix"):
        ForgettingMatrix.load(tmp_path)


def test_select_and_drop_tasks(matrix):
    matrix = ForgettingMatrix(matrix.values, matrix.task_ids, matrix.example_ids, matrix.metric,
                              {"rows": {t: {"train_loss": i} for i, t in enumerate(matrix.task_ids)}, "base_model": "m"})
    first, last = matrix.task_ids[0], matrix.task_ids[-1]
    picked = matrix.select_tasks([last, first])
    assert picked.task_ids == [last, first] and picked.example_ids == matrix.example_ids
    np.testing.assert_array_equal(picked.values, matrix.values[[-1, 0]])
    assert set(picked.metadata["rows"]) == {first, last} and picked.metadata["base_model"] == "m"
    rest = matrix.drop_tasks([first])
    assert rest.task_ids == matrix.task_ids[1:] and first not in rest.metadata["rows"]
    np.testing.assert_array_equal(rest.values, matrix.values[1:])
    with pytest.raises(KeyError, match="tasks not in the matrix: \\['nope'\\]"):
        matrix.select_tasks(["nope"])
    with pytest.raises(KeyError, match="tasks not in the matrix"):
        matrix.drop_tasks(["nope"])
    with pytest.raises(ValueError, match="unique"):
        matrix.select_tasks([first, first])


def test_a_matrix_and_a_predictor_never_share_a_folder(matrix, tmp_path):
    from hf_forgetting import MFPredictor
    from hf_forgetting.errors import RepoKindError

    matrix.save(tmp_path / "m")
    with pytest.raises(RepoKindError, match="holds a forgetting matrix; save the predictor into another folder"):
        MFPredictor(rank=1, iterations=2).fit(matrix).save_pretrained(tmp_path / "m")
    MFPredictor(rank=1, iterations=2).fit(matrix).save_pretrained(tmp_path / "p")
    with pytest.raises(RepoKindError, match="holds a saved predictor; save the matrix into another folder"):
        matrix.save(tmp_path / "p")
    assert ForgettingMatrix.load(tmp_path / "m") == matrix  # nothing of the refused writes landed
