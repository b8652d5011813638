"""The forgetting-explorer Space, served for real and driven through gradio_client and a browser.

Most tests open a synthetic matrix (random low-rank numbers, labelled as such) saved to a folder
or pushed to the local Hub server; the integration tests use the embedded SmolLM2 demo matrix
shipped with the Space, the real upstream texts and the real MiniLM encoder."""

import csv
import importlib.util
import os
import shutil
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import source_refusal
from gradio_client import Client, handle_file  # the [space] extra: a missing install fails here, not skips

from hf_forgetting import ForgettingMatrix, MFPredictor

SPACE_DIR = Path(__file__).resolve().parents[1] / "spaces" / "forgetting-explorer"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def load_space_module():
    spec = importlib.util.spec_from_file_location("forgetting_explorer_app", SPACE_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does: gradio looks up the file of the app's component classes
    spec.loader.exec_module(module)
    return module


def synthetic_low_rank_matrix(num_tasks=10, num_examples=120, seed=0):
    """Synthetic: rank-2 structure plus noise, for checking the Space's numbers, not forgetting."""
    rng = np.random.default_rng(seed)
    values = 0.02 + rng.normal(0, 0.05, (num_tasks, 2)) @ rng.normal(0, 1, (2, num_examples))
    values += rng.normal(0, 0.005, values.shape)
    return ForgettingMatrix(values, [f"task{i}" for i in range(num_tasks)], [f"ex/{j}" for j in range(num_examples)])


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    matrix = synthetic_low_rank_matrix()
    folder = tmp_path_factory.mktemp("space") / "matrix"
    matrix.save(folder)
    os.environ["FORGETTING_EXPLORER_FOLDERS"] = f"synthetic={folder}"  # the operator serves this folder by name
    module = load_space_module()
    del os.environ["FORGETTING_EXPLORER_FOLDERS"]
    app = module.build_app().queue(default_concurrency_limit=8)
    _, url, _ = app.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True)
    yield {"url": url, "client": Client(url, verbose=False), "matrix": matrix, "folder": "synthetic", "path": str(folder),
           "module": module}
    app.close()


EMPTY_TABLE = {"headers": ["example_id", "value"], "data": []}


def _reference_row(matrix, ids, values):
    predictor = MFPredictor(rank=min(5, matrix.shape[0] - 1)).fit(matrix)
    return predictor.predict(ids, values)


def _measured(matrix, task=0, k=30):
    columns = np.random.default_rng(task).choice(matrix.shape[1], k, replace=False)
    return [matrix.example_ids[j] for j in columns], matrix.values[task, columns].astype(float)


def _read_csv(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row["example_id"] for row in rows], np.array([float(row["forgetting"]) for row in rows])


# -- endpoints, good input -------------------------------------------------------------------------


def test_endpoints_are_named(space):
    endpoints = set(space["client"].view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/open_matrix", "/example_measurements", "/predict", "/predict_zero_shot"} <= endpoints


def test_open_matrix_reports_the_low_rank_structure(space):
    report = space["client"].predict(space["folder"], "", api_name="/open_matrix")
    assert "10 tasks x 120 upstream examples" in report and "MFPredictor" in report
    assert "| rank-2 SVD | 0.9" in report  # synthetic rank-2 + small noise


def test_predict_from_a_table_matches_the_predictor(space):
    matrix, client = space["matrix"], space["client"]
    ids, values = _measured(matrix)
    table = {"headers": ["example_id", "value"], "data": [[i, v] for i, v in zip(ids, values)]}
    summary, top, histogram, task_map, csv_path = client.predict(space["folder"], "", table, None, 7, api_name="/predict")
    expected = _reference_row(matrix, ids, values)
    csv_ids, predicted = _read_csv(csv_path)
    assert csv_ids == matrix.example_ids
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)
    assert len(top["data"]) == 7
    assert [row[1] for row in top["data"]] == [matrix.example_ids[j] for j in np.argsort(-expected, kind="stable")[:7]]
    assert "from 30 measured examples" in summary
    # the plots are data for the browser: two frequency polygons over one set of bins, and every task
    hist = {series: [row for row in histogram["data"] if row[2] == series] for series in {row[2] for row in histogram["data"]}}
    predicted_series, known_series = hist["new task (predicted)"], hist["known tasks (measured, per row)"]
    assert [row[0] for row in predicted_series] == [row[0] for row in known_series]  # shared bins
    assert sum(row[1] for row in predicted_series) == matrix.shape[1]
    assert sum(row[1] for row in known_series) == pytest.approx(matrix.shape[1], abs=0.1)  # rescaled to one row
    assert task_map["columns"][:3] == ["task factor axis 1", "task factor axis 2", "kind"]
    assert [row[3] for row in task_map["data"]] == [*matrix.task_ids, "new task"]


