"""Matrices and predictors on a Hub: the real huggingface_hub / datasets clients against the
Hub-compatible server on 127.0.0.1 (conftest's ``hub`` fixture), including injected faults and
hostile repos. The matrices are synthetic (random numbers): these tests are about the protocol."""

import json
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import HUB_TOKENS

from hf_forgetting import ForgettingMatrix, ForgettingPredictor, MFPredictor
from hf_forgetting.hub import PUSH_ATTEMPTS, DownloadLimits, HubRepoError
from hf_forgetting.matrix import example_ids_sha256

ALICE, BOB = "hf_alice_token", "hf_bob_token"
assert HUB_TOKENS[ALICE] == "alice" and HUB_TOKENS[BOB] == "bob"


def synthetic_matrix(tasks, num_examples=40, seed=0, example_prefix="ex"):
    rng = np.random.default_rng(seed)
    values = rng.normal(0.02, 0.05, size=(len(tasks), num_examples)).astype(np.float32)
    values[0, :3] = np.nan  # unobserved entries travel as NaN
    example_ids = [f"{example_prefix}/{j}" for j in range(num_examples)]
    metadata = {
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "base_model_revision": "main",
        "upstream_dataset": "synthetic",
        "settings": {"training": {"learning_rate": 5e-5, "max_steps": 20}, "model": {"use_peft": False}},
        "rows": {task: {"task_id": task, "train_loss": 1.5} for task in tasks},
    }
    return ForgettingMatrix(values, tasks, example_ids, "nll_increase", metadata)


@pytest.fixture
def repo_id():
    return f"alice/forgetting-{uuid.uuid4().hex[:8]}"


def _repo_files(repo_id, revision=None):
    from huggingface_hub import HfApi

    return sorted(HfApi(token=ALICE).list_repo_files(repo_id, repo_type="dataset", revision=revision))


def _row_files(repo_id, revision=None):
    return [path for path in _repo_files(repo_id, revision) if path.startswith("rows/")]


def _assert_same_matrix(loaded, expected):
    assert loaded.task_ids == expected.task_ids
    assert loaded.example_ids == expected.example_ids
    assert loaded.metric == expected.metric
    np.testing.assert_array_equal(loaded.values, expected.values)


# -- push, load, card ----------------------------------------------------------------------------


