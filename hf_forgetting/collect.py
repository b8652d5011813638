"""Collect a forgetting matrix: fine-tune the base model separately on each task and score upstream examples.

For each task a fresh copy of the base model is fine-tuned with TRL's ``SFTTrainer`` (as
``LabelPositionsSFTTrainer``, which skips the LM head on prompt positions on a CPU; full
fine-tuning, or LoRA through ``peft_config``), the upstream examples are scored before (once) and
after, and the task's row is written atomically to ``<output_dir>/rows/``. Running again with the
same configuration skips every finished row, so a killed run loses at most the task in progress;
running with a different configuration into the same folder is refused. Once every task's row is
there, the rows are assembled into ``<output_dir>/matrix/`` with a summary (figures: `hf-forgetting analyze`).

Scale-out: a job collects a subset of the tasks (``task_indices="3,7-9"`` or ``array_index`` of
``array_size``) into a shared ``output_dir`` (the job that finds every row present writes the
matrix; any later run without a subset merges too), and/or pushes its rows to a Hub dataset repo
(``push_rows_to_hub``), where each job's rows are one contribution and ``from_hub`` merges them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import trl
from accelerate import PartialState
from tqdm.auto import tqdm

from .collect_summary import monitor_summary, print_outputs, summarize
from .completion.evaluation import row_agreement
from .data import EMBEDDED_TASKS
from .data.arguments import MonitorArguments, TaskArguments, UpstreamArguments
from .data.matrix_sources import example_text
from .files import atomic_write_parquet, atomic_write_text
from .format.collect_rows import COLLECTED_AT_FORMAT, read_collect_row, task_filename, write_collect_row
from .matrix import METRICS, ForgettingMatrix, example_ids_sha256
from .modeling import EMBEDDED_MODEL, load_model_and_tokenizer, peft_config, resolve_model_path
from .monitor import ForgettingMonitorCallback
from .run_settings import (
    check_training_settings,
    in_native_precision,
    model_settings,
    result_settings,
    settings_differences,
    settings_fingerprint,
    unrecorded_settings,
)
from .scoring import SCORE_DTYPES, cast_for_scoring, exact_match_scores, score_examples
from .training_data import PREPARATION, TrainingRows, prepare_training_rows
from .training_guard import ParameterUpdateGuard


@dataclass
class CollectArguments(UpstreamArguments, TaskArguments, MonitorArguments):
    """What to measure: the upstream examples and tasks (the shared fields of `UpstreamArguments` and
    `TaskArguments`), how examples are scored, and which of the tasks this job collects.

    Args:
        tasks (`list[str]`, *optional*, defaults to the 14 embedded tasks):
            Fine-tuning tasks (rows): embedded task names, local files or Hub dataset ids.
        metric (`str`, *optional*, defaults to `"nll_increase"`):
            `"nll_increase"` (mean token NLL after - before) or `"em_drop"` (exact match, binary).
        score_max_length (`int`, *optional*, defaults to `128`):
            Upstream examples are scored on at most this many tokens.
        score_batch_size (`int`, *optional*, defaults to `16`):
            Examples per forward pass when scoring.
        score_dtype (`str`, *optional*, defaults to `"float32"`):
            Precision the base and tuned models are scored in: `"float32"` or `"bfloat16"` (bf16 weights;
            see benchmarks/bench_precision.py for its error on forgetting against the seed noise).
        em_max_new_tokens (`int`, *optional*, defaults to `32`):
            Generation length for the `"em_drop"` metric.
        task_indices (`str`, *optional*):
            Collect only these tasks: 0-based indices into `tasks`, e.g. `"3,7-9"`.
        array_index (`int`, *optional*):
            Job index in a job array (e.g. `$SLURM_ARRAY_TASK_ID`): `tasks[index::array_size]`.
        array_size (`int`, *optional*):
            Number of jobs in the array.
        push_rows_to_hub (`str`, *optional*):
            Also push this job's rows to a Hub dataset repo, as one contribution.
    """

    tasks: list[str] = field(
        default_factory=lambda: list(EMBEDDED_TASKS),
        metadata={"help": "Fine-tuning tasks (rows): embedded task names or Hub dataset ids."},
    )
    metric: str = field(
        default="nll_increase",
        metadata={"help": "'nll_increase' (mean token NLL after - before) or 'em_drop' (exact match, binary)."},
    )
    score_max_length: int | None = field(default=128, metadata={"help": "Upstream examples are scored on at most this many tokens."})
    score_batch_size: int = field(default=16, metadata={"help": "Examples per forward pass when scoring."})
    score_dtype: str = field(
        default="float32", metadata={"help": "Precision of scoring: float32 or bfloat16 (bf16 weights).", "choices": list(SCORE_DTYPES)}
    )
    em_max_new_tokens: int = field(default=32, metadata={"help": "Generation length for the 'em_drop' metric."})
    # Scale-out: which of `tasks` this job collects, and where its rows go. Not part of the settings
    # fingerprint, so that jobs with different subsets share one output_dir.
    task_indices: str | None = field(
        default=None, metadata={"help": "Collect only these tasks: 0-based indices into `tasks`, e.g. '3,7-9'."}
    )
    array_index: int | None = field(
        default=None, metadata={"help": "Job index in a job array (e.g. $SLURM_ARRAY_TASK_ID): tasks[index::array_size]."}
    )
    array_size: int | None = field(default=None, metadata={"help": "Number of jobs in the array."})
    push_rows_to_hub: str | None = field(
        default=None, metadata={"help": "Also push this job's rows to a Hub dataset repo (user/name), as one contribution."}
    )

    def __post_init__(self):
        UpstreamArguments.__post_init__(self)
        TaskArguments.__post_init__(self)
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}; got {self.metric!r}")
        if not self.tasks:
            raise ValueError("tasks must name at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be unique; got {self.tasks}")
        if self.score_max_length is not None and self.score_max_length < 1:
            raise ValueError(f"score_max_length must be positive or None; got {self.score_max_length}")
        if self.score_batch_size < 1:
            raise ValueError(f"score_batch_size must be positive; got {self.score_batch_size}")
        if self.score_dtype not in SCORE_DTYPES:
            raise ValueError(f"score_dtype must be one of {SCORE_DTYPES}; got {self.score_dtype!r}")
        if self.task_indices is not None and self.array_index is not None:
            raise ValueError("Give task_indices or array_index, not both")
        if (self.array_index is None) != (self.array_size is None):
            raise ValueError("array_index and array_size go together")
        if self.array_size is not None and not 0 <= self.array_index < self.array_size:
            raise ValueError(f"array_index must be in 0..array_size-1; got {self.array_index} of {self.array_size}")
        self.selected_tasks()  # validates task_indices

    def selected_tasks(self) -> list[str]:
        """The tasks this job collects (all of them unless a subset is chosen)."""
        if self.task_indices is not None:
            return [self.tasks[i] for i in parse_index_ranges(self.task_indices, len(self.tasks))]
        if self.array_index is not None:
            return self.tasks[self.array_index :: self.array_size]
        return list(self.tasks)


# Not part of the settings fingerprint: which tasks this job collects and where its rows go (jobs with
# different subsets share one output_dir), whether a hollow task may be collected (its row says so),
# and the forgetting monitor (it only reads the model: the rows are the same with or without it).
SCALE_OUT_FIELDS = ("task_indices", "array_index", "array_size", "push_rows_to_hub", "allow_hollow_rows",
                    *(f.name for f in dataclasses.fields(MonitorArguments)))


def parse_index_ranges(text: str, count: int) -> list[int]:
    """``"3,7-9"`` -> ``[3, 7, 8, 9]``: sorted, unique, each in ``0..count-1``."""
    indices = set()
    for part in str(text).replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"task_indices {text!r}: {part!r} is not an index or a range like '7-9'")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if first > last or last >= count:
            raise ValueError(f"task_indices {text!r}: {part!r} is outside 0..{count - 1}")
        indices.update(range(first, last + 1))
    return sorted(indices)


# Model settings that change nothing a row holds (where and how the weights are read).
def run_settings(args: CollectArguments, training_args, model_args) -> dict:
    """Everything that determines the matrix's values, as JSON-able provenance."""
    collect = {key: value for key, value in dataclasses.asdict(args).items() if key not in SCALE_OUT_FIELDS}
    return {
        "collect": collect,
        # every setting but the few that change no row (output places, logging, saving, progress): a
        # resumed collection must match them all
        "training": result_settings(training_args),
        "model": model_settings(model_args),
        "world_size": PartialState().num_processes,
        "preparation": PREPARATION,
    }