def test_predict_from_a_csv_upload(space, tmp_path):
    matrix, client = space["matrix"], space["client"]
    ids, values = _measured(matrix, task=3)
    path = tmp_path / "measured.csv"
    path.write_text("example_id,forgetting\n" + "".join(f"{i},{v}\n" for i, v in zip(ids, values)))
    *_, csv_path = client.predict(space["folder"], "", EMPTY_TABLE, handle_file(str(path)), 5, api_name="/predict")
    np.testing.assert_allclose(_read_csv(csv_path)[1], _reference_row(matrix, ids, values), rtol=1e-5, atol=1e-6)
    # the Space's own answer (`hf-forgetting predict` writes the same schema) is accepted as measurements
    *_, chained = client.predict(space["folder"], "", EMPTY_TABLE, handle_file(csv_path), 5, api_name="/predict")
    assert _read_csv(chained)[0] == matrix.example_ids


def test_matrix_and_predictor_from_hub_repo_ids(space, hub):
    matrix, client = space["matrix"], space["client"]
    matrix.push_to_hub("alice/space-matrix", token="hf_alice_token")
    MFPredictor(rank=2).fit(matrix).push_to_hub("alice/space-mf", token="hf_alice_token")
    ids, values = _measured(matrix, task=5)
    table = {"headers": ["example_id", "value"], "data": [[i, v] for i, v in zip(ids, values)]}
    summary, *_, csv_path = client.predict("alice/space-matrix", "alice/space-mf", table, None, 5, api_name="/predict")
    expected = MFPredictor(rank=2).fit(matrix).predict(ids, values)
    np.testing.assert_allclose(_read_csv(csv_path)[1], expected, rtol=1e-5, atol=1e-6)
    assert "MFPredictor from 30 measured examples" in summary


# -- endpoints, bad input: readable errors, and the server keeps serving -------------------------


@pytest.mark.parametrize(
    "rows, message",
    [
        ([["ex/1", "0.1"]] * 1, "Measure at least 5 upstream examples"),
        ([["ex/1", "high"], ["ex/2", 0.1]], "value 'high' is not a number"),
        ([["nope/1", 0.1], ["ex/2", 0.1]], "not in this matrix, e.g. ['nope/1']"),
        ([["ex/1", 0.1], ["ex/1", 0.2]], "measured twice"),
        ([["ex/1", "nan"]], "must be a finite number"),
    ],
)
def test_bad_measurements_are_explained(space, rows, message):
    table = {"headers": ["example_id", "value"], "data": rows}
    with pytest.raises(Exception) as error:
        space["client"].predict(space["folder"], "", table, None, 5, api_name="/predict")
    assert message in str(error.value)


def test_values_the_predictor_refuses_and_huge_ids_are_explained_in_a_few_hundred_characters(space):
    good = [[f"ex/{j}", 0.01 * j] for j in range(1, 8)]
    cases = [
        ({"headers": ["example_id", "value"], "data": [*good, ["ex/9", 1e300]]}, 5, "|value| <= 1e+06"),
        ({"headers": ["example_id", "value"], "data": [*good, ["x" * 1_000_000, 0.1]]}, 5, "not in this matrix"),
        ({"headers": ["example_id", "value"], "data": good}, "abc", "Top-N must be a whole number from 1 to"),
        ({"headers": ["example_id", "value"], "data": good}, 2.5, "got '2.5'"),
    ]
    for table, top_n, message in cases:
        with pytest.raises(Exception) as error:
            space["client"].predict(space["folder"], "", table, None, top_n, api_name="/predict")
        assert message in str(error.value) and "the app has raised an exception" not in str(error.value)
        assert len(str(error.value)) < 1000