def test_push_then_load_with_our_api_and_plain_datasets(hub, repo_id):
    import datasets

    matrix = synthetic_matrix(["sst2", "squad", "gsm8k"])
    commit = matrix.push_to_hub(repo_id, token=ALICE)
    assert commit.oid == hub.head("dataset", repo_id)

    files = _repo_files(repo_id)
    assert files[:3] == [".gitattributes", "README.md", "examples.parquet"]
    assert files[3] == "forgetting_matrix.json" and len(_row_files(repo_id)) == 1

    loaded = ForgettingMatrix.from_hub(repo_id)
    _assert_same_matrix(loaded, matrix)
    assert loaded.metadata["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert loaded.metadata["rows"]["squad"]["contributor"] == "alice"
    assert loaded.metadata["rows"]["squad"]["train_loss"] == 1.5
    assert loaded.metadata["hub"] == {"repo_id": repo_id, "revision": commit.oid}

    rows = datasets.load_dataset(repo_id, split="train")
    assert list(rows["task_id"]) == matrix.task_ids
    np.testing.assert_array_equal(np.array(list(rows["forgetting"]), dtype=np.float32), matrix.values)
    examples = datasets.load_dataset(repo_id, "examples", split="train")
    assert list(examples["example_id"]) == matrix.example_ids


def test_dataset_card_is_generated_from_the_metadata(hub, repo_id):
    from huggingface_hub import DatasetCard

    synthetic_matrix(["sst2", "squad"], num_examples=30).push_to_hub(repo_id, token=ALICE, license="apache-2.0")
    card = DatasetCard.load(repo_id, repo_type="dataset")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["source_datasets"] == ["synthetic"]
    assert data["fine_tuning_tasks"] == ["sst2", "squad"]
    assert data["metric"] == "nll_increase"
    assert data["forgetting_matrix"]["num_tasks"] == 2 and data["forgetting_matrix"]["num_examples"] == 30
    assert "hf-forgetting" in data["tags"]
    assert {c["config_name"] for c in data["configs"]} == {"rows", "examples"}
    assert "arXiv:2406.14026" in card.text and "learning rate 5e-05, 20 steps" in card.text
    assert "| alice | 2 |" in card.text


# -- many contributors -----------------------------------------------------------------------------


def test_second_contributor_adds_rows_without_rewriting_and_pinned_revision_is_kept(hub, repo_id):
    first = synthetic_matrix(["sst2", "squad"], seed=0)
    first_commit = first.push_to_hub(repo_id, token=ALICE)
    from huggingface_hub import HfApi

    before = {s.rfilename: s.blob_id for s in HfApi().dataset_info(repo_id, files_metadata=True).siblings}

    # bob collected the same examples on two more tasks, and also has alice's squad row (identical)
    extra = synthetic_matrix(["gsm8k", "mbpp"], seed=1)
    bob = ForgettingMatrix(
        np.concatenate([first.values[1:], extra.values]),
        ["squad", "gsm8k", "mbpp"],
        first.example_ids,
        metadata={**extra.metadata, "base_model_revision": "abc123"},
    )
    commit = bob.push_to_hub(repo_id, token=BOB)
    assert commit.commit_message == "Contribute 2 task row(s) by bob"

    after = {s.rfilename: s.blob_id for s in HfApi().dataset_info(repo_id, files_metadata=True).siblings}
    assert len(_row_files(repo_id)) == 2
    for path in ("examples.parquet", "forgetting_matrix.json", *_row_files(repo_id, first_commit.oid)):
        assert after[path] == before[path], f"{path} was rewritten"

    merged = ForgettingMatrix.from_hub(repo_id)
    assert merged.task_ids == ["sst2", "squad", "gsm8k", "mbpp"]
    np.testing.assert_array_equal(merged.values, np.concatenate([first.values, extra.values]))
    assert merged.metadata["rows"]["gsm8k"]["contributor"] == "bob"
    assert merged.metadata["rows"]["gsm8k"]["base_model_revision"] == "abc123"
    assert merged.metadata["rows"]["sst2"]["contributor"] == "alice"

    _assert_same_matrix(ForgettingMatrix.from_hub(repo_id, revision=first_commit.oid), first)
    assert bob.push_to_hub(repo_id, token=BOB) is None  # nothing new: no empty commit
    assert hub.head("dataset", repo_id) == commit.oid


def test_conflicting_rows_example_ids_and_metric_are_refused(hub, repo_id):
    matrix = synthetic_matrix(["sst2", "squad"])
    matrix.push_to_hub(repo_id, token=ALICE)
    head = hub.head("dataset", repo_id)

    changed = ForgettingMatrix(matrix.values + 0.1, matrix.task_ids, matrix.example_ids)
    with pytest.raises(HubRepoError, match="task 'sst2' is already in rows/.*with other values"):
        changed.push_to_hub(repo_id, token=BOB)
    other_examples = synthetic_matrix(["mbpp"], example_prefix="other")
    with pytest.raises(HubRepoError, match="other example ids"):
        other_examples.push_to_hub(repo_id, token=BOB)
    binary = ForgettingMatrix(np.ones((1, 40)), ["mbpp"], matrix.example_ids, metric="em_drop")
    with pytest.raises(HubRepoError, match="holds a 'nll_increase' matrix"):
        binary.push_to_hub(repo_id, token=BOB)
    assert hub.head("dataset", repo_id) == head


def test_duplicate_tasks_in_two_contributions_are_detected_on_load(hub, repo_id):
    matrix = synthetic_matrix(["sst2", "squad"])
    matrix.push_to_hub(repo_id, token=ALICE)
    (first_file,) = _row_files(repo_id)
    # a second contributor's file that repeats 'squad' (as a racing or hand-made upload could)
    table = pq.read_table(_download(repo_id, first_file)).slice(1, 1)
    hub.put_file("dataset", repo_id, "rows/zz-bob.parquet", _parquet_bytes(table))

    with pytest.raises(HubRepoError, match=rf"rows/zz-bob.parquet: task 'squad' is already contributed by {first_file}"):
        ForgettingMatrix.from_hub(repo_id)
    _assert_same_matrix(ForgettingMatrix.from_hub(repo_id, on_duplicate="first"), matrix)


def test_contributions_pushed_within_one_second_load_oldest_first(hub, repo_id, monkeypatch):
    import datetime

    from hf_forgetting.hub import matrix_repo

    second = datetime.datetime(2026, 12, 7, 12, 0, 0, tzinfo=datetime.timezone.utc)
    bob_row, alice_row = synthetic_matrix(["sst2"], seed=0), synthetic_matrix(["squad"], seed=1)
    alice_row = ForgettingMatrix(alice_row.values, ["squad"], bob_row.example_ids, metadata=bob_row.metadata)
    monkeypatch.setattr(matrix_repo, "_utc_now", lambda: second.replace(microsecond=200))
    bob_row.push_to_hub(repo_id, token=BOB)  # first, although "bob" sorts after "alice"
    monkeypatch.setattr(matrix_repo, "_utc_now", lambda: second.replace(microsecond=900))
    alice_row.push_to_hub(repo_id, token=ALICE)
    assert ForgettingMatrix.from_hub(repo_id).task_ids == ["sst2", "squad"]
    assert [name.split("-")[0] for name in _row_files(repo_id)] == ["rows/20261207T120000000200Z", "rows/20261207T120000000900Z"]


# -- faults during push ----------------------------------------------------------------------------


def test_server_error_on_commit_leaves_repo_unchanged_then_push_is_retried(hub, repo_id):
    synthetic_matrix(["sst2"]).push_to_hub(repo_id, token=ALICE)
    head = hub.head("dataset", repo_id)
    more = ForgettingMatrix(np.zeros((1, 40)), ["squad"], synthetic_matrix(["sst2"]).example_ids)

    fault = hub.inject_fault("POST", "/commit/", status=500, times=PUSH_ATTEMPTS)
    with pytest.raises(HubRepoError, match=f"could not push after {PUSH_ATTEMPTS} attempts"):
        more.push_to_hub(repo_id, token=BOB)
    assert fault.hits == PUSH_ATTEMPTS
    assert hub.head("dataset", repo_id) == head and len(_row_files(repo_id)) == 1

    hub.inject_fault("POST", "/commit/", status=503, times=1)
    commit = more.push_to_hub(repo_id, token=BOB)
    assert hub.head("dataset", repo_id) == commit.oid
    assert ForgettingMatrix.from_hub(repo_id).task_ids == ["sst2", "squad"]


def test_lost_commit_response_is_not_pushed_twice(hub, repo_id):
    synthetic_matrix(["sst2"]).push_to_hub(repo_id, token=ALICE)
    more = ForgettingMatrix(np.zeros((1, 40)), ["squad"], synthetic_matrix(["sst2"]).example_ids)
    fault = hub.inject_fault("POST", "/commit/", kind="drop_after")  # commit applied, response lost
    commit = more.push_to_hub(repo_id, token=BOB)
    assert fault.hits == 1
    assert commit.oid == hub.head("dataset", repo_id)
    assert len(_row_files(repo_id)) == 2  # one contribution, not two
    assert ForgettingMatrix.from_hub(repo_id).task_ids == ["sst2", "squad"]


def test_dropped_connection_during_lfs_upload_is_retried(hub, repo_id):
    fault = hub.inject_fault("PUT", "/lfs-objects/", kind="drop", times=1)
    matrix = synthetic_matrix(["sst2", "squad"])
    matrix.push_to_hub(repo_id, token=ALICE)
    assert fault.hits == 1
    puts = [path for method, path in hub.requests if method == "PUT"]
    assert len(puts) >= 3  # examples.parquet and the row file, one of them twice
    _assert_same_matrix(ForgettingMatrix.from_hub(repo_id), matrix)


def test_failed_upload_leaves_no_visible_state(hub, repo_id):
    matrix = synthetic_matrix(["sst2"])
    matrix.push_to_hub(repo_id, token=ALICE)
    head, files = hub.head("dataset", repo_id), _repo_files(repo_id)
    hub.inject_fault("PUT", "/lfs-objects/", status=403, times=1)  # not retryable
    more = ForgettingMatrix(np.zeros((1, 40)), ["squad"], matrix.example_ids)
    with pytest.raises(Exception, match="Error while uploading .rows/"):
        more.push_to_hub(repo_id, token=BOB)
    assert hub.head("dataset", repo_id) == head and _repo_files(repo_id) == files


def test_push_without_a_token_is_refused(hub, repo_id):
    with pytest.raises(Exception, match="401|token"):
        synthetic_matrix(["sst2"]).push_to_hub(repo_id, token=False)


# -- malformed and hostile repos -------------------------------------------------------------------


def _parquet_bytes(table):
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _row_table(task_id, values, ids_sha256):
    """A contribution file as a hand-made (here: hostile) upload would write it."""
    return pa.table(
        {
            "task_id": [task_id],
            "forgetting": pa.array([np.asarray(values, np.float32)], pa.list_(pa.float32())),
            "contributor": ["mallory"],
            "provenance": ["{}"],
            "example_ids_sha256": [ids_sha256],
        }
    )


def _download(repo_id, path):
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, path, repo_type="dataset")


