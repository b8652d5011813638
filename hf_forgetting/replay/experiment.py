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
from ..stats import paired_comparison
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
            "task": task, "method": method, "seed": replay_args.replay_seed, "train_loss": float(result.training_loss),
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
    """Per arm: mean held-out forgetting and task NLL; each replay arm against random replay, run-level.

    Each (task, seed) run counts once; a task's value is the mean over its seeds (see
    :func:`hf_forgetting.stats.paired_comparison`). Primary endpoint: mean forgetting of the held-out
    examples; secondary: of the held-out examples in the top quartile of forgetting under no replay
    (per task, over its `none` runs); and the task NLL, which replay must not worsen.
    """
    by: dict[str, dict[str, list[dict]]] = {}
    for run in runs:
        by.setdefault(run["method"], {}).setdefault(run["task"], []).append(run)
    tasks = sorted({run["task"] for run in runs})
    methods = [m for m in METHODS if m in by]

    def values(method, key, examples=None):
        pick = (lambda r: float(np.mean(np.asarray(r["heldout_forgetting"])[examples[r["task"]]]))) if examples else (lambda r: r[key])
        return {task: [pick(r) for r in task_runs] for task, task_runs in by.get(method, {}).items()}

    top_quartile = {}
    for task, task_runs in by.get("none", {}).items():
        none_mean = np.mean([r["heldout_forgetting"] for r in task_runs], axis=0)
        top_quartile[task] = np.argsort(-none_mean)[: max(1, len(none_mean) // 4)]
    table = {
        m: {
            "mean_heldout_forgetting": float(np.mean([np.mean(v) for v in values(m, "mean_heldout_forgetting").values()])),
            "task_eval_nll": float(np.mean([np.mean(v) for v in values(m, "task_eval_nll").values()])),
            "per_task": {t: float(np.mean(v)) for t, v in values(m, "mean_heldout_forgetting").items()},
            "runs": sum(len(v) for v in by[m].values()),
        }
        for m in methods
    }
    tests = {}
    for arm in methods:
        if arm in ("random", "none") or "random" not in by:
            continue
        tests[f"{arm}_vs_random"] = {
            "heldout_forgetting": paired_comparison(values(arm, "mean_heldout_forgetting"), values("random", "mean_heldout_forgetting")),
            "top_quartile_forgetting": paired_comparison(values(arm, None, top_quartile), values("random", None, top_quartile))
            if top_quartile else {},
            "task_eval_nll": paired_comparison(values(arm, "task_eval_nll"), values("random", "task_eval_nll")),
        }
    return {"tasks": tasks, "methods": table, "tests": tests}


def summary_markdown(summary: dict) -> str:
    lines = [f"Held-out tasks ({len(summary['tasks'])}): {', '.join(summary['tasks'])}", "",
             "| method | runs | mean forgetting of never-replayed upstream examples | task eval NLL |",
             "| --- | ---: | ---: | ---: |"]
    for method, row in summary["methods"].items():
        lines.append(f"| {method} | {row['runs']} | {row['mean_heldout_forgetting']:+.4f} | {row['task_eval_nll']:.4f} |")
    lines += ["", "Against random replay, the task (mean over its seeds) as the unit:", "",
              "| comparison | endpoint | difference [95% CI] | paired t p | sign-flip p | tasks lower | in seed SDs | detectable (80% power) |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, endpoints in summary["tests"].items():
        for endpoint, test in endpoints.items():
            if not test or test.get("tasks", 0) == 0:
                continue
            low, high = test["ci95"]
            lines.append(
                f"| {name} | {endpoint} | {test['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}] | {test['paired_t_p']:.3g} | "
                f"{test['sign_flip_p']:.3g} | {test['tasks_lower']}/{test['tasks']} | {test['effect_in_seed_sd']:+.2f} | "
                f"{test['detectable_difference_80']:.4f} |"
            )
    return "\n".join(lines) + "\n"
