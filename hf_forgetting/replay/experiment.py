"""The replay experiment of PAPER.md section 4 on a collected forgetting matrix.

For each held-out task: fit a predictor on the other tasks' rows, reveal k entries of the task's
true row, complete it, and fine-tune the base model on the task (same settings as the collection)
with no replay, random replay, predicted replay and ground-truth replay. Every run is evaluated on
the same held-out upstream examples, which are never replayed: forgetting = NLL after - NLL before.
Task performance is the mean completion NLL on task examples not trained on. Each finished run is
written atomically to ``<output_dir>/runs/``; a rerun skips them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from accelerate import PartialState
from tqdm.auto import tqdm

from ..completion import predictor_class
from ..completion.evaluation import default_test_tasks, split_rows
from ..data.arguments import TaskArguments, from_settings
from ..data.matrix_sources import collect_settings, load_matrix_upstream
from ..files import atomic_write_text
from ..format.collect_rows import task_filename
from ..matrix import ForgettingMatrix
from ..modeling import load_model_and_tokenizer, resolve_model_path
from ..scoring import score_examples
from ..training_data import prepare_training_rows
from .trainer import ReplayTrainer, heldout_rows

METHODS = {"none": "none", "random": "random", "predicted": "predicted", "ground_truth": "ground_truth"}


@dataclass
class ReplayExperimentArguments:
    matrix: str = field(metadata={"help": "Folder of the collected ForgettingMatrix (its metadata names the data)."})
    test_tasks: list[str] | None = field(default=None, metadata={"help": "Held-out tasks (default: a seeded choice of num_test_tasks)."})
    num_test_tasks: int = field(default=6, metadata={"help": "How many tasks to hold out when test_tasks is not given."})
    methods: list[str] = field(default_factory=lambda: list(METHODS), metadata={"help": "none, random, predicted, ground_truth."})
    predictor: str = field(default="mf", metadata={"help": "Predictor fitted on the training rows."})
    known_entries: int = field(default=30, metadata={"help": "Revealed entries of each held-out task's row (k)."})
    task_eval_examples: int = field(default=64, metadata={"help": "Unseen task examples for task performance."})

    def __post_init__(self):
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"Unknown method(s) {unknown}; choose from {list(METHODS)}")


def run_replay_experiment(args: ReplayExperimentArguments, replay_args, model_args) -> dict:
    """Run (or finish) the experiment; returns ``{"runs": [...], "summary": {...}}`` and writes it as JSON."""
    state = PartialState()
    matrix = ForgettingMatrix.load(args.matrix)
    settings = collect_settings(matrix)
    output_dir = Path(replay_args.output_dir)
    with state.main_process_first():
        upstream = load_matrix_upstream(matrix)
        if model_args.model_name_or_path is None:
            model_args = dataclasses.replace(model_args, model_name_or_path=matrix.metadata["base_model"])
        resolve_model_path(model_args.model_name_or_path)  # converts the embedded model once, on the main process
    heldout = heldout_rows(len(upstream), replay_args.replay_heldout_size, replay_args.replay_seed)
    heldout_set = upstream.select(heldout)
    score_length = settings["score_max_length"]
    test_tasks = args.test_tasks or default_test_tasks(matrix, args.num_test_tasks / len(matrix.task_ids))

    def load():
        return load_model_and_tokenizer(model_args)

    base_path = output_dir / "heldout_base_scores.json"
    if base_path.exists():
        base = np.array(json.loads(base_path.read_text())["scores"])
    else:
        model, tokenizer = load()
        base = score_examples(model, tokenizer, heldout_set, max_length=score_length)
        if state.is_main_process:
            atomic_write_text(base_path, json.dumps({"example_ids": list(heldout_set["example_id"]), "scores": base.tolist()}))

    runs = []
    jobs = [(task, method) for task in test_tasks for method in args.methods]
    for task, method in tqdm(jobs, desc="replay runs", disable=not state.is_main_process):
        path = output_dir / "runs" / f"{task_filename(task).removesuffix('.parquet')}-{method}.json"
        if path.exists():
            runs.append(json.loads(path.read_text()))
            continue
        train, test = split_rows(matrix, [task])
        truth = test.values[0]
        scores = None
        if method == "ground_truth":
            scores = truth
        elif method == "predicted":
            rng = np.random.default_rng([replay_args.replay_seed, matrix.task_ids.index(task)])
            known = rng.choice(len(truth), size=args.known_entries, replace=False)
            predictor = predictor_class(args.predictor)().fit(train)
            scores = predictor.predict([matrix.example_ids[j] for j in known], truth[known])
        task_data = from_settings(TaskArguments, settings).load_task(task, max_examples=None)
        n_train = settings["max_train_examples"] or len(task_data)
        train_data = task_data.select(range(min(n_train, len(task_data))))
        eval_data = task_data.select(range(len(train_data), min(len(task_data), len(train_data) + args.task_eval_examples)))
        model, tokenizer = load()
        prepared = prepare_training_rows(train_data, tokenizer, replay_args.max_length)
        prepared.check(task, replay_args.max_length, settings.get("min_train_fraction", 0.9), settings.get("allow_hollow_rows", False))
        run_dir = output_dir / "checkpoints" / f"{task_filename(task).removesuffix('.parquet')}-{method}"
        run_args = dataclasses.replace(replay_args, output_dir=str(run_dir), replay_strategy=METHODS[method], save_strategy="no")
        trainer = ReplayTrainer(
            model=model, args=run_args, train_dataset=prepared.dataset,
            processing_class=tokenizer, replay_dataset=upstream if method != "none" else None, replay_scores=scores,
        )
        if method != "none" and trainer.heldout_ids != list(heldout_set["example_id"]):
            raise RuntimeError("The trainer's held-out split differs from the experiment's")
        result = trainer.train()
        tuned = trainer.accelerator.unwrap_model(trainer.model)
        after = score_examples(tuned, tokenizer, heldout_set, max_length=score_length, show_progress=False)
        task_nll = score_examples(tuned, tokenizer, eval_data, max_length=replay_args.max_length, show_progress=False)
        replayed = [] if trainer.replay_sampler is None else trainer.replay_ids
        run = {
            "task": task, "method": method, "train_loss": float(result.training_loss),
            "heldout_forgetting": (after - base).tolist(), "mean_heldout_forgetting": float(np.mean(after - base)),
            "task_eval_nll": float(np.nanmean(task_nll)), "replay_pool": len(replayed), **prepared.counts(),
        }
        if state.is_main_process:
            atomic_write_text(path, json.dumps(run))
            shutil.rmtree(run_dir, ignore_errors=True)
        runs.append(run)
    summary = summarize_runs(runs)
    if state.is_main_process:
        atomic_write_text(output_dir / "replay_experiment.json", json.dumps({"runs": runs, "summary": summary}, indent=1))
        atomic_write_text(output_dir / "replay_experiment.md", summary_markdown(summary))
        print(summary_markdown(summary))
    return {"runs": runs, "summary": summary}


def summarize_runs(runs: list[dict]) -> dict:
    """Per method: mean held-out forgetting and task NLL; paired tests of predicted / ground truth vs random."""
    from scipy import stats

    by = {(r["task"], r["method"]): r for r in runs}
    tasks = sorted({r["task"] for r in runs})
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    table = {
        m: {
            "mean_heldout_forgetting": float(np.mean([by[t, m]["mean_heldout_forgetting"] for t in tasks if (t, m) in by])),
            "task_eval_nll": float(np.mean([by[t, m]["task_eval_nll"] for t in tasks if (t, m) in by])),
            "per_task": {t: by[t, m]["mean_heldout_forgetting"] for t in tasks if (t, m) in by},
        }
        for m in methods
    }
    tests = {}
    for targeted in ("predicted", "ground_truth"):
        pairs = [t for t in tasks if (t, targeted) in by and (t, "random") in by]
        if len(pairs) < 2:
            continue
        a = np.array([by[t, targeted]["mean_heldout_forgetting"] for t in pairs])
        b = np.array([by[t, "random"]["mean_heldout_forgetting"] for t in pairs])
        examples_a = np.concatenate([by[t, targeted]["heldout_forgetting"] for t in pairs])
        examples_b = np.concatenate([by[t, "random"]["heldout_forgetting"] for t in pairs])
        tests[f"{targeted}_vs_random"] = {
            "tasks": len(pairs),
            "mean_difference": float(np.mean(a - b)),
            "tasks_improved": int(np.sum(a < b)),
            "paired_t_p": float(stats.ttest_rel(a, b).pvalue),
            "wilcoxon_p": float(stats.wilcoxon(a, b).pvalue) if np.any(a != b) else 1.0,
            "example_level_wilcoxon_p": float(stats.wilcoxon(examples_a, examples_b).pvalue)
            if np.any(examples_a != examples_b) else 1.0,
        }
    return {"tasks": tasks, "methods": table, "tests": tests}


def summary_markdown(summary: dict) -> str:
    lines = [f"Held-out tasks ({len(summary['tasks'])}): {', '.join(summary['tasks'])}", "",
             "| method | mean forgetting of never-replayed upstream examples | task eval NLL |", "| --- | ---: | ---: |"]
    for method, row in summary["methods"].items():
        lines.append(f"| {method} | {row['mean_heldout_forgetting']:+.4f} | {row['task_eval_nll']:.4f} |")
    for name, test in summary["tests"].items():
        lines.append(
            f"\n{name}: mean difference {test['mean_difference']:+.4f} over {test['tasks']} tasks "
            f"({test['tasks_improved']} improved); paired t-test p = {test['paired_t_p']:.3g}, "
            f"Wilcoxon p = {test['wilcoxon_p']:.3g}; example-level Wilcoxon p = {test['example_level_wilcoxon_p']:.3g}"
        )
    return "\n".join(lines) + "\n"