@pytest.fixture
def pushed(hub, repo_id):
    matrix = synthetic_matrix(["sst2", "squad"])
    matrix.push_to_hub(repo_id, token=ALICE)
    return repo_id, matrix


def test_repo_with_a_pickle_file_is_refused(hub, pushed):
    repo_id, _ = pushed
    hub.put_file("dataset", repo_id, "rows/extra.pkl", b"\x80\x04K\x01.")
    with pytest.raises(HubRepoError, match=rf"{repo_id}@\w+: rows/extra.pkl: pickle or executable"):
        ForgettingMatrix.from_hub(repo_id)
    assert not any(path.endswith(".pkl") for method, path in hub.requests if method == "GET")


def test_rows_of_the_wrong_length_are_refused(hub, pushed):
    repo_id, matrix = pushed
    table = _row_table("mbpp", np.zeros(39, np.float32), example_ids_sha256(matrix.example_ids))
    hub.put_file("dataset", repo_id, "rows/short.parquet", _parquet_bytes(table))
    with pytest.raises(HubRepoError, match="rows/short.parquet: task 'mbpp' has 39 values; expected 40"):
        ForgettingMatrix.from_hub(repo_id)


def test_a_task_id_that_is_not_utf8_is_refused_naming_the_repo_and_file(hub, pushed):
    from conftest import invalid_utf8_strings

    repo_id, matrix = pushed
    table = _row_table("mbpp", np.zeros(40, np.float32), example_ids_sha256(matrix.example_ids))
    table = table.set_column(table.schema.get_field_index("task_id"), "task_id", invalid_utf8_strings(b"mb\xc3("))
    hub.put_file("dataset", repo_id, "rows/bad-text.parquet", _parquet_bytes(table))
    with pytest.raises(HubRepoError, match=rf"{repo_id}.*rows/bad-text.parquet: column 'task_id' is not valid UTF-8 text"):
        ForgettingMatrix.from_hub(repo_id)


