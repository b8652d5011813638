"""Forgetting explorer: which upstream examples will fine-tuning on a new task make the model forget?

Pick a shared forgetting matrix (Hub repo id or folder; the embedded SmolLM2 demo matrix by
default), describe the new task by a few measured upstream examples (best) or a few of its inputs
(a zero-shot estimate, weaker), and read the predicted forgetting of every upstream example.

    python spaces/forgetting-explorer/app.py          # http://127.0.0.1:7860

Every computation is a named API endpoint (`gradio_client.Client(url).view_api()`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import gradio as gr

from hf_forgetting import explorer
from hf_forgetting.explorer import ExplorerInputError

HERE = Path(__file__).resolve().parent
SHIPPED_MATRIX = HERE / "data" / "smollm2-135m-instruct-demo"  # the demo matrix of `make demo`: numbers and ids only
# "embedded" opens the first of these that holds a matrix: a fresh `make demo` in this checkout, else the shipped one.
EMBEDDED_DIRS = [HERE.parent.parent / "outputs" / "smollm2-135m-instruct" / "collect-demo" / "matrix", SHIPPED_MATRIX]
# Local folders served by name, as the operator lists them: FORGETTING_EXPLORER_FOLDERS="name=/path;other=/path".
# Nothing else on the server's disk can be opened (clients give "embedded", one of these names, or a Hub repo id).
SERVED_FOLDERS = explorer.served_folders(os.environ.get("FORGETTING_EXPLORER_FOLDERS", ""))
WORKSPACES = explorer.WorkspaceCache(embedded_dirs=EMBEDDED_DIRS, folders=SERVED_FOLDERS)
CSV_FILES = explorer.CsvFiles(tempfile.mkdtemp(prefix="forgetting-explorer-"))
PREDICTION_HEADERS = ["rank", "example_id", "predicted", "95% interval", "text"]
EXAMPLE_TASK_INPUTS = "What is the capital of France?\nWho wrote Pride and Prejudice?\nWhen did the Berlin Wall fall?"


def _refused(error: Exception) -> gr.Error:
    """Input the explorer cannot use: a message for the person, one line in the server log (no traceback),
    both cut to a few hundred characters (an input may be megabytes)."""
    message = " ".join(str(error).split())
    message = message if len(message) <= 300 else message[:300] + " ..."
    print(f"forgetting-explorer: input refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)



def _workspace(matrix_source: str, predictor_source: str) -> explorer.Workspace:
    try:
        return WORKSPACES.get(matrix_source, predictor_source)
    except ExplorerInputError as error:
        raise _refused(error) from None


def open_matrix(matrix_source: str, predictor_source: str) -> str:
    """The matrix, its predictor and its low-rank report (Markdown)."""
    return explorer.matrix_markdown(_workspace(matrix_source, predictor_source))


def _describe(workspace, prediction, top_n):
    csv_path = CSV_FILES.write(explorer.prediction_csv_text(workspace, prediction))
    return (
        explorer.summary_markdown(workspace, prediction),
        explorer.top_forgotten(workspace, prediction, top_n),
        explorer.histogram_frame(workspace, prediction),
        explorer.task_map_frame(workspace, prediction),
        str(csv_path),
    )


def predict(matrix_source: str, predictor_source: str, measurements, measurements_csv, top_n: float):
    """Predicted forgetting of every upstream example from a few measured ones (table or CSV upload)."""
    workspace = _workspace(matrix_source, predictor_source)
    try:
        if measurements_csv:
            rows = explorer.read_measurements_csv(measurements_csv)
        else:
            rows = _table_rows(measurements)
        ids, values = explorer.parse_measurements(rows, workspace)
        return _describe(workspace, explorer.predict_from_measurements(workspace, ids, values), explorer.top_n_count(top_n))
    except (ExplorerInputError, ValueError) as error:  # ValueError: measurements the predictor refuses
        raise _refused(error) from None


def predict_zero_shot(matrix_source: str, predictor_source: str, task_inputs: str, top_n: float, progress=gr.Progress()):  # noqa: B008 - how gradio asks for one
    """The weaker estimate from a few inputs of the new task alone (sentence-embedding similarity)."""
    workspace = _workspace(matrix_source, predictor_source)
    try:
        if not workspace.zero_shot_ready():
            progress(None, desc="Loading the sentence encoder and encoding the known tasks' inputs (first zero-shot query only)")
        prediction = explorer.predict_zero_shot(workspace, (task_inputs or "").splitlines())
        return _describe(workspace, prediction, explorer.top_n_count(top_n))
    except (ExplorerInputError, ValueError) as error:
        raise _refused(error) from None


def _table_rows(table) -> list[list]:
    """Rows of the measurement table as given by the UI (a DataFrame) or by an API client (dict or list)."""
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):
        columns = [str(c).strip() for c in table.columns]
        if columns[:2] != ["example_id", "value"]:
            raise ExplorerInputError(f"The table needs the columns example_id and value; it has {columns}")
        return table.values.tolist()
    if isinstance(table, dict):
        return table.get("data") or []
    return list(table)


def example_measurements(matrix_source: str, predictor_source: str):
    """A filled-in table to try, and a note saying where it comes from: 30 measured entries of the
    matrix's first task (a known task: its predicted row reproduces what the predictor was fitted on)."""
    workspace = _workspace(matrix_source, predictor_source)
    matrix = workspace.matrix
    row = matrix.values[0]
    columns = [j for j in range(matrix.shape[1]) if row[j] == row[j]][:: max(1, matrix.shape[1] // 30)][:30]
    note = (
        f"Filled in with {len(columns)} measured entries of **{matrix.task_ids[0]}**, a task already in the "
        "matrix, so the prediction mostly reproduces its known row. For a real prediction, enter the forgetting "
        "you measured on a new task (e.g. the measured.csv of `hf-forgetting measure`)."
    )
    return [[matrix.example_ids[j], round(float(row[j]), 5)] for j in columns], note


def clear_results():
    """Empty outputs: a new input or tab never shows the previous answer (or its error) as if it were its own."""
    return "", None, None, None, None


MATRIX_NOT_OPENED = "_Press **Open matrix** to see this matrix and its low-rank report._"


def warm_up_zero_shot(matrix_source: str = explorer.EMBEDDED_SOURCE) -> None:
    """Load the sentence encoder and encode the embedded matrix's tasks at start-up, off the request path."""
    try:
        WORKSPACES.get(matrix_source, "").task_embeddings()
        print("forgetting-explorer: zero-shot estimates ready", file=sys.stderr, flush=True)
    except Exception as error:  # noqa: BLE001 - the first zero-shot query will say what is wrong
        print(f"forgetting-explorer: zero-shot warm-up skipped: {error}", file=sys.stderr, flush=True)


def build_app() -> gr.Blocks:
    # delete_cache: gradio's copies of uploads and answers older than 10 minutes are removed every 10 minutes
    with gr.Blocks(title="Forgetting explorer", delete_cache=(600, 600)) as app:
        gr.Markdown(
            "# Forgetting explorer\nWhich upstream examples will fine-tuning on your task make the model forget? "
            "Measure the forgetting of ~30 upstream examples after fine-tuning (or give a few task inputs for a "
            "weaker zero-shot estimate) and a low-rank model of a shared forgetting matrix completes the rest."
        )
        with gr.Row():
            matrix_source = gr.Textbox(value="embedded", label="Forgetting matrix: 'embedded' or a Hub dataset repo id")
            predictor_source = gr.Textbox(value="", label="Predictor: Hub repo id (empty: MF fitted on the matrix)")
            open_button = gr.Button("Open matrix")
        with gr.Accordion("The matrix and its low-rank report", open=False):
            matrix_info = gr.Markdown(elem_id="matrix-info")
        # a dropdown that takes typed values: its text reaches explorer.top_n_count, which words any refusal
        # (a Number would fail on "abc" in gradio's own preprocessing, with its generic error)
        top_n = gr.Dropdown(choices=[10, 20, 50, 100], value=20, allow_custom_value=True, label="Top-N most forgotten to list")
        with gr.Tab("Measured examples (best)") as measured_tab:
            measurements = gr.Dataframe(
                headers=["example_id", "value"], datatype=["str", "number"], row_count=5, column_count=2,
                label="Measured forgetting: example_id, value (increase in mean token NLL)", interactive=True,
                column_widths=["75%", "25%"],
            )
            fill_note = gr.Markdown(elem_id="fill-note")
            measurements_csv = gr.File(label="...or upload a CSV with columns example_id,forgetting", file_types=[".csv"], type="filepath")
            with gr.Row():
                fill_button = gr.Button("Fill in an example")
                predict_button = gr.Button("Predict forgetting", variant="primary")
        with gr.Tab("Zero-shot from task inputs (weaker)") as zero_shot_tab:
            task_inputs = gr.Textbox(lines=6, value=EXAMPLE_TASK_INPUTS, label="A few inputs of the new task, one per line")
            zero_shot_button = gr.Button("Estimate without measurements")
        summary = gr.Markdown(elem_id="summary")
        top_table = gr.Dataframe(
            headers=PREDICTION_HEADERS, label="Most forgotten (predicted)", elem_id="top-table", wrap=True,
            column_widths=["6%", "34%", "10%", "50%"], max_height=900, interactive=False,
        )
        with gr.Row():
            histogram = gr.LinePlot(
                x="forgetting", y="upstream examples", color="series", elem_id="histogram", height=320,
                title="Predicted forgetting of every upstream example", color_title="",
                x_title="forgetting (the matrix's metric, named in the summary)", y_title="upstream examples (per row)",
                label="Histogram (shared bins)", show_label=False,
            )
            task_map = gr.ScatterPlot(
                x="task factor axis 1", y="task factor axis 2", color="kind", elem_id="task-map", height=320,
                title="The new task among the known tasks", tooltip=["task", "mean forgetting"], color_title="",
                color_map={explorer.NEW_TASK: "#d62728", explorer.KNOWN_TASK: "#7f7f7f"},
                label="Task map", show_label=False,
            )
        gr.Markdown("Left: the predicted row against the known tasks' measured rows, over the same bins. Right: every "
                    "known task as a point on the two leading axes of the tasks' factors (hover for its name and mean "
                    "forgetting); tasks close together forget the same upstream examples.")
        csv_file = gr.File(label="Predicted forgetting of every upstream example (CSV)")

        outputs = [summary, top_table, histogram, task_map, csv_file]
        sources = [matrix_source, predictor_source]
        open_button.click(open_matrix, sources, matrix_info, api_name="open_matrix")
        fill_button.click(example_measurements, sources, [measurements, fill_note], api_name="example_measurements")
        predict_button.click(predict, [*sources, measurements, measurements_csv, top_n], outputs, api_name="predict")
        zero_shot_button.click(predict_zero_shot, [*sources, task_inputs, top_n], outputs, api_name="predict_zero_shot")
        for changed in (matrix_source.change, predictor_source.change, measurements.change, measurements_csv.change,
                        task_inputs.change, measured_tab.select, zero_shot_tab.select):
            changed(clear_results, None, outputs, api_name=False, show_progress="hidden", queue=False)
        for changed in (matrix_source.change, predictor_source.change, measurements.input):
            changed(lambda: "", None, fill_note, api_name=False, show_progress="hidden", queue=False)
        for changed in (matrix_source.change, predictor_source.change):
            changed(lambda: MATRIX_NOT_OPENED, None, matrix_info, api_name=False, show_progress="hidden", queue=False)
        app.load(open_matrix, sources, matrix_info, api_name=False)
    return app


if __name__ == "__main__":
    threading.Thread(target=warm_up_zero_shot, name="zero-shot-warm-up", daemon=True).start()
    build_app().queue(default_concurrency_limit=int(os.environ.get("CONCURRENCY", "8"))).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    )
