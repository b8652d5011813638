"""What the forgetting-explorer Space computes, without any UI: open a matrix and a predictor,
predict a new task's row from a few measurements or (weaker) from a few of its inputs alone, and
describe the prediction (top examples with their text; a histogram and the task among the known
ones as data frames that the browser draws, so that no figure is rendered on the request path).

Every bad input raises ``ExplorerInputError`` with a message meant for a person.

What it opens: "embedded", Hub repo ids, and the local folders its operator names
(``served_folders``); any other string is refused with the same message whether or not such a
path exists, so a client learns nothing about the server's file system. Every input has a size cap.
"""

from .csv_files import CsvFiles
from .predictions import parse_measurements, predict_from_measurements, predict_zero_shot, read_measurements_csv
from .views import (
    KNOWN_TASK,
    KNOWN_TASKS_SERIES,
    NEW_TASK,
    NEW_TASK_SERIES,
    histogram_frame,
    matrix_markdown,
    prediction_csv_text,
    summary_markdown,
    task_map_frame,
    top_forgotten,
    top_n_count,
)
from .workspace import (
    EMBEDDED_SOURCE,
    HUB_REPO_ID,
    MAX_CSV_BYTES,
    MAX_TASK_INPUT_CHARS,
    MAX_TASK_INPUTS,
    MAX_TOP_N,
    MIN_MEASURED,
    ZERO_SHOT_TEMPERATURE,
    ExplorerInputError,
    Prediction,
    Workspace,
    WorkspaceCache,
    resolve_matrix,
    resolve_predictor,
    served_folders,
)

__all__ = [
    "CsvFiles", "EMBEDDED_SOURCE", "ExplorerInputError", "HUB_REPO_ID", "KNOWN_TASK", "KNOWN_TASKS_SERIES",
    "MAX_CSV_BYTES", "MAX_TASK_INPUTS", "MAX_TASK_INPUT_CHARS", "MAX_TOP_N", "MIN_MEASURED", "NEW_TASK", "NEW_TASK_SERIES",
    "Prediction", "Workspace", "WorkspaceCache", "ZERO_SHOT_TEMPERATURE", "histogram_frame", "matrix_markdown",
    "parse_measurements", "predict_from_measurements", "predict_zero_shot", "prediction_csv_text", "read_measurements_csv",
    "resolve_matrix", "resolve_predictor", "served_folders", "summary_markdown", "task_map_frame", "top_forgotten",
    "top_n_count",
]
