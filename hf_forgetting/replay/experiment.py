"""The replay experiment of PAPER.md section 4 on a collected forgetting matrix.

For each test task and seed, the base model is fine-tuned on the task (the collection's settings)
once per arm, and the forgetting of upstream examples that no arm replays is measured: NLL after
minus NLL before. Task performance is the mean completion NLL on task examples not trained on.

- Every arm trains on the same task rows in the same order: the replay arms share the replay
  schedule of their seed, and the control (`none`) is that schedule with its replay rows trained on
  nothing (`replay_strategy="masked"`), so only what is replayed differs between arms.
- Test tasks follow a rule fixed before any replay result is seen (`test_task_rule`: by default the
  tasks whose matrix rows forget most); each runs under every seed in `seeds` (the seed sets the
  training order and the held-out split).
- Arms: `none`, `random`, `ground_truth` (the oracle: the task's true row), `predicted` (the row
  completed from `known_entries` entries revealed from the replay pool only, by a predictor fitted on
  the other tasks), `online` (the deployable variant, measured during the run), `mir`; a `_max`
  suffix selects the highest scores instead of sampling, a `_paper` suffix samples as the paper does
  (softmax(f / 0.1) over the raw row) whatever the recipe's temperature.
- Every finished run is a file whose name carries a hash of every setting that changes it (all
  replay, training and model settings but logging and paths, the matrix, the arm, the seed), so a
  rerun with changed settings recomputes and a killed run resumes where it stopped.
- Scale-out: jobs of an array (`array_index` of `array_size`, e.g. two one-thread processes on a
  2-core CPU, or a cluster's job array) make disjoint shares of the runs into one `output_dir`; a
  run without them then finds every run made and writes the summary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
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
from ..modeling import load_model_and_tokenizer, peft_config, resolve_model_path
from ..run_settings import model_settings, result_settings, settings_differences, settings_fingerprint
from ..scoring import SCORE_DTYPES, cast_for_scoring, score_examples
from ..training_data import prepare_training_rows
from .arms import ARM_SETTINGS, METHODS
from .experiment_cache import cached_base_scores, read_run, settings_key
from .experiment_stats import summarize_runs, summary_markdown, top_quartile
from .trainer import ReplayTrainer, heldout_rows

TEST_TASK_RULES = ("most_forgetting", "random")


@dataclass
class ReplayExperimentArguments:
    matrix: str = field(metadata={"help": "Folder of the collected ForgettingMatrix (its metadata names the data)."})
    test_tasks: list[str] | None = field(default=None, metadata={"help": "Test tasks (default: chosen by test_task_rule)."})
    num_test_tasks: int = field(default=8, metadata={"help": "How many tasks test_task_rule chooses."})
    test_task_rule: str = field(
        default="most_forgetting",
        metadata={"help": "most_forgetting (highest mean row of the matrix) or random (seeded).", "choices": list(TEST_TASK_RULES)},
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata={"help": "Training seeds: order and held-out split."})
    methods: list[str] = field(
        default_factory=lambda: ["none", "random", "ground_truth", "predicted"], metadata={"help": f"Arms: {', '.join(METHODS)}."}
    )
    predictor: str = field(default="mf", metadata={"help": "Predictor fitted on the other tasks' rows."})
    known_entries: int = field(default=30, metadata={"help": "Revealed entries of each test task's row (k), from the replay pool."})
    task_eval_examples: int = field(default=64, metadata={"help": "Unseen task examples for task performance."})
    array_index: int | None = field(
        default=None, metadata={"help": "Job index in a job array: this job makes runs[index::array_size] (and no summary)."}
    )
    array_size: int | None = field(default=None, metadata={"help": "Number of jobs in the array."})
    score_dtype: str | None = field(
        default=None,
        metadata={"help": "Precision of held-out and task scoring, the same in every arm (default: the matrix's).",
                  "choices": [None, *SCORE_DTYPES]},
    )
    allow_settings_mismatch: bool = field(
        default=False,
        metadata={"help": "Run although the fine-tuning settings differ from those the matrix was collected with "
                          "(the differences are recorded in every run file and the summary)."},
    )

    def __post_init__(self):
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"Unknown method(s) {unknown}; choose from {list(METHODS)}")
        if self.test_task_rule not in TEST_TASK_RULES:
            raise ValueError(f"test_task_rule must be one of {TEST_TASK_RULES}; got {self.test_task_rule!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one; got {self.seeds}")
        if (self.array_index is None) != (self.array_size is None):
            raise ValueError("array_index and array_size go together")
        if self.array_size is not None and not 0 <= self.array_index < self.array_size:
            raise ValueError(f"array_index must be in 0..array_size-1; got {self.array_index} of {self.array_size}")
        if self.score_dtype not in (None, *SCORE_DTYPES):
            raise ValueError(f"score_dtype must be one of {SCORE_DTYPES}; got {self.score_dtype!r}")
        for name in ("num_test_tasks", "known_entries", "task_eval_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")


def choose_test_tasks(matrix: ForgettingMatrix, args: ReplayExperimentArguments) -> list[str]:
    """The test tasks: as given, or by the fixed rule (ties broken by task name)."""
    if args.test_tasks:
        return list(args.test_tasks)
    count = min(args.num_test_tasks, len(matrix.task_ids) - 2)
    if count < 1:
        raise ValueError(f"The replay experiment holds test tasks out of a matrix and fits the predictor on at least 2 others: "
                         f"{args.matrix} has {len(matrix.task_ids)} tasks")
    if args.test_task_rule == "random":
        return default_test_tasks(matrix, count / len(matrix.task_ids))
    means = np.nanmean(matrix.values, axis=1)
    order = sorted(range(len(matrix.task_ids)), key=lambda i: (-means[i], matrix.task_ids[i]))
    return sorted(matrix.task_ids[i] for i in order[:count])


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
    test_tasks = choose_test_tasks(matrix, args)
    differences = check_matrix_training_settings(args, matrix, replay_args, model_args)
    _check_heldout_and_eval_sets(args, replay_args, settings, len(upstream), test_tasks)
    training = result_settings(replay_args)
    matrix_key = [matrix.header().to_json(), matrix.task_ids, hashlib.sha256(matrix.values.tobytes()).hexdigest()]
    args = dataclasses.replace(args, score_dtype=args.score_dtype or settings.get("score_dtype", "float32"))
    common = [training, dataclasses.asdict(model_args), matrix_key, args.predictor, args.known_entries, args.task_eval_examples]
    if args.score_dtype != "float32":  # the default precision adds nothing to the key
        common.append(args.score_dtype)
    experiment = _Experiment(args, replay_args, model_args, matrix, settings, upstream, output_dir, state)
    jobs = [(seed, task, method) for seed in args.seeds for task in test_tasks for method in args.methods]
    label = "replay runs"
    if args.array_size is not None:  # one job of an array: its share of the runs, no summary
        jobs, label = jobs[args.array_index :: args.array_size], f"replay runs (job {args.array_index} of {args.array_size})"
    runs = []
    for seed, task, method in tqdm(jobs, desc=label, disable=not state.is_main_process):
        key = settings_key(*common, seed, task, method)
        path = output_dir / "runs" / f"{task_filename(task).removesuffix('.parquet')}-{method}-seed{seed}-{key}.json"
        expected = {"task": task, "method": method, "seed": seed, "settings_key": key,
                    "heldout_ids": [upstream[i]["example_id"] for i in heldout_rows(len(upstream), replay_args.replay_heldout_size, seed)]}
        finished = read_run(path, expected)
        if finished is not None:
            runs.append(finished)
            continue
        runs.append(_run(experiment, seed, task, method, key) | {"settings_differences": differences})
        if state.is_main_process:
            atomic_write_text(path, json.dumps(runs[-1]))
    if args.array_size is not None:
        return {"runs": runs, "summary": None}
    summary = summarize_runs(runs) | {"settings_differences": differences}
    if state.is_main_process:
        atomic_write_text(output_dir / "replay_experiment.json", json.dumps({"runs": runs, "summary": summary}, indent=1))
        atomic_write_text(output_dir / "replay_experiment.md", summary_markdown(summary))
        print(summary_markdown(summary))
    return {"runs": runs, "summary": summary}


def check_matrix_training_settings(args: ReplayExperimentArguments, matrix: ForgettingMatrix, replay_args, model_args) -> list[str]:
    """The fine-tuning settings (training and model, LoRA included) that differ from those the matrix's rows
    were collected with, as `name: matrix -> experiment`; refused unless `allow`. The training seed is the
    experiment's own (`seeds`), and the batch layout is compared as the effective batch."""
    recorded = matrix.metadata.get("settings") or {}
    current = {"training": result_settings(replay_args), "model": model_settings(model_args),
               "world_size": PartialState().num_processes}
    matrix_side = {"training": dict(recorded.get("training") or {}), "model": dict(recorded.get("model") or {}),
                   "world_size": recorded.get("world_size")}
    for side in (matrix_side, current):
        side["training"].pop("seed", None)
    differences = settings_differences(settings_fingerprint(matrix_side), settings_fingerprint(current))
    if differences and not args.allow_settings_mismatch:
        raise ValueError(
            f"The experiment would fine-tune otherwise than the rows of {args.matrix} were collected: "
            + "; ".join(differences) + ". Use the collection's settings (its recipe), or pass "
            "--allow_settings_mismatch true to run anyway (the differences are recorded with every run)."
        )
    return differences


