"""The ``hf-forgetting`` command: one sub-command per stage, each configured by a recipe YAML.

    hf-forgetting collect --config recipes/smollm2-135m-instruct/collect/config_demo.yaml
    accelerate launch -m hf_forgetting collect --config <recipe> [--flag value ...]

Flags given on the command line override the recipe's values (TRL's ``TrlParser`` semantics).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

STAGES = {
    "collect": "fine-tune the base model on each task and record the forgetting matrix (resumable)",
    "analyze": "how low-rank is a matrix: R^2 by rank, simpler models, spectrum, plots",
    "evaluate": "hold tasks out, reveal k entries each, compare predictors (RMSE / F1 / AUC table)",
    "fit": "fit a predictor on a matrix and save it (safetensors + JSON)",
    "predict": "complete a new task's row from a CSV of measured entries with a saved predictor",
    "train": "fine-tune on a task with targeted replay of upstream examples (ReplayTrainer)",
    "replay-experiment": "hold tasks out of a matrix; compare no / random / predicted / ground-truth replay",
    "push": "push a matrix (new repo, or new task rows to an existing one) or a predictor to a Hub dataset repo",
    "pull": "download a matrix (all contributions merged) or a predictor from a Hub dataset repo",
}


@dataclass
class TrainArguments:
    task: str = field(default=None, metadata={"help": "Task to fine-tune on: embedded name, local file or Hub id."})
    max_train_examples: int | None = field(default=None, metadata={"help": "Training examples (seeded subset)."})
    task_seed: int = field(default=0, metadata={"help": "Seed of the training subset."})
    task_prompt_field: str | None = field(default=None, metadata={"help": "Task column to train on as the prompt."})
    task_completion_field: str | None = field(default=None, metadata={"help": "Task column to train on as the completion."})
    upstream_dataset: str = field(default="embedded", metadata={"help": "Upstream examples to replay from."})
    num_upstream_examples: int | None = field(default=200, metadata={"help": "Size of the upstream pool (seeded subset)."})
    upstream_seed: int = field(default=0, metadata={"help": "Seed of the upstream subset."})
    replay_scores_file: str | None = field(default=None, metadata={"help": "CSV example_id,score: forgetting scores."})
    predictor_dir: str | None = field(default=None, metadata={"help": "A saved predictor (predicted / online strategies)."})
    known: str | None = field(default=None, metadata={"help": "CSV example_id,value of measured forgetting (predicted)."})


@dataclass
class AnalyzeArguments:
    matrix: str = field(metadata={"help": "Folder of a saved ForgettingMatrix."})
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the report (default: <matrix>/../analysis)."})
    max_rank: int = field(default=9, metadata={"help": "Largest rank of the truncated-SVD fits."})


@dataclass
class EvaluateArguments:
    matrix: str = field(metadata={"help": "Folder of a saved ForgettingMatrix."})
    predictors: list[str] | None = field(
        default=None, metadata={"help": "Predictor names (default: column_mean, additive, knn, mf; logistic_mf for em_drop)."}
    )
    test_tasks: list[str] | None = field(default=None, metadata={"help": "Held-out tasks (default: a seeded 30%)."})
    test_fraction: float = field(default=0.3, metadata={"help": "Share of tasks held out when test_tasks is not given."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the default train/test split."})
    k: int = field(default=30, metadata={"help": "Known entries revealed per test task."})
    num_seeds: int = field(default=10, metadata={"help": "Known sets drawn per test task."})
    output: str | None = field(default=None, metadata={"help": "Also write the results as JSON here."})


@dataclass
class FitArguments:
    matrix: str = field(metadata={"help": "Folder of a saved ForgettingMatrix."})
    predictor: str = field(default="mf", metadata={"help": "Predictor name: column_mean, additive, knn, mf, logistic_mf."})
    output_dir: str = field(default="predictor", metadata={"help": "Where save_pretrained writes the predictor."})
    rank: int | None = field(default=None, metadata={"help": "Rank for mf / logistic_mf."})


@dataclass
class PredictArguments:
    predictor: str = field(metadata={"help": "Folder of a saved predictor."})
    known: str = field(default=None, metadata={"help": "CSV with columns example_id,value: the measured entries."})
    output: str = field(default="predicted_forgetting.csv", metadata={"help": "CSV to write: example_id,predicted."})


@dataclass
class PushArguments:
    folder: str = field(default=None, metadata={"help": "A saved matrix (or a collect output folder) or a saved predictor."})
    repo_id: str = field(default=None, metadata={"help": "Hub dataset repo, 'user/name'."})
    private: bool | None = field(default=None, metadata={"help": "Create the repo private (new repos only)."})
    branch: str | None = field(default=None, metadata={"help": "Branch to commit to (default: main)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit title (default: says what was added)."})
    license: str | None = field(default=None, metadata={"help": "License of the dataset card (matrices; default: 'other')."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the saved login)."})


@dataclass
class PullArguments:
    repo_id: str = field(default=None, metadata={"help": "Hub dataset repo holding a matrix or a predictor."})
    folder: str = field(default=None, metadata={"help": "Where to save it (ForgettingMatrix.save / save_pretrained)."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit id (default: main)."})
    on_duplicate: str = field(default="error", metadata={"help": "Two contributions of one task: 'error' or 'first'."})
    token: str | None = field(default=None, metadata={"help": "Hub token, for private repos."})


def _collect(argv: list[str]) -> int:
    from trl import ModelConfig, SFTConfig, TrlParser

    from .collect import CollectArguments, collect_forgetting_matrix

    parser = TrlParser((CollectArguments, SFTConfig, ModelConfig), prog="hf-forgetting collect")
    args, training_args, model_args = parser.parse_args_and_config(argv)
    collect_forgetting_matrix(args, training_args, model_args)
    return 0


def _parse(dataclass_type, argv: list[str], stage: str, positional: str | tuple[str, ...] = ()):
    """TrlParser semantics (--config YAML, flags override), plus optional leading positional arguments."""
    from trl import TrlParser

    names = (positional,) if isinstance(positional, str) else positional
    leading = []
    for name in names:
        if argv and not argv[0].startswith("-"):
            leading += [f"--{name}", argv[0]]
            argv = argv[1:]
    argv = [*leading, *argv]
    (args,) = TrlParser((dataclass_type,), prog=f"hf-forgetting {stage}").parse_args_and_config(argv)
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

    from .completion import PREDICTORS
    from .completion.evaluation import default_test_tasks, evaluate_predictor, results_table
    from .files import atomic_write_text
    from .matrix import ForgettingMatrix

    args = _parse(EvaluateArguments, argv, "evaluate", positional="matrix")
    matrix = ForgettingMatrix.load(args.matrix)
    binary = matrix.metric == "em_drop"
    names = args.predictors or (["column_mean", "logistic_mf"] if binary else ["column_mean", "additive", "knn", "mf"])
    if args.predictors is None and matrix.metadata.get("settings", {}).get("collect"):
        names = ["embedding", *names]  # the LM-based baseline, when the matrix says where its texts come from
    unknown = sorted(set(names) - set(PREDICTORS))
    if unknown:
        raise ValueError(f"Unknown predictor(s) {unknown}; choose from {sorted(PREDICTORS)}")
    test_tasks = args.test_tasks or default_test_tasks(matrix, args.test_fraction, args.split_seed)
    print(f"{matrix!r}; test tasks ({len(test_tasks)}): {', '.join(test_tasks)}; k = {args.k}, {args.num_seeds} seeds")
    texts = {}
    if "embedding" in names:
        from .completion.embedding import texts_for_matrix

        texts = dict(zip(("example_texts", "task_texts"), texts_for_matrix(matrix)))
    results = [
        evaluate_predictor(PREDICTORS[name](), matrix, test_tasks, k=args.k, seeds=range(args.num_seeds), **texts)
        for name in names
    ]
    print(results_table(results, matrix.metric))
    if args.output:
        atomic_write_text(args.output, json.dumps({"test_tasks": test_tasks, "results": results}, indent=2))
    return 0


def _fit(argv: list[str]) -> int:
    from .completion import PREDICTORS
    from .matrix import ForgettingMatrix

    args = _parse(FitArguments, argv, "fit", positional="matrix")
    if args.predictor not in PREDICTORS or args.predictor == "tensor":
        raise ValueError(f"Unknown predictor {args.predictor!r}; choose from {sorted(set(PREDICTORS) - {'tensor'})}")
    kwargs = {"rank": args.rank} if args.rank is not None and args.predictor in ("mf", "logistic_mf") else {}
    predictor = PREDICTORS[args.predictor](**kwargs).fit(ForgettingMatrix.load(args.matrix))
    print(f"Saved {type(predictor).__name__} to {predictor.save_pretrained(args.output_dir)}")
    return 0


def _predict(argv: list[str]) -> int:
    import numpy as np

    from .completion import ForgettingPredictor
    from .files import atomic_write_text

    args = _parse(PredictArguments, argv, "predict", positional="predictor")
    if args.known is None:
        raise ValueError("--known <csv with columns example_id,value> is required")
    known_ids, values = _read_csv_column(args.known, "example_id", "value")
    predictor = ForgettingPredictor.from_pretrained(args.predictor)
    predicted = predictor.predict(known_ids, values)
    lines = ["example_id,predicted"] + [f"{i},{v:.6g}" for i, v in zip(predictor.example_ids, predicted)]
    atomic_write_text(args.output, "\n".join(lines))
    top = np.argsort(-predicted)[:5]
    print("Most forgotten (predicted): " + ", ".join(f"{predictor.example_ids[j]} ({predicted[j]:+.3f})" for j in top))
    print(f"Wrote {len(predicted)} predictions to {args.output}")
    return 0


def _read_csv_column(path: str, key: str, value: str) -> tuple[list[str], list[float]]:
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {key, value} <= set(rows[0]):
        raise ValueError(f"{path}: expected a header with columns {key},{value}")
    try:
        return [row[key] for row in rows], [float(row[value]) for row in rows]
    except ValueError as error:
        raise ValueError(f"{path}: non-numeric {value} ({error})") from None


def _train(argv: list[str]) -> int:
    from trl import ModelConfig, TrlParser, get_peft_config

    from .completion import ForgettingPredictor
    from .data import load_task, load_upstream
    from .modeling import EMBEDDED_MODEL, load_model_and_tokenizer
    from .replay import ReplayConfig, ReplayTrainer

    parser = TrlParser((TrainArguments, ReplayConfig, ModelConfig), prog="hf-forgetting train")
    args, replay_args, model_args = parser.parse_args_and_config(argv)
    if args.task is None:
        raise ValueError("--task is required")
    upstream = load_upstream(args.upstream_dataset, args.num_upstream_examples, args.upstream_seed)
    scores = predictor = known = None
    if args.replay_scores_file:
        ids, values = _read_csv_column(args.replay_scores_file, "example_id", "score")
        lookup = dict(zip(ids, values))
        missing = [i for i in upstream["example_id"] if i not in lookup]
        if missing:
            raise ValueError(f"{args.replay_scores_file}: no score for {len(missing)} upstream examples, e.g. {missing[:3]}")
        scores = [lookup[i] for i in upstream["example_id"]]
    if args.predictor_dir:
        predictor = ForgettingPredictor.from_pretrained(args.predictor_dir)
    if args.known:
        known = _read_csv_column(args.known, "example_id", "value")
    model, tokenizer = load_model_and_tokenizer(model_args.model_name_or_path or EMBEDDED_MODEL)
    train_dataset = load_task(
        args.task, args.max_train_examples, args.task_seed,
        prompt_field=args.task_prompt_field, completion_field=args.task_completion_field,
    ).remove_columns(["example_id"])
    trainer = ReplayTrainer(
        model=model, args=replay_args, train_dataset=train_dataset, processing_class=tokenizer,
        peft_config=get_peft_config(model_args), replay_dataset=upstream, replay_scores=scores,
        replay_predictor=predictor, replay_known=known,
    )
    trainer.train(resume_from_checkpoint=replay_args.resume_from_checkpoint)
    trainer.save_model()
    print(f"Model saved to {replay_args.output_dir}; never-replayed upstream examples: {len(trainer.heldout_ids)}")
    return 0


def _replay_experiment(argv: list[str]) -> int:
    from trl import ModelConfig, TrlParser

    from .replay import ReplayConfig
    from .replay.experiment import ReplayExperimentArguments, run_replay_experiment

    parser = TrlParser((ReplayExperimentArguments, ReplayConfig, ModelConfig), prog="hf-forgetting replay-experiment")
    args, replay_args, model_args = parser.parse_args_and_config(argv)
    if args.matrix is None:
        raise ValueError("--matrix is required")
    run_replay_experiment(args, replay_args, model_args)
    return 0


def _push(argv: list[str]) -> int:
    from pathlib import Path

    from .completion import ForgettingPredictor
    from .completion.base import CONFIG_FILE
    from .matrix import META_FILE, ForgettingMatrix

    args = _parse(PushArguments, argv, "push", positional=("folder", "repo_id"))
    if not args.folder or not args.repo_id:
        raise ValueError("usage: hf-forgetting push FOLDER REPO_ID [--private] [--branch B] [--commit_message M]")
    folder = Path(args.folder)
    if (folder / "matrix" / META_FILE).exists():
        folder = folder / "matrix"  # a collect output folder
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
    from huggingface_hub import HfApi

    from .completion import ForgettingPredictor
    from .completion.base import CONFIG_FILE
    from .matrix import ForgettingMatrix

    args = _parse(PullArguments, argv, "pull", positional=("repo_id", "folder"))
    if not args.repo_id or not args.folder:
        raise ValueError("usage: hf-forgetting pull REPO_ID FOLDER [--revision R]")
    files = HfApi(token=args.token).list_repo_files(args.repo_id, repo_type="dataset", revision=args.revision)
    if CONFIG_FILE in files:
        predictor = ForgettingPredictor.from_pretrained(args.repo_id, revision=args.revision, token=args.token)
        print(f"Saved {type(predictor).__name__} from {args.repo_id} to {predictor.save_pretrained(args.folder)}")
        return 0
    matrix = ForgettingMatrix.from_hub(args.repo_id, args.revision, args.token, args.on_duplicate)
    contributors = sorted({row.get("contributor", "?") for row in matrix.metadata["rows"].values()})
    print(f"Saved {matrix!r} from {args.repo_id}@{matrix.metadata['hub']['revision'][:12]} to {matrix.save(args.folder)}")
    print(f"Contributors: {', '.join(contributors)}")
    return 0


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
    from .sources import SourceUnavailableError

    from .matrix import ForgettingMatrixError

    handlers = {
        "collect": _collect, "analyze": _analyze, "evaluate": _evaluate, "fit": _fit, "predict": _predict,
        "train": _train, "replay-experiment": _replay_experiment, "push": _push, "pull": _pull,
    }
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return handlers[stage](rest)
    except (SourceUnavailableError, ForgettingMatrixError, HfHubHTTPError, FileNotFoundError, KeyError, ValueError) as error:
        print(f"hf-forgetting {stage}: {error}", file=sys.stderr)  # a clear message, not a traceback
        return 1


if __name__ == "__main__":
    sys.exit(main())