def test_a_predictor_fitted_on_fewer_tasks_than_the_matrix_still_answers(space, tmp_path):
    """The task map then places the new task with MF fitted on the matrix (the predictor has no position for
    every task); the prediction is the given predictor's."""
    from hf_forgetting import explorer

    matrix = space["matrix"]
    MFPredictor(rank=2).fit(ForgettingMatrix(matrix.values[:4], matrix.task_ids[:4], matrix.example_ids)).save_pretrained(tmp_path / "p")
    cache = explorer.WorkspaceCache(folders={"m": Path(space["path"]), "p": tmp_path / "p"})
    workspace = cache.get("m", "p")
    ids, values = _measured(matrix)
    prediction = explorer.predict_from_measurements(workspace, ids, values)
    frame = explorer.task_map_frame(workspace, prediction)
    assert len(frame) == len(matrix.task_ids) + 1 and workspace.map_model() is not workspace.predictor
    np.testing.assert_allclose(prediction.values, workspace.predictor.predict(ids, values), atol=1e-6)


def test_bad_csv_and_bad_sources_are_explained_and_the_server_keeps_serving(space, tmp_path, hub, capfd):
    client = space["client"]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,forgetting\nex/1,0.1\n")
    cases = [
        ((space["folder"], "", EMPTY_TABLE, handle_file(str(wrong)), 5), "expected the columns example_id,forgetting"),
        (("alice/no-such-matrix", "", EMPTY_TABLE, None, 5), "Could not load the matrix 'alice/no-such-matrix' from the Hub"),
        (("/no/such/folder", "", EMPTY_TABLE, None, 5), "is not a Hub dataset repo id ('user/name') nor a folder this Space serves"),
        ((space["folder"], "alice/no-such-predictor", EMPTY_TABLE, None, 5), "Could not load the predictor"),
    ]
    for arguments, message in cases:
        with pytest.raises(Exception) as error:
            client.predict(*arguments, api_name="/predict")
        assert message in str(error.value)
    assert "10 tasks" in client.predict(space["folder"], "", api_name="/open_matrix")
    log = capfd.readouterr().err
    assert log.count("forgetting-explorer: input refused: ") == len(cases) and "Traceback" not in log  # a line each


def test_the_space_opens_no_path_of_the_server_and_answers_every_path_alike(space, tmp_path):
    """Only "embedded", the operator's named folders and Hub repo ids open; an existing matrix or predictor
    folder given by path gets the same answer as a missing one (no file-system oracle)."""
    client, matrix = space["client"], space["matrix"]
    MFPredictor(rank=2).fit(matrix).save_pretrained(tmp_path / "predictor")
    existing = [space["path"], str(Path(space["path"]).parent), "/etc/passwd", str(tmp_path / "predictor"), "../../etc"]
    missing = ["/no/such/matrix", str(tmp_path / "nothing"), "../../nothing"]
    answers = {}
    for source in existing + missing:
        for arguments in ((source, ""), (space["folder"], source)):  # as the matrix, and as the predictor
            with pytest.raises(Exception) as error:
                client.predict(*arguments, api_name="/open_matrix")
            answers[(source, arguments[1] == source)] = str(error.value).replace(repr(source), "<source>")
    assert len(set(answers.values())) == 1, answers
    assert "is not a Hub dataset repo id ('user/name') nor a folder this Space serves (served here: synthetic)" in answers[("/etc/passwd", False)]