def _check_heldout_and_eval_sets(args, replay_args, settings: dict, num_upstream: int, test_tasks: list[str]) -> None:
    """Refuse, before any training, an experiment with nothing to measure forgetting or task NLL on."""
    if replay_args.replay_heldout_size < 1:
        raise ValueError("The replay experiment measures forgetting on upstream examples no arm replays: set "
                         f"replay_heldout_size (e.g. half of the {num_upstream} matrix examples)")
    heldout_rows(num_upstream, replay_args.replay_heldout_size, args.seeds[0])  # leaves a pool to replay, or says why not
    for task in test_tasks:
        available = len(from_settings(TaskArguments, settings).load_task(task, max_examples=None))
        trained = min(settings["max_train_examples"] or available, available)
        if available - trained < 1:
            raise ValueError(f"Task {task!r}: all {available} examples are trained on (max_train_examples="
                             f"{settings['max_train_examples']}), none is left to measure the task NLL on")


@dataclass
class _Experiment:
    """What every run of one experiment shares."""

    args: ReplayExperimentArguments
    replay_args: object
    model_args: object
    matrix: ForgettingMatrix
    settings: dict
    upstream: object
    output_dir: Path
    state: PartialState


def _run(experiment: _Experiment, seed: int, task: str, method: str, key: str) -> dict:
    """One arm of one task under one seed."""
    started = time.time()
    args, model_args, matrix, settings, upstream = (experiment.args, experiment.model_args, experiment.matrix,
                                                    experiment.settings, experiment.upstream)
    output_dir = experiment.output_dir
    run_args = dataclasses.replace(
        experiment.replay_args, output_dir=str(output_dir / "checkpoints" / f"{task_filename(task).removesuffix('.parquet')}-{method}"),
        save_strategy="no", seed=seed, replay_seed=seed, **METHODS[method],
    )
    strategy = run_args.replay_strategy
    heldout = heldout_rows(len(upstream), run_args.replay_heldout_size, seed)
    heldout_set = upstream.select(heldout)
    length, dtype = settings["score_max_length"], args.score_dtype
    base_key = [dataclasses.asdict(model_args), length, heldout_set["example_id"]] + ([dtype] if dtype != "float32" else [])
    base = cached_base_scores(heldout_set, model_args, score_length=length, score_dtype=dtype,
                              path=output_dir / f"heldout_base_scores-{settings_key(*base_key)}.json",
                              write=experiment.state.is_main_process)
    train, test = split_rows(matrix, [task])
    truth = test.values[0]
    pool = np.setdiff1d(np.arange(len(truth)), heldout)  # the revealed entries come from the replay pool only
    scores = predictor = known = None
    if strategy == "ground_truth":
        scores = truth
    if strategy in ("predicted", "online"):
        predictor = predictor_class(args.predictor)().fit(train)
    if strategy == "predicted":
        rng = np.random.default_rng([seed, matrix.task_ids.index(task)])
        revealed = rng.choice(pool, size=min(args.known_entries, len(pool)), replace=False)
        known = ([matrix.example_ids[j] for j in revealed], truth[revealed])
    task_data = from_settings(TaskArguments, settings).load_task(task, max_examples=None)
    n_train = settings["max_train_examples"] or len(task_data)
    train_data = task_data.select(range(min(n_train, len(task_data))))
    eval_data = task_data.select(range(len(train_data), min(len(task_data), len(train_data) + args.task_eval_examples)))
    model, tokenizer = load_model_and_tokenizer(model_args)
    prepared = prepare_training_rows(train_data, tokenizer, run_args.max_length)
    prepared.check(task, run_args.max_length, settings.get("min_train_fraction", 0.9), settings.get("allow_hollow_rows", False))
    trainer = ReplayTrainer(
        model=model, args=run_args, train_dataset=prepared.dataset, processing_class=tokenizer, replay_dataset=upstream,
        replay_scores=scores, replay_predictor=predictor, replay_known=known, peft_config=peft_config(model_args),
    )
    if trainer.heldout_ids != list(heldout_set["example_id"]):
        raise RuntimeError("The trainer's held-out split differs from the experiment's")
    result = trainer.train()
    tuned = cast_for_scoring(trainer.accelerator.unwrap_model(trainer.model), args.score_dtype)  # done training
    after = score_examples(tuned, tokenizer, heldout_set, max_length=settings["score_max_length"], show_progress=False)
    task_nll = score_examples(tuned, tokenizer, eval_data, max_length=run_args.max_length, show_progress=False)
    replayed = trainer.trained_replay_rows()  # indices into the pool, as trained (not the whole epoch's schedule)
    pool_truth = truth[pool]
    forgetting = after - base
    shutil.rmtree(run_args.output_dir, ignore_errors=True)
    return {
        "task": task, "method": method, "seed": seed, "settings_key": key, "train_loss": float(result.training_loss),
        "replay": {name: getattr(run_args, name) for name in ARM_SETTINGS},
        "heldout_ids": list(heldout_set["example_id"]),
        "heldout_forgetting": forgetting.tolist(), "mean_heldout_forgetting": float(np.mean(forgetting)),
        "top_quartile_forgetting": float(np.mean(forgetting[top_quartile(truth[heldout])])),
        "task_eval_nll": float(np.nanmean(task_nll)), "replay_pool": trainer.replay_pool_size,
        # diagnostics: how targeted the replayed set was (its true-row mean against the pool's)
        "replay_rows_trained": len(replayed),
        "replayed_true_mean": float(np.mean(pool_truth[replayed])) if replayed and method != "none" else None,
        "pool_true_mean": float(np.mean(pool_truth)),
        **prepared.counts(), "seconds": round(time.time() - started, 1),
    }