def test_rows_over_another_example_list_are_refused(hub, pushed):
    repo_id, _ = pushed
    hub.put_file("dataset", repo_id, "rows/other.parquet", _parquet_bytes(_row_table("mbpp", np.zeros(40), "0" * 64)))
    with pytest.raises(HubRepoError, match="rows/other.parquet: task 'mbpp' was collected on a different example-id list"):
        ForgettingMatrix.from_hub(repo_id)


def test_nan_example_ids_are_refused(hub, pushed):
    repo_id, _ = pushed
    hub.put_file("dataset", repo_id, "examples.parquet", _parquet_bytes(pa.table({"example_id": [float("nan")] * 40})))
    with pytest.raises(HubRepoError, match=r"examples.parquet: has columns \(example_id: double\); expected \(example_id: string\)"):
        ForgettingMatrix.from_hub(repo_id)
    hub.put_file("dataset", repo_id, "examples.parquet", _parquet_bytes(pa.table({"example_id": pa.array([None] * 40, pa.string())})))
    with pytest.raises(HubRepoError, match="examples.parquet: 40 example ids are missing"):
        ForgettingMatrix.from_hub(repo_id)


def test_huge_declared_sizes_are_refused_before_download(hub, pushed):
    repo_id, matrix = pushed
    header = json.loads(open(_download(repo_id, "forgetting_matrix.json")).read())
    hub.put_file("dataset", repo_id, "forgetting_matrix.json", json.dumps({**header, "num_examples": 10**12}).encode())
    with pytest.raises(HubRepoError, match="forgetting_matrix.json: num_examples must be an integer in 1..2,000,000"):
        ForgettingMatrix.from_hub(repo_id)
    # 16 x 10^6 examples (a file of a few KB can declare them; their ids alone would take GBs): refused by the header
    hub.put_file("dataset", repo_id, "forgetting_matrix.json", json.dumps({**header, "num_examples": 16 * 10**6}).encode())
    with pytest.raises(HubRepoError, match="num_examples must be an integer in 1..2,000,000"):
        ForgettingMatrix.from_hub(repo_id)

    hub.put_file("dataset", repo_id, "forgetting_matrix.json", json.dumps(header).encode())
    requests_before = len(hub.requests)
    with pytest.raises(HubRepoError, match=r"@\w+: [\w./-]+: declares [\d,]+ bytes, over the limit of 1,000"):
        ForgettingMatrix.from_hub(repo_id, limits=DownloadLimits(max_file_bytes=1000))
    assert not any("/resolve/" in path for _, path in hub.requests[requests_before:])

    too_many = pa.table({"example_id": [f"ex/{j}" for j in range(41)]})
    hub.put_file("dataset", repo_id, "examples.parquet", _parquet_bytes(too_many))
    with pytest.raises(HubRepoError, match="examples.parquet: declares 41 rows, more than the 40 allowed"):
        ForgettingMatrix.from_hub(repo_id)