def test_every_input_has_a_size_cap_and_leaves_no_file_behind(space, tmp_path):
    from hf_forgetting import explorer

    client = space["client"]
    many = {"headers": ["example_id", "value"], "data": [[f"ex/{j % 120}", 0.1] for j in range(20_000)]}
    with pytest.raises(Exception, match="20000 measurements for a matrix of 120 upstream examples"):
        client.predict(space["folder"], "", many, None, 5, api_name="/predict")
    duplicates = {"headers": ["example_id", "value"], "data": [[f"ex/{j}", 0.1] for j in range(119)] + [["ex/3", 0.2]]}
    with pytest.raises(Exception, match=r"measured twice: \['ex/3'\]"):
        client.predict(space["folder"], "", duplicates, None, 5, api_name="/predict")
    big = tmp_path / "big.csv"
    big.write_text("example_id,forgetting\n" + "ex/1,0.1\n" * (explorer.MAX_CSV_BYTES // 8))
    with pytest.raises(Exception, match="larger than 5 MB"):
        client.predict(space["folder"], "", EMPTY_TABLE, handle_file(str(big)), 5, api_name="/predict")
    with pytest.raises(Exception, match="at most 64 inputs"):
        client.predict(space["folder"], "", "\n".join(["a question?"] * 65), 5, api_name="/predict_zero_shot")
    # the CSV answers: one per distinct prediction, in one folder the app owns, at most `keep` kept
    files = space["module"].CSV_FILES
    table = {"headers": ["example_id", "value"], "data": [[f"ex/{j}", 0.01 * j] for j in range(10)]}
    before = {p.parent.name for p in files.folder.glob("*/*.csv")}
    for _ in range(3):  # the same query three times: one file
        client.predict(space["folder"], "", table, None, 5, api_name="/predict")
    assert len({p.parent.name for p in files.folder.glob("*/*.csv")} - before) <= 1
    small = explorer.CsvFiles(tmp_path / "answers", keep=3)
    paths = [small.write(f"example_id,forgetting\nex/1,{i}\n") for i in range(5)]
    assert sorted(p.exists() for p in paths) == [False, False, True, True, True]
    assert len(list((tmp_path / "answers").iterdir())) == 3


def test_the_csv_answers_stay_within_their_disk_budget(tmp_path):
    from hf_forgetting import explorer

    files = explorer.CsvFiles(tmp_path / "answers", keep=100, max_bytes=10_000)
    wide = [files.write("example_id,forgetting\n" + f"ex/{i},0.{i}\n" * 400) for i in range(6)]  # ~3.6 kB each
    kept = [path for path in wide if path.exists()]
    assert kept == wide[-2:]  # the newest that fit in 10 kB
    assert sum(path.stat().st_size for path in (tmp_path / "answers").glob("*/*.csv")) <= 10_000
    huge = files.write("example_id,forgetting\n" + "ex/1,0.5\n" * 5000)  # over the budget alone: still handed out
    assert huge.exists() and [p for p in (tmp_path / "answers").glob("*/*.csv")] == [huge]
    with pytest.raises(ValueError, match="max_bytes >= 1"):
        explorer.CsvFiles(tmp_path / "other", max_bytes=0)


def test_the_workspace_cache_holds_matrices_within_its_memory_budget(tmp_path):
    """Synthetic matrices (unit test of the cache): three of 2 x 1000 float32 (8 kB each) and a budget of 20 kB."""
    from hf_forgetting import explorer

    rng = np.random.default_rng(0)
    folders = {}
    for name in ("a", "b", "c"):
        ForgettingMatrix(rng.normal(size=(2, 1000)).astype(np.float32), task_ids=["t0", "t1"],
                         example_ids=[f"ex/{j}" for j in range(1000)]).save(tmp_path / name)
        folders[name] = tmp_path / name
    cache = explorer.WorkspaceCache(size=10, folders=folders, max_bytes=20_000)
    for name in ("a", "b", "c"):
        cache.get(name)
        assert cache.held_bytes <= 20_000
    assert cache.get("c") is cache.get("c") and cache.held_bytes == 16_000  # "a" was let go, "b" and "c" are held
    alone = explorer.WorkspaceCache(folders=folders, max_bytes=1)
    assert alone.get("a").matrix.shape == (2, 1000) and alone.held_bytes == 8_000  # the newest is always kept


def test_unreachable_hub_is_explained(space, monkeypatch):
    import huggingface_hub.constants

    closed_port = _free_port()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    with pytest.raises(Exception) as error:
        space["client"].predict("alice/anything", "", api_name="/open_matrix")
    assert "Could not load the matrix 'alice/anything' from the Hub" in str(error.value)


def test_twenty_concurrent_queries_are_answered_correctly(space):
    matrix, url = space["matrix"], space["url"]
    requests = [_measured(matrix, task=i % matrix.shape[0]) for i in range(20)]

    def query(request):
        ids, values = request
        table = {"headers": ["example_id", "value"], "data": [[i, v] for i, v in zip(ids, values)]}
        started = time.perf_counter()
        *_, csv_path = Client(url, verbose=False).predict(space["folder"], "", table, None, 5, api_name="/predict")
        return _read_csv(csv_path)[1], time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(query, requests))
    for (ids, values), (predicted, _) in zip(requests, answers):
        np.testing.assert_allclose(predicted, _reference_row(matrix, ids, values), rtol=1e-5, atol=1e-6)
    latencies = sorted(seconds for _, seconds in answers)
    print(f"20 concurrent /predict: p50 {np.percentile(latencies, 50):.2f} s, p95 {np.percentile(latencies, 95):.2f} s")


def test_table_from_the_ui_with_blank_rows(space):
    """The UI hands over a DataFrame whose untouched rows are empty strings or NaN."""
    import pandas as pd

    module = space["module"]
    ids, values = _measured(space["matrix"], k=6)
    frame = pd.DataFrame({"example_id": [*ids, "", None], "value": [*values, np.nan, np.nan]})
    workspace = module.WORKSPACES.get(space["folder"], "")
    parsed_ids, parsed_values = module.explorer.parse_measurements(module._table_rows(frame), workspace)
    assert parsed_ids == ids and np.allclose(parsed_values, values)
    with pytest.raises(module.ExplorerInputError, match="needs the columns example_id and value"):
        module._table_rows(pd.DataFrame({"id": ids, "v": values}))


# -- the embedded default: real texts, real encoder, real browser ---------------------------------


@pytest.mark.integration
@pytest.mark.needs_source("bigbench")
def test_embedded_default_shows_texts_and_zero_shot_estimate(space):
    client = space["client"]
    table, note = client.predict("embedded", "", api_name="/example_measurements")
    assert len(table["data"]) == 30 and "qa_wikidata**, a task already in the matrix" in note
    summary, top, *_ = client.predict("embedded", "", table, None, 5, api_name="/predict")
    assert all(len(row[4]) > 20 for row in top["data"]), "upstream texts are shown"
    assert all(row[3].startswith("[") for row in top["data"]), "each value's 95% interval is shown"
    summary, top, *_ = client.predict(
        "embedded", "", "Who wrote Emma?\nWhat is the capital of France?", 5, api_name="/predict_zero_shot"
    )
    assert "zero-shot" in summary and "Most similar known tasks" in summary
    with pytest.raises(Exception) as error:
        client.predict("embedded", "", "  \n ", 5, api_name="/predict_zero_shot")
    assert "Give a few example inputs" in str(error.value)


@pytest.mark.integration
def test_in_a_real_browser(space, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(space["url"])
        page.get_by_text("The matrix and its low-rank report").click()
        page.locator("#matrix-info").get_by_text("12 tasks x 200 upstream examples").wait_for(timeout=60_000)
        page.get_by_role("button", name="Fill in an example").click()
        page.get_by_text("austen/mansfieldpark/1103").first.wait_for(timeout=30_000)
        page.locator("#fill-note").get_by_text("a task already in the matrix").wait_for(timeout=30_000)
        page.get_by_role("button", name="Predict forgetting").click()
        page.locator("#summary").get_by_text("predicted forgotten").wait_for(timeout=60_000)
        for plot in ("#histogram", "#task-map"):  # drawn by the browser (vega), with their legends
            page.locator(f"{plot} svg.marks, {plot} canvas").first.wait_for(timeout=30_000)
        legends = [page.locator(plot).get_by_text(entry).count() for plot, entry in
                   (("#histogram", "new task (predicted)"), ("#task-map", "known task"))]
        first_row = page.locator('#top-table [role="row"][data-index="0"] [role="gridcell"]')
        cells = [text.strip() for text in first_row.all_inner_texts()]
        header_lines = page.locator("#top-table thead th").evaluate_all(  # line boxes of each header's text
            "ths => ths.map(th => { const w = document.createTreeWalker(th, NodeFilter.SHOW_TEXT); let n, most = 0;"
            " while ((n = w.nextNode())) { if (!n.textContent.trim()) continue; const r = document.createRange();"
            " r.selectNodeContents(n); most = Math.max(most, new Set([...r.getClientRects()].map(x => Math.round(x.top))).size); }"
            " return most; })")
        summary_text = page.locator("#summary").inner_text()
        screenshot = tmp_path / "forgetting-explorer.png"
        page.screenshot(path=str(screenshot), full_page=True)
        page.get_by_role("tab", name="Zero-shot from task inputs (weaker)").click()  # a new input: the old answer goes
        page.locator("#summary").get_by_text("predicted forgotten").wait_for(state="detached", timeout=30_000)
        browser.close()
    assert cells[0] == "1" and cells[1].count("/") >= 2, f"rank 1 and an example id in the first row: {cells}"
    assert float(cells[2]) > 0, f"a positive prediction: {cells}"
    if source_refusal("bigbench") is None:
        assert len(cells[4]) > 20, f"the example's text: {cells}"
    else:  # the passages' texts cannot be fetched: the page says so instead of showing them
        assert cells[4] == "" and "Upstream texts unavailable" in summary_text, (cells, summary_text[-400:])
    assert cells[3].startswith("[") and cells[3].count(",") == 1, f"the prediction's 95% interval: {cells}"
    assert all(legends), f"legends of both plots: {legends}"
    assert header_lines == [1, 1, 1, 1, 1], f"every header on one line: {header_lines}"
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("SPACE_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["SPACE_SCREENSHOT"])