def _check_process_group(state: PartialState) -> None:
    """Refuse to run when a launcher started several processes that did not form one group: each
    would silently collect every row by itself (accelerate's MULTI_CPU without mpirun, or torchrun
    on a machine without GPUs when the recipe does not set use_cpu)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and state.num_processes != launched:
        raise ValueError(
            f"{launched} processes were launched but they run as {state.num_processes} independent one(s). "
            "On CPU set `use_cpu: true` in the recipe (or --use_cpu true) with "
            "recipes/accelerate_configs/cpu_2proc.yaml; on GPUs check that CUDA is visible."
        )




class Collector:
    """Fine-tunes and scores, one task at a time, into ``output_dir`` (see the module docstring)."""

    def __init__(self, args: CollectArguments, training_args, model_args):
        check_training_settings(training_args)
        training_args = in_native_precision(training_args)
        self.args, self.training_args, self.model_args = args, training_args, model_args
        self.output_dir = Path(training_args.output_dir)
        self.rows_dir = self.output_dir / "rows"
        self.state = PartialState()
        _check_process_group(self.state)
        if model_args.model_name_or_path is None:
            model_args.model_name_or_path = EMBEDDED_MODEL
        with self.state.main_process_first():  # downloads and conversions happen once, on the main process
            resolve_model_path(model_args.model_name_or_path)
            self.upstream = args.load_upstream()
        self.example_ids = list(self.upstream["example_id"])
        self.settings = run_settings(args, training_args, model_args)
        self.settings["example_ids_sha256"] = example_ids_sha256(self.example_ids)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> ForgettingMatrix:
        """Collect the selected tasks' missing rows; returns the whole matrix once every row is
        there (and writes it), else the matrix of this job's rows."""
        self._claim_output_dir()
        selected = self.args.selected_tasks()
        pending = [task for task in selected if self._read_row(task) is None]
        done = len(selected) - len(pending)
        if done and self.state.is_main_process:
            print(f"Resuming: {done} of {len(selected)} task rows already in {self.rows_dir}")
        if pending:
            prepared = self._prepare_tasks(pending)  # every task checked before any is trained
            before = self._base_scores()
            progress = tqdm(pending, desc="tasks", disable=not self.state.is_main_process)
            for task in progress:
                progress.set_postfix_str(f"{task}: {prepared[task].kept}/{prepared[task].requested} examples")
                self._collect_row(task, prepared[task], before)
        if self.args.push_rows_to_hub and self.state.is_main_process:
            self._push_rows(selected)
        self.state.wait_for_everyone()
        missing = [task for task in self.args.tasks if self._read_row(task) is None]
        if missing:
            if self.state.is_main_process:
                print(
                    f"{len(self.args.tasks) - len(missing)} of {len(self.args.tasks)} task rows are in {self.rows_dir}; "
                    "the matrix is written when every job has finished (or run again without a task subset to merge)"
                )
            return self._assemble(selected)
        matrix = self._assemble(self.args.tasks)
        if self.state.is_main_process:
            self._write_outputs(matrix)
        self.state.wait_for_everyone()
        return matrix

    def _push_rows(self, tasks: list[str]) -> None:
        commit = self._assemble(tasks).push_to_hub(self.args.push_rows_to_hub)
        if commit is not None:
            print(f"Pushed {len(tasks)} task row(s) to {self.args.push_rows_to_hub}: {commit.commit_url}")

    def _claim_output_dir(self) -> None:
        """Write ``run.json`` on a new run; on a resumed run, refuse if any setting changed."""
        path = self.output_dir / "run.json"
        if path.exists():
            try:
                previous = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{path}: not valid JSON ({error}); delete it to start over") from None
            if not isinstance(previous, dict) or not all(isinstance(previous.get(k), dict) for k in ("collect", "training")):
                raise ValueError(f"{path}: not the settings file of a collection (a JSON object with collect and "
                                 "training settings); delete it to start over")
            previous, current = settings_fingerprint(previous), settings_fingerprint(self.settings)
            changed = settings_differences(previous, current)
            if changed:
                raise ValueError(
                    f"{self.output_dir} holds rows collected with other settings ({'; '.join(changed[:5])}). "
                    "Use a new output_dir, or delete the old one to start over."
                )
            unrecorded = unrecorded_settings(previous, current, {"collect": CollectArguments, "training": trl.SFTConfig,
                                                                   "model": trl.ModelConfig})
            if unrecorded and self.state.is_main_process:
                warnings.warn(f"{path} does not record {', '.join(unrecorded)}: resuming without checking them", stacklevel=2)
        elif self.state.is_main_process:
            self.rows_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(self.settings, indent=2, sort_keys=True))
        self.state.wait_for_everyone()

    # -- scoring --------------------------------------------------------------------------------

    def _score(self, model, tokenizer) -> np.ndarray:
        """Scores of the upstream examples; `model` is cast to `score_dtype` in place (it is done training)."""
        model = cast_for_scoring(model, self.args.score_dtype)
        if self.args.metric == "em_drop":
            return exact_match_scores(
                model, tokenizer, self.upstream, self.args.score_batch_size, self.args.em_max_new_tokens
            )
        return score_examples(
            model, tokenizer, self.upstream, batch_size=self.args.score_batch_size, max_length=self.args.score_max_length
        )

    def _base_scores(self) -> np.ndarray:
        path = self.output_dir / "base_scores.parquet"
        if path.exists():
            table = pq.read_table(path)
            if table.column("example_id").to_pylist() == self.example_ids:
                return table.column("score").to_numpy().astype(np.float32)
        model, tokenizer = load_model_and_tokenizer(self.model_args)
        if self.state.is_main_process:
            print(f"Scoring {len(self.example_ids)} upstream examples with the base model")
        scores = self._score(model.to(self.state.device), tokenizer)
        if self.state.is_main_process:
            table = pa.table({"example_id": self.example_ids, "score": pa.array(scores, pa.float32())})
            atomic_write_parquet(path, table)
        self.state.wait_for_everyone()
        return scores

    # -- rows -----------------------------------------------------------------------------------

    def _prepare_tasks(self, tasks: list[str]) -> dict[str, TrainingRows]:
        """Each task's training rows; a task with too few surviving examples stops the run here."""
        _, tokenizer = load_model_and_tokenizer(self.model_args, tokenizer_only=True)
        prepared = {}
        for task in tasks:
            rows = prepare_training_rows(self.args.load_task(task), tokenizer, self.training_args.max_length)
            rows.check(task, self.training_args.max_length, self.args.min_train_fraction, self.args.allow_hollow_rows)
            prepared[task] = rows
        if self.state.is_main_process:
            short = [f"{task} ({rows.kept}/{rows.requested})" for task, rows in prepared.items() if rows.kept < rows.requested]
            if short:
                print(f"Training examples kept (the others' completions alone exceed max_length): {', '.join(short)}")
        return prepared

    def _collect_row(self, task: str, prepared: TrainingRows, before: np.ndarray) -> None:
        from .label_positions_loss import LabelPositionsSFTTrainer

        started = time.time()
        model, tokenizer = load_model_and_tokenizer(self.model_args)
        run_dir = self.output_dir / "runs" / task_filename(task).removesuffix(".parquet")
        task_args = dataclasses.replace(self.training_args, output_dir=str(run_dir), save_strategy="no", push_to_hub=False)
        trainer = LabelPositionsSFTTrainer(
            model=model,
            args=task_args,
            train_dataset=prepared.dataset,
            processing_class=tokenizer,
            peft_config=peft_config(self.model_args),
            callbacks=[ParameterUpdateGuard()],
        )
        monitor = ForgettingMonitorCallback.from_arguments(self.args, self.upstream, trainer, seed=self.training_args.seed,
                                                           max_length=self.args.score_max_length)
        if monitor is not None:
            monitor.plot = False
            trainer.add_callback(monitor)
        training_started = time.time()
        result = trainer.train()
        scoring_started = time.time()
        tuned = trainer.accelerator.unwrap_model(trainer.model)
        after = self._score(tuned, tokenizer)
        scored = time.time()
        forgetting = before - after if self.args.metric == "em_drop" else after - before
        if self.args.metric == "em_drop":
            forgetting = np.where(before > 0, forgetting, np.nan)  # only examples the base model got right
        monitor_check = self._monitor_check(task, monitor, forgetting) if monitor is not None else None
        provenance = {
            "task_id": task,
            "train_loss": float(result.training_loss),
            "train_steps": int(result.global_step),
            **prepared.counts(),
            "num_train_examples": len(trainer.train_dataset),  # what the trainer iterates, after TRL's preparation too
            "hollow": prepared.is_hollow(self.args.min_train_fraction),
            "seconds": round(time.time() - started, 1),
            "train_seconds": round(scoring_started - training_started, 1),
            "score_seconds": round(scored - scoring_started, 1),
            "collected_at": time.strftime(COLLECTED_AT_FORMAT, time.gmtime()),
            "world_size": self.state.num_processes,
            **({"monitor": monitor_check} if monitor_check else {}),
        }
        if self.state.is_main_process:
            write_collect_row(self.rows_dir / task_filename(task), self.example_ids, after, forgetting, provenance)
            shutil.rmtree(run_dir, ignore_errors=True)
        self.state.wait_for_everyone()
        del trainer, model

    def _monitor_check(self, task: str, monitor, forgetting: np.ndarray) -> dict:
        """The monitor's view at the end of training against the row measured on every example: a free
        check of the predictor on each collected task. Its predicted row goes to ``monitor/<task>.parquet``."""
        last = monitor.history[-1]
        check = {"probes": len(monitor.probes), "probe_mean": last["forgetting/probe_mean"]}
        if monitor.predicted_row is None:
            return check | {"measured_mean": float(np.nanmean(forgetting))}
        example_ids, predicted, _ = monitor.predicted_row
        if self.state.is_main_process:
            monitor.write_predicted_row(self.output_dir / "monitor" / task_filename(task))
        lookup = dict(zip(example_ids, predicted))
        return check | row_agreement(forgetting, np.array([lookup.get(i, np.nan) for i in self.example_ids]))

    def _read_row(self, task: str) -> tuple[np.ndarray, dict] | None:
        """The finished row of ``task``, or None if it is missing or unusable (then it is recollected)."""
        return read_collect_row(self.rows_dir / task_filename(task), task, self.example_ids)

    # -- outputs --------------------------------------------------------------------------------

    def _assemble(self, tasks: list[str]) -> ForgettingMatrix:
        rows, provenance = [], {}
        for task in tasks:
            row = self._read_row(task)
            if row is None:
                raise RuntimeError(f"Row for task {task!r} is missing after collection")
            rows.append(row[0])
            provenance[task] = row[1]
        metadata = {
            "base_model": self.model_args.model_name_or_path,
            "base_model_revision": self.model_args.model_revision,
            "upstream_dataset": self.args.upstream_dataset,
            "settings": self.settings,
            "rows": provenance,
            "library": "hf_forgetting",
        }
        values = np.stack(rows) if rows else np.zeros((0, len(self.example_ids)), np.float32)  # a job with no tasks
        return ForgettingMatrix(values, tasks, self.example_ids, self.args.metric, metadata)

    def _write_outputs(self, matrix: ForgettingMatrix) -> None:
        matrix.save(self.output_dir / "matrix")  # its figures: `hf-forgetting analyze` (one heatmap, there)
        texts = {row["example_id"]: example_text(row) for row in self.upstream}
        summary = summarize(matrix, texts) + monitor_summary(matrix)
        atomic_write_text(self.output_dir / "summary.md", summary)
        print_outputs(self.output_dir)


def collect_forgetting_matrix(args: CollectArguments, training_args, model_args) -> ForgettingMatrix:
    """Collect (or finish collecting) the matrix described by the three config dataclasses."""
    return Collector(args, training_args, model_args).run()