def test_missing_repo_and_missing_files_name_the_repo(hub, repo_id):
    from huggingface_hub.errors import RepositoryNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        ForgettingMatrix.from_hub("alice/does-not-exist")
    hub.put_file("dataset", repo_id, "notes.txt", b"hello")
    with pytest.raises(HubRepoError, match=rf"{repo_id}@\w+: holds no forgetting matrix \(no forgetting_matrix.json\)"):
        ForgettingMatrix.from_hub(repo_id)


# -- predictors ------------------------------------------------------------------------------------


def test_predictor_push_and_from_pretrained_with_a_repo_id(hub, repo_id, tmp_path):
    from huggingface_hub import DatasetCard

    matrix = synthetic_matrix([f"task{i}" for i in range(8)])
    predictor = MFPredictor(rank=2).fit(matrix)
    commit = predictor.push_to_hub(repo_id, token=ALICE)
    assert _repo_files(repo_id) == [".gitattributes", "README.md", "model.safetensors", "predictor.json"]
    loaded = ForgettingPredictor.from_pretrained(repo_id)
    assert isinstance(loaded, MFPredictor) and loaded.example_ids == matrix.example_ids
    known = matrix.example_ids[:5]
    np.testing.assert_array_equal(loaded.predict(known, np.full(5, 0.1)), predictor.predict(known, np.full(5, 0.1)))
    assert DatasetCard.load(repo_id, repo_type="dataset").data.predictor_class == "MFPredictor"

    MFPredictor(rank=1).fit(matrix).push_to_hub(repo_id, token=ALICE)
    assert MFPredictor.from_pretrained(repo_id).rank == 1
    assert MFPredictor.from_pretrained(repo_id, revision=commit.oid).rank == 2


def test_predictor_repo_with_a_pickle_is_refused(hub, repo_id):
    MFPredictor(rank=1).fit(synthetic_matrix(["a", "b", "c"])).push_to_hub(repo_id, token=ALICE)
    hub.put_file("dataset", repo_id, "optimizer.pt", b"\x80\x04.")
    with pytest.raises(HubRepoError, match="optimizer.pt: pickle or executable files are never loaded"):
        ForgettingPredictor.from_pretrained(repo_id)


def test_a_repo_of_one_kind_refuses_a_push_of_the_other_and_loses_nothing(hub, repo_id):
    """A predictor pushed into a matrix repo (or the reverse) is refused before any commit: the
    contributors' row files stay, and no push deletes a file."""
    from hf_forgetting.errors import RepoKindError

    matrix = synthetic_matrix([f"task{i}" for i in range(4)])
    matrix.push_to_hub(repo_id, token=ALICE)
    synthetic_matrix(["extra"]).push_to_hub(repo_id, token=BOB)
    files, head = _repo_files(repo_id), hub.head("dataset", repo_id)
    with pytest.raises(RepoKindError, match=rf"{repo_id}@\w+: holds a forgetting matrix, not a forgetting predictor"):
        MFPredictor(rank=1).fit(matrix).push_to_hub(repo_id, token=ALICE)
    assert hub.head("dataset", repo_id) == head and _repo_files(repo_id) == files
    assert ForgettingMatrix.from_hub(repo_id).task_ids == [*matrix.task_ids, "extra"]

    predictor_repo = repo_id + "-mf"
    MFPredictor(rank=1).fit(matrix).push_to_hub(predictor_repo, token=ALICE)
    predictor_head = hub.head("dataset", predictor_repo)
    with pytest.raises(RepoKindError, match="holds a forgetting predictor, not a forgetting matrix"):
        matrix.push_to_hub(predictor_repo, token=ALICE)
    with pytest.raises(RepoKindError, match="holds a forgetting predictor, not a forgetting matrix"):
        ForgettingMatrix.from_hub(predictor_repo)
    with pytest.raises(RepoKindError, match="not a forgetting predictor"):
        ForgettingPredictor.from_pretrained(repo_id)
    assert hub.head("dataset", predictor_repo) == predictor_head


