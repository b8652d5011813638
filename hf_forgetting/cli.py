"""The ``hf-forgetting`` command: one sub-command per stage, each configured by a recipe YAML.

    hf-forgetting collect --config recipes/smollm2-135m-instruct/collect/config_demo.yaml
    accelerate launch -m hf_forgetting collect --config <recipe> [--flag value ...]

Flags given on the command line override the recipe's values (TRL's ``TrlParser`` semantics).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields

from .data.arguments import MonitorArguments, TaskArguments, UpstreamArguments

STAGES = {
    "demo": "the embedded default end to end: collect a 12 x 200 matrix, analyse it, compare predictors, fit one",
    "adapt": "continue training the base model on the upstream examples, so that replay undoes forgetting (cached)",
    "collect": "fine-tune the base model on each task and record the forgetting matrix (resumable)",
    "analyze": "how low-rank is a matrix: R^2 by rank, simpler models, spectrum, plots",
    "evaluate": "hold tasks out, reveal k entries each, compare predictors (RMSE / F1 / AUC table)",
    "fit": "fit a predictor on a matrix and save it (safetensors + JSON)",
    "measure": "what did my fine-tuned checkpoint (full or LoRA) forget? k probes measured, the whole row predicted",
    "predict": "complete a new task's row from a CSV of measured entries with a saved predictor",
    "train": "fine-tune on a task with targeted replay of upstream examples (ReplayTrainer)",
    "replay-experiment": "hold tasks out of a matrix; compare no / random / predicted / ground-truth replay",
    "push": "push a matrix (new repo, or new task rows to an existing one) or a predictor to a Hub dataset repo",
    "pull": "download a matrix (all contributions merged) or a predictor from a Hub dataset repo",
}


@dataclass
class TrainArguments(UpstreamArguments, TaskArguments, MonitorArguments):
    """What `train` fine-tunes on and replays: the task, the upstream pool (the shared fields of
    `UpstreamArguments` and `TaskArguments`), what is known of its forgetting, and the forgetting
    monitor (`MonitorArguments`, off unless `monitor_probes` > 0)."""

    task: str = field(kw_only=True, metadata={"help": "Task to fine-tune on: embedded name, local file or Hub id."})
    replay_scores_file: str | None = field(
        default=None, metadata={"help": "CSV example_id,forgetting (e.g. written by `predict`): replay by these scores."}
    )
    predictor_dir: str | None = field(default=None, metadata={"help": "A saved predictor (predicted / online strategies)."})
    known: str | None = field(default=None, metadata={"help": "CSV example_id,forgetting of measured entries (predicted)."})


@dataclass
class DemoArguments:
    output_root: str = field(
        default="outputs/smollm2-135m-instruct", metadata={"help": "Folder of the demo's outputs (collect-demo/, predictor/)."}
    )
    collect_jobs: int | None = field(
        default=None,
        metadata={"help": "Collection jobs run side by side, each on its share of the CPU cores and every n-th task "
                          "(default: 2 on a CPU with 2 or more cores, 1 with an accelerator)."},
    )

    def __post_init__(self):
        if self.collect_jobs is not None:
            _check_at_least(self, collect_jobs=1)


@dataclass
class AnalyzeArguments:
    matrix: str = field(metadata={"help": "Folder of a saved ForgettingMatrix."})
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the report (default: <matrix>/../analysis)."})
    max_rank: int = field(default=9, metadata={"help": "Largest rank of the truncated-SVD fits."})

    def __post_init__(self):
        _check_at_least(self, max_rank=1)


@dataclass
class EvaluateArguments:
    matrix: str = field(metadata={"help": "Folder of a saved ForgettingMatrix."})
    predictors: list[str] | None = field(
        default=None, metadata={"help": "Predictor names (default: column_mean, additive, knn, mf; logistic_mf for em_drop)."}
    )
    test_tasks: list[str] | None = field(default=None, metadata={"help": "Held-out tasks (default: a seeded 30%%)."})
    test_fraction: float = field(default=0.3, metadata={"help": "Share of tasks held out when test_tasks is not given."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the default train/test split."})
    k: int = field(default=30, metadata={"help": "Known entries revealed per test task."})
    num_seeds: int = field(default=10, metadata={"help": "Known sets drawn per test task."})
    output: str | None = field(default=None, metadata={"help": "Also write the results as JSON here."})
    test_matrix: str | None = field(
        default=None,
        metadata={"help": "Rows collected apart from the matrix (e.g. at other fine-tuning strengths): fit on the whole "
                          "matrix (less each row's task) and test on these instead of held-out tasks."},
    )

    def __post_init__(self):
        _check_at_least(self, k=1, num_seeds=1)
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1); got {self.test_fraction}")


@dataclass
class FitArguments:
    matrix: str = field(metadata={"help": "Folder of a saved ForgettingMatrix."})
    predictor: str = field(default="mf", metadata={"help": "Predictor name: column_mean, additive, knn, mf, logistic_mf, tensor, embedding."})
    output_dir: str = field(default="predictor", metadata={"help": "Where save_pretrained writes the predictor."})
    rank: int | None = field(default=None, metadata={"help": "Rank for mf / logistic_mf."})

    def __post_init__(self):
        if self.rank is not None:
            _check_at_least(self, rank=1)


@dataclass
class PredictArguments:
    predictor: str = field(metadata={"help": "Folder of a saved predictor."})
    known: str = field(metadata={"help": "CSV with columns example_id,forgetting: the measured entries."})
    output: str = field(default="predicted_forgetting.csv", metadata={"help": "CSV to write: example_id,forgetting."})


@dataclass
class PushArguments:
    folder: str = field(metadata={"help": "A saved matrix (or a collect output folder) or a saved predictor."})
    repo_id: str = field(metadata={"help": "Hub dataset repo, 'user/name'."})
    private: bool | None = field(default=None, metadata={"help": "Create the repo private (new repos only)."})
    branch: str | None = field(default=None, metadata={"help": "Branch to commit to (default: main)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit title (default: says what was added)."})
    license: str | None = field(default=None, metadata={"help": "License of the dataset card (matrices; default: 'other')."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the saved login)."})


@dataclass
class PullArguments:
    repo_id: str = field(metadata={"help": "Hub dataset repo holding a matrix or a predictor."})
    folder: str = field(metadata={"help": "Where to save it (ForgettingMatrix.save / save_pretrained)."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit id (default: main)."})
    on_duplicate: str = field(default="error", metadata={"help": "Two contributions of one task: 'error' or 'first'."})
    token: str | None = field(default=None, metadata={"help": "Hub token, for private repos."})


def _adapt(argv: list[str]) -> int:
    from trl import ModelConfig, SFTConfig

    from .adapt import AdaptArguments, adapt_base_model

    args, training_args, model_args = _training_stage((AdaptArguments, SFTConfig, ModelConfig), "adapt", argv)
    adapt_base_model(args, training_args, model_args)
    return 0


def _collect(argv: list[str]) -> int:
    from trl import ModelConfig, SFTConfig

    from .collect import CollectArguments, collect_forgetting_matrix

    args, training_args, model_args = _training_stage((CollectArguments, SFTConfig, ModelConfig), "collect", argv)
    collect_forgetting_matrix(args, training_args, model_args)
    return 0


def _collect_in_jobs(recipe: str, output_dir, jobs: int) -> None:
    """`collect` of ``recipe`` into ``output_dir`` as ``jobs`` processes side by side (``--array_index i
    --array_size jobs``), each with its share of the cores; the last to finish writes the matrix. A step
    of a small model on a few short rows does not keep two threads busy, so one-thread jobs side by side use
    the cores better than one job with every thread (docs/benchmarks.md).
    Job 0 prints to this terminal, the others to ``<output_dir>/logs/collect-job-<i>.log``."""
    import os
    import subprocess
    import time
    from pathlib import Path

    from .collect import print_outputs
    from .errors import CollectionJobError

    argv = ["--config", str(recipe), "--output_dir", str(output_dir)]
    if jobs == 1:
        _collect(argv)
        return
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "hf_forgetting", "collect", *argv, "--array_size", str(jobs)]
    logs = [None, *(Path(output_dir) / "logs" / f"collect-job-{index}.log" for index in range(1, jobs))]
    logs[1].parent.mkdir(parents=True, exist_ok=True)
    print(f"Collecting in {jobs} jobs of {threads} thread(s) each; job 0 prints here, "
          f"the others to {', '.join(str(log) for log in logs[1:])}")
    launched, processes = time.time(), []
    try:
        for index, log in enumerate(logs):
            output = open(log, "w") if log else None  # noqa: SIM115 (closed when the job ends)
            processes.append((subprocess.Popen([*command, "--array_index", str(index)], env=env, stdout=output,
                                               stderr=subprocess.STDOUT if output else None), output))
        failed = [index for index, (process, _) in enumerate(processes) if process.wait() != 0]
    finally:
        for process, output in processes:
            if process.poll() is None:
                process.terminate()
                process.wait()
            if output:
                output.close()
    if failed:
        where = ", ".join(str(logs[index]) if logs[index] else "the output above" for index in failed)
        raise CollectionJobError(f"collection job(s) {failed} failed (see {where}); run again to resume: finished rows are kept")
    written = Path(output_dir) / "matrix" / "forgetting_matrix.json"
    if written.exists() and written.stat().st_mtime >= launched:  # the last job found every row
        print_outputs(output_dir)
    else:
        _collect(argv)


def _default_collect_jobs() -> int:
    """2 collection jobs on a CPU machine with 2 or more cores, 1 with an accelerator."""
    import os

    from .modeling import has_accelerator

    return 1 if has_accelerator() or len(os.sched_getaffinity(0)) < 2 else 2


def _without_accelerator(argv: list[str]) -> list[str]:
    """Training arguments as given, plus ``--use_cpu true`` on a machine without an accelerator.

    Recipes say ``bf16: true`` as on a GPU; transformers refuses bf16 on a CPU unless `use_cpu` is set,
    and then trains in CPU bf16 autocast (fp32 weights), so one recipe runs on both.
    """
    from .modeling import has_accelerator

    if has_accelerator() or any(arg.startswith("--use_cpu") for arg in argv) or "use_cpu" in _recipe_settings(argv):
        return argv  # an explicit choice, on the command line or in the recipe, stays
    return [*argv, "--use_cpu", "true"]


def _check_recipe_types(argv: list[str], dataclass_types) -> None:
    """Refuse a recipe value of the wrong kind (``max_steps: [2]``, ``num_upstream_examples: "ten"``) in one line
    naming the setting: argparse does not convert or check a recipe's values, and the dataclasses would fail on them
    with a TypeError far from the recipe."""
    import typing

    settings = _recipe_settings(argv)
    for cls in dataclass_types:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # noqa: BLE001 - annotations this check cannot resolve are left to the dataclass
            continue
        for name, value in settings.items():
            if name in hints and not _is_of_type(value, hints[name]):
                raise ValueError(f"recipe setting {name}: {value!r:.80} is not {_type_name(hints[name])}")


def _is_of_type(value, hint) -> bool:
    """Whether a YAML value fits a field's annotation (scalars, None, lists of scalars; other kinds pass)."""
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        return any(_is_of_type(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (typing.Any,)
        return isinstance(value, list) and all(_is_of_type(v, item) for v in value)
    if isinstance(value, str) and hint in (int, float, bool):  # argparse converts it as a flag's value, or says why not
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _recipe_settings(argv: list[str]) -> dict:
    """The settings of the recipe named by ``--config`` (empty without one; a bad file is TrlParser's to report)."""
    import yaml

    for flag, value in zip(argv, argv[1:]):
        if flag == "--config":
            try:
                with open(value) as file:
                    settings = yaml.safe_load(file)
            except (OSError, yaml.YAMLError):
                return {}
            return settings if isinstance(settings, dict) else {}
    return {}


# The Trainer options most recipes set, named in the short help; `--help-trainer` lists all of them.
COMMON_TRAINER_OPTIONS = (
    "--output_dir", "--max_steps", "--num_train_epochs", "--per_device_train_batch_size", "--gradient_accumulation_steps",
    "--learning_rate", "--lr_scheduler_type", "--max_length", "--bf16", "--seed", "--save_strategy", "--report_to",
)


RECIPE_HELP = "--config RECIPE.yaml reads the options from a recipe; flags given as well override it."


def _training_stage(dataclass_types: tuple, stage: str, argv: list[str]):
    """Parse a stage that trains, `(own arguments, training config, ModelConfig)`: `--help` shows the
    options the training config adds to SFTConfig (the replay options of `ReplayConfig`), the stage's own
    and the model's, and names the Trainer options that `--help-trainer` lists in full."""
    import textwrap

    from trl import SFTConfig

    own, training, model = dataclass_types
    parser = _stage_parser(dataclass_types, stage)
    if "--help-trainer" in argv:
        parser.print_help()
        raise SystemExit(0)
    if "-h" in argv or "--help" in argv:
        added = [_options_of(training, f"replay ({training.__name__})", exclude=SFTConfig)]
        sections = (*(added if training is not SFTConfig else []), _options_of(own, f"{stage} ({own.__name__})"),
                    _options_of(model, "model (trl.ModelConfig)"))
        trainer = (f"training: the options of {training.__name__} (transformers.TrainingArguments + TRL), e.g. "
                   f"{', '.join(COMMON_TRAINER_OPTIONS)}; all {len(fields(training))} of them with "
                   f"`hf-forgetting {stage} --help-trainer`.")
        epilog = textwrap.fill(trainer, 100) + "\n\n" + RECIPE_HELP
        _stage_parser(sections, stage, epilog, usage=f"hf-forgetting {stage} [--config RECIPE.yaml] [--option value ...]").print_help()
        raise SystemExit(0)
    _check_recipe_types(argv, dataclass_types)
    return parser.parse_args_and_config(_without_accelerator(argv))


def _options_of(cls, group: str, exclude=None):
    """A help-only copy of dataclass `cls` in its own argument group: its fields, less those of `exclude`."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    skipped = {f.name for f in dataclasses.fields(exclude)} if exclude else set()
    specs = []
    own_first = sorted(dataclasses.fields(cls), key=lambda spec: spec.name not in vars(cls).get("__annotations__", {}))
    for spec in own_first:
        if spec.name in skipped or not spec.init:
            continue
        default = ({"default": spec.default} if spec.default is not dataclasses.MISSING
                   else {"default_factory": spec.default_factory} if spec.default_factory is not dataclasses.MISSING else {})
        specs.append((spec.name, hints[spec.name], dataclasses.field(metadata=spec.metadata, **default)))
    options = dataclasses.make_dataclass(cls.__name__, specs, kw_only=True)
    options._argument_group_name = group
    return options


def _stage_parser(dataclass_types: tuple, stage: str, epilog: str | None = None, usage: str | None = None):
    """TRL's parser for a stage (`--config recipe.yaml`, flags override it); a bad value is one line
    naming the flag, not the whole usage block (hundreds of lines for the training stages)."""
    import argparse

    from trl import TrlParser

    class StageParser(TrlParser):
        def error(self, message):
            self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")

    return StageParser(dataclass_types, prog=f"hf-forgetting {stage}", formatter_class=argparse.RawDescriptionHelpFormatter, usage=usage,
                       epilog=epilog or RECIPE_HELP)


def _parse(dataclass_type, argv: list[str], stage: str, positional: str | tuple[str, ...] = ()):
    """TrlParser semantics (--config YAML, flags override), plus optional leading positional arguments."""

    names = (positional,) if isinstance(positional, str) else positional
    leading = []
    for name in names:
        if argv and not argv[0].startswith("-"):
            leading += [f"--{name}", argv[0]]
            argv = argv[1:]
    argv = [*leading, *argv]
    _check_recipe_types(argv, (dataclass_type,))
    (args,) = _stage_parser((dataclass_type,), stage).parse_args_and_config(argv)
    return args


def _analyze(argv: list[str]) -> int:
    from pathlib import Path

    from .analysis import report_markdown, write_low_rank_report
    from .matrix import ForgettingMatrix

    args = _parse(AnalyzeArguments, argv, "analyze", positional="matrix")
    matrix = ForgettingMatrix.load(args.matrix)
    output_dir = Path(args.output_dir or Path(args.matrix).resolve().parent / "analysis")
    report = write_low_rank_report(matrix, output_dir, max_rank=args.max_rank)
    print(report_markdown(report, matrix))
    print(f"Report and plots: {output_dir}")
    return 0


def _evaluate(argv: list[str]) -> int:
    import json

    from .completion import predictor_class
    from .completion.evaluation import default_test_tasks, evaluate_on_new_rows, evaluate_predictor, new_rows_table, results_table
    from .files import atomic_write_text
    from .matrix import ForgettingMatrix

    args = _parse(EvaluateArguments, argv, "evaluate", positional="matrix")
    matrix = ForgettingMatrix.load(args.matrix)
    binary = matrix.metric == "em_drop"
    names = args.predictors or (["column_mean", "logistic_mf"] if binary else ["column_mean", "additive", "knn", "mf"])
    if args.predictors is None and matrix.metadata.get("settings", {}).get("collect") and _upstream_texts_obtainable(matrix):
        names = ["embedding", *names]  # the LM-based baseline, when the matrix says where its texts come from
    classes = [predictor_class(name) for name in names]
    if args.test_matrix:
        new_rows = ForgettingMatrix.load(args.test_matrix)
        names = [name for name in names if name not in ("column_mean", "embedding")]  # the column mean is a baseline here
        print(f"{matrix!r}; tested on the {len(new_rows.task_ids)} rows of {args.test_matrix}; k = {args.k}, {args.num_seeds} seeds")
        result = evaluate_on_new_rows([predictor_class(name) for name in names], matrix, new_rows, args.k, range(args.num_seeds))
        print(new_rows_table(result))
        if args.output:
            atomic_write_text(args.output, json.dumps(result, indent=2))
        return 0
    test_tasks = args.test_tasks or default_test_tasks(matrix, args.test_fraction, args.split_seed)
    print(f"{matrix!r}; test tasks ({len(test_tasks)}): {', '.join(test_tasks)}; k = {args.k}, {args.num_seeds} seeds")
    results = [evaluate_predictor(cls(), matrix, test_tasks, k=args.k, seeds=range(args.num_seeds)) for cls in classes]
    print(results_table(results, matrix.metric))
    if args.output:
        atomic_write_text(args.output, json.dumps({"test_tasks": test_tasks, "results": results}, indent=2))
    return 0


def _upstream_texts_obtainable(matrix) -> bool:
    """Whether the texts of `matrix`'s upstream examples can be loaded; if the registry withholds their source, the
    default evaluation leaves the LM-based baseline out with a note instead of failing (asked for by name, it fails)."""
    from .data.matrix_sources import load_matrix_upstream
    from .sources import SourceRefusedError

    try:
        load_matrix_upstream(matrix)
    except SourceRefusedError as refusal:
        print(f"The LM-based baseline (embedding) is left out: its upstream texts cannot be fetched. {str(refusal)[:300]}")
        return False
    return True


def _fit(argv: list[str]) -> int:
    from .completion import predictor_class
    from .matrix import ForgettingMatrix

    args = _parse(FitArguments, argv, "fit", positional="matrix")
    cls = predictor_class(args.predictor)
    if args.rank is not None and "rank" not in cls.config_fields:
        raise ValueError(f"--rank applies to predictors with a rank, not {args.predictor!r}")
    kwargs = {"rank": args.rank} if args.rank is not None else {}
    predictor = cls(**kwargs).fit(ForgettingMatrix.load(args.matrix))
    print(f"Saved {type(predictor).__name__} to {predictor.save_pretrained(args.output_dir)}")
    return 0


def _measure(argv: list[str]) -> int:
    from trl import ModelConfig

    from .measure import MeasureArguments, measure_forgetting

    _check_recipe_types(argv, (MeasureArguments, ModelConfig))
    args, model_args = _stage_parser((MeasureArguments, ModelConfig), "measure").parse_args_and_config(argv)
    result = measure_forgetting(args, model_args)
    print(result.summary)
    print("Wrote " + ", ".join(str(path) for path in result.files.values()))
    return 0


def _predict(argv: list[str]) -> int:
    import numpy as np

    from .completion import ForgettingPredictor
    from .format.forgetting_csv import read_forgetting_csv, write_forgetting_csv

    args = _parse(PredictArguments, argv, "predict", positional="predictor")
    known_ids, values = read_forgetting_csv(args.known)
    predictor = ForgettingPredictor.from_pretrained(args.predictor)
    predicted = predictor.predict(known_ids, values)
    write_forgetting_csv(args.output, predictor.example_ids, predicted)
    top = np.argsort(-predicted)[:5]
    print("Most forgotten (predicted): " + ", ".join(f"{predictor.example_ids[j]} ({predicted[j]:+.3f})" for j in top))
    print(f"Wrote {len(predicted)} predictions to {args.output}")
    return 0


def _train(argv: list[str]) -> int:
    from pathlib import Path

    from trl import ModelConfig

    from .completion import ForgettingPredictor
    from .format.forgetting_csv import read_forgetting_csv
    from .modeling import load_model_and_tokenizer, peft_config
    from .monitor import ForgettingMonitorCallback
    from .replay import ReplayConfig, ReplayTrainer
    from .training_data import prepare_training_rows

    args, replay_args, model_args = _training_stage((TrainArguments, ReplayConfig, ModelConfig), "train", argv)
    upstream = args.load_upstream()
    scores = predictor = known = None
    if args.replay_scores_file:
        ids, values = read_forgetting_csv(args.replay_scores_file)
        lookup = dict(zip(ids, values))
        missing = [i for i in upstream["example_id"] if i not in lookup]
        if missing:
            raise ValueError(f"{args.replay_scores_file}: no score for {len(missing)} upstream examples, e.g. {missing[:3]}")
        scores = [lookup[i] for i in upstream["example_id"]]
    if args.predictor_dir:
        predictor = ForgettingPredictor.from_pretrained(args.predictor_dir)
    if args.known:
        known = read_forgetting_csv(args.known)
    model, tokenizer = load_model_and_tokenizer(model_args)
    prepared = prepare_training_rows(args.load_task(args.task), tokenizer, replay_args.max_length)
    prepared.check(args.task, replay_args.max_length, args.min_train_fraction, args.allow_hollow_rows)
    print(f"Training on {prepared.kept} of {prepared.requested} examples of {args.task} ({prepared.prompt_truncated} with a shortened prompt)")
    trainer = ReplayTrainer(
        model=model, args=replay_args, train_dataset=prepared.dataset, processing_class=tokenizer,
        peft_config=peft_config(model_args), replay_dataset=upstream, replay_scores=scores,
        replay_predictor=predictor, replay_known=known,
    )
    # The monitor's probes: upstream examples that are never replayed (all of them without replay).
    heldout = set(trainer.heldout_ids)
    probes = upstream.filter(lambda row: row["example_id"] in heldout) if heldout else upstream
    monitor = ForgettingMonitorCallback.from_arguments(args, probes, trainer, seed=replay_args.seed)
    if monitor is not None:
        trainer.add_callback(monitor)
    trainer.train(resume_from_checkpoint=replay_args.resume_from_checkpoint)
    trainer.save_model()
    if monitor is not None and monitor.history:
        print(f"Forgetting monitor: probe mean {monitor.history[-1]['forgetting/probe_mean']:+.4f} at step "
              f"{monitor.history[-1]['step']}; plot {Path(replay_args.output_dir) / 'forgetting_monitor.png'}")
    heldout_note = f"; {len(trainer.heldout_ids)} upstream examples held out (never replayed)" if trainer.heldout_ids else ""
    print(f"Model saved to {replay_args.output_dir}{heldout_note}")
    return 0


def _replay_experiment(argv: list[str]) -> int:
    from trl import ModelConfig

    from .replay import ReplayConfig
    from .replay.experiment import ReplayExperimentArguments, run_replay_experiment

    args, replay_args, model_args = _training_stage((ReplayExperimentArguments, ReplayConfig, ModelConfig), "replay-experiment", argv)
    run_replay_experiment(args, replay_args, model_args)
    return 0


def _push(argv: list[str]) -> int:
    from pathlib import Path

    from .completion import ForgettingPredictor
    from .errors import RepoKindError
    from .format.matrix import HEADER_FILE
    from .format.predictor import CONFIG_FILE
    from .matrix import ForgettingMatrix

    args = _parse(PushArguments, argv, "push", positional=("folder", "repo_id"))
    folder = Path(args.folder)
    if (folder / "matrix" / HEADER_FILE).exists():
        folder = folder / "matrix"  # a collect output folder
    if (folder / CONFIG_FILE).exists() and (folder / HEADER_FILE).exists():
        raise RepoKindError(f"{folder}: holds both a matrix and a predictor; push them from separate folders")
    hub_args = dict(token=args.token, private=args.private, branch=args.branch, commit_message=args.commit_message)
    if (folder / CONFIG_FILE).exists():
        predictor = ForgettingPredictor.from_pretrained(folder)
        commit = predictor.push_to_hub(args.repo_id, **hub_args)
        print(f"Pushed {type(predictor).__name__} to {args.repo_id}: {commit.commit_url}")
        return 0
    matrix = ForgettingMatrix.load(folder)
    commit = matrix.push_to_hub(args.repo_id, license=args.license, **hub_args)
    if commit is None:
        print(f"{args.repo_id} already holds every task of {folder}; nothing pushed")
    else:
        print(f"Pushed {matrix!r} to {args.repo_id}: {commit.commit_message} ({commit.commit_url})")
    return 0


def _pull(argv: list[str]) -> int:
    from .completion import ForgettingPredictor
    from .format.predictor import PREDICTOR_KIND
    from .hub.predictor_repo import repo_kind
    from .matrix import ForgettingMatrix

    args = _parse(PullArguments, argv, "pull", positional=("repo_id", "folder"))
    if repo_kind(args.repo_id, args.revision, args.token) == PREDICTOR_KIND:
        predictor = ForgettingPredictor.from_pretrained(args.repo_id, revision=args.revision, token=args.token)
        print(f"Saved {type(predictor).__name__} from {args.repo_id} to {predictor.save_pretrained(args.folder)}")
        return 0
    matrix = ForgettingMatrix.from_hub(args.repo_id, args.revision, args.token, args.on_duplicate)
    contributors = sorted({row.get("contributor", "?") for row in matrix.metadata.get("rows", {}).values()})
    print(f"Saved {matrix!r} from {args.repo_id}@{matrix.metadata['hub']['revision'][:12]} to {matrix.save(args.folder)}")
    print(f"Contributors: {', '.join(contributors)}")
    return 0


def _demo(argv: list[str]) -> int:
    """`make demo`: the same four stages on the packaged demo recipe, from any working directory, and a
    table of where the time went (``<output_root>/demo_time.md``)."""
    from pathlib import Path

    from .files import atomic_write_text
    from .matrix import ForgettingMatrix
    from .recipes import recipe_path
    from .stage_times import StageClock, breakdown_markdown, collection_split

    args = _parse(DemoArguments, argv, "demo")
    root = Path(args.output_root)
    collected = root / "collect-demo"
    recipe = recipe_path("collect", "config_demo.yaml")
    clock = StageClock()
    with clock("fetch and conversion of the embedded model and data"):
        _fetch_sources(recipe)
    with clock("collection"):
        jobs = args.collect_jobs or _default_collect_jobs()
        _collect_in_jobs(recipe, collected, jobs)
    with clock("analysis"):
        _analyze([str(collected / "matrix"), "--output_dir", str(collected / "analysis")])
    with clock("evaluation"):
        _evaluate([str(collected / "matrix"), "--output", str(collected / "evaluation.json")])
    with clock("fitting the predictor"):
        _fit([str(collected / "matrix"), "--predictor", "mf", "--output_dir", str(root / "predictor")])
    split = collection_split(ForgettingMatrix.load(collected / "matrix"), since=clock.started_at, jobs=jobs)
    table = breakdown_markdown(clock.seconds, collection="collection", split=split)
    atomic_write_text(root / "demo_time.md", table + "\n")
    print(f"Where the demo's time went ({root / 'demo_time.md'}):\n{table}")
    return 0


def _fetch_sources(recipe) -> None:
    """Fetch, verify and convert what a collection recipe's embedded model and data need (cached after the
    first run), so that the demo's time for it is told apart from training."""
    from .data import load_task, load_upstream
    from .modeling import resolve_model_path

    settings = _recipe_settings(["--config", str(recipe)])
    resolve_model_path(settings["model_name_or_path"])
    load_upstream(settings["upstream_dataset"])
    for task in settings["tasks"]:
        load_task(task)


def _check_at_least(args, **minimums) -> None:
    for name, minimum in minimums.items():
        if getattr(args, name) < minimum:
            raise ValueError(f"{name} must be >= {minimum}; got {getattr(args, name)}")


def _usage() -> str:
    lines = ["usage: hf-forgetting <stage> --config <recipe.yaml> [--flag value ...]", "", "stages:"]
    lines += [f"  {name:<18} {help_}" for name, help_ in STAGES.items()]
    lines += ["", "`hf-forgetting <stage> --help` lists a stage's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"hf-forgetting: unknown stage {stage!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    handlers = {
        "demo": _demo, "adapt": _adapt, "collect": _collect, "analyze": _analyze, "evaluate": _evaluate, "fit": _fit,
        "measure": _measure, "predict": _predict, "train": _train, "replay-experiment": _replay_experiment, "push": _push, "pull": _pull,
    }
    finished = False
    try:
        status = handlers[stage](rest)
        finished = True
        return status
    except _user_errors() as error:
        print(f"hf-forgetting {stage}: {_one_line(error)}", file=sys.stderr)  # bad input: a message, not a traceback
        return 1
    finally:
        _release_process_group(finished)


def _release_process_group(finished: bool) -> None:
    """Destroy the process group that `accelerate launch`/torchrun formed before the interpreter exits:
    left alive, gloo's worker threads can abort the process (SIGABRT, exit status -6) after all its work is
    done, and the launcher then reports the finished job as failed (pytorch/pytorch#179291)."""
    import torch.distributed

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    from accelerate import PartialState

    state = PartialState()
    if finished:
        state.wait_for_everyone()  # no process closes connections another still reads from
    state.destroy_process_group()  # after an error, without waiting: the others may never arrive


def _user_errors() -> tuple[type[Exception], ...]:
    """The error types that describe bad input or an unreachable resource; anything else is a bug and
    keeps its traceback."""
    import yaml
    from huggingface_hub.errors import HfHubHTTPError

    from .errors import HfForgettingError
    from .hub.transport import transport_errors

    # OSError: files and network (a missing folder, an output path that is a file, a full disk, an
    # unreachable Hub), the environment rather than the code; httpx's transport errors: a refused or
    # dropped connection to the Hub
    return (HfForgettingError, HfHubHTTPError, OSError, ValueError, yaml.YAMLError, *transport_errors())


def _one_line(error: Exception) -> str:
    from .hub.transport import transport_errors

    if isinstance(error, transport_errors()) and not isinstance(error, OSError):
        from huggingface_hub import constants

        reason = " ".join(str(error).split()) or type(error).__name__
        return (f"the connection to the Hub at {constants.ENDPOINT} failed ({type(error).__name__}: {reason[:200]}). "
                "Run the same command again once it is reachable: what already landed is kept and not sent twice.")
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) < 2000 else text[:2000] + " ..."


if __name__ == "__main__":
    sys.exit(main())