def test_predictor_push_keeps_files_it_did_not_write(hub, repo_id):
    matrix = synthetic_matrix(["a", "b", "c"])
    MFPredictor(rank=1).fit(matrix).push_to_hub(repo_id, token=ALICE)
    hub.put_file("dataset", repo_id, "notes.md", b"kept")
    MFPredictor(rank=2).fit(matrix).push_to_hub(repo_id, token=ALICE)
    assert "notes.md" in _repo_files(repo_id) and MFPredictor.from_pretrained(repo_id).rank == 2


def test_lost_predictor_push_response_is_checked_not_repeated(hub, repo_id):
    MFPredictor(rank=1).fit(synthetic_matrix(["a", "b", "c"])).push_to_hub(repo_id, token=ALICE)
    before = len(HfApi_commits(repo_id))
    hub.inject_fault("POST", "/commit/", kind="drop_after", times=1)
    commit = MFPredictor(rank=2).fit(synthetic_matrix(["a", "b", "c"])).push_to_hub(repo_id, token=ALICE)
    assert len(HfApi_commits(repo_id)) == before + 1 and commit.oid == hub.head("dataset", repo_id)


def test_pushed_header_equals_the_header_saved_locally(hub, repo_id, tmp_path):
    matrix = synthetic_matrix(["a", "b", "c"])
    matrix.save(tmp_path / "local")
    matrix.push_to_hub(repo_id, token=ALICE)
    on_hub = Path(_download(repo_id, "forgetting_matrix.json")).read_text()
    assert on_hub == (tmp_path / "local" / "forgetting_matrix.json").read_text()
    ForgettingMatrix.from_hub(repo_id).save(tmp_path / "pulled")
    assert (tmp_path / "pulled" / "forgetting_matrix.json").read_text() == on_hub


def HfApi_commits(repo_id):  # noqa: N802 - reads like the API it wraps
    from huggingface_hub import HfApi

    return HfApi().list_repo_commits(repo_id, repo_type="dataset")


# -- command line ----------------------------------------------------------------------------------


def test_push_and_pull_commands(hub, repo_id, tmp_path, capsys, monkeypatch):
    from hf_forgetting.cli import main

    monkeypatch.setenv("HF_TOKEN", ALICE)
    first, second = synthetic_matrix(["sst2", "squad"]), synthetic_matrix(["gsm8k"], seed=3)
    first.save(tmp_path / "first")
    ForgettingMatrix(second.values, second.task_ids, first.example_ids, metadata=second.metadata).save(tmp_path / "second")

    assert main(["push", str(tmp_path / "first"), repo_id]) == 0
    assert main(["push", str(tmp_path / "second"), repo_id, "--token", BOB]) == 0
    assert main(["pull", repo_id, str(tmp_path / "pulled")]) == 0
    output = capsys.readouterr().out
    assert "Add forgetting matrix (2 tasks) by alice" in output and "Contribute 1 task row(s) by bob" in output
    assert "Contributors: alice, bob" in output
    pulled = ForgettingMatrix.load(tmp_path / "pulled")
    assert pulled.task_ids == ["sst2", "squad", "gsm8k"]

    assert main(["fit", str(tmp_path / "pulled"), "--output_dir", str(tmp_path / "mf"), "--rank", "1"]) == 0
    predictor_repo = repo_id + "-mf"
    assert main(["push", str(tmp_path / "mf"), predictor_repo]) == 0
    assert main(["pull", predictor_repo, str(tmp_path / "mf-pulled")]) == 0
    assert MFPredictor.from_pretrained(tmp_path / "mf-pulled").example_ids == first.example_ids

    assert main(["pull", "alice/nothing-here", str(tmp_path / "x")]) == 1
    assert "hf-forgetting pull:" in capsys.readouterr().err


def test_a_repo_of_another_format_version_is_one_line_naming_the_file_and_version(hub, repo_id):
    matrix = synthetic_matrix(["a", "b"])
    sha = example_ids_sha256(matrix.example_ids)
    header = {"kind": "forgetting_matrix", "format_version": 1, "metric": "nll_increase", "num_examples": 40,
              "example_ids_sha256": sha, "metadata": {"base_model": "tiny"}}
    hub.put_file("dataset", repo_id, "forgetting_matrix.json", json.dumps(header).encode())
    with pytest.raises(HubRepoError, match=r"forgetting_matrix.json: unsupported format_version 1 \(this hf_forgetting reads "
                                           r"format_version 2\)"):
        ForgettingMatrix.from_hub(repo_id)
