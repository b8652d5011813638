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
}


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


def _collect(argv: list[str]) -> int:
    from trl import ModelConfig, SFTConfig, TrlParser

    from .collect import CollectArguments, collect_forgetting_matrix

    parser = TrlParser((CollectArguments, SFTConfig, ModelConfig), prog="hf-forgetting collect")
    args, training_args, model_args = parser.parse_args_and_config(argv)
    collect_forgetting_matrix(args, training_args, model_args)
    return 0


def _parse(dataclass_type, argv: list[str], stage: str, positional: str | None = None):
    """TrlParser semantics (--config YAML, flags override), plus one optional leading positional argument."""
    from trl import TrlParser

    if positional and argv and not argv[0].startswith("-"):
        argv = [f"--{positional}", argv[0], *argv[1:]]
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
    import csv

    import numpy as np

    from .completion import ForgettingPredictor
    from .files import atomic_write_text

    args = _parse(PredictArguments, argv, "predict", positional="predictor")
    if args.known is None:
        raise ValueError("--known <csv with columns example_id,value> is required")
    with open(args.known, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"example_id", "value"} <= set(rows[0]):
        raise ValueError(f"{args.known}: expected a header with columns example_id,value")
    try:
        values = [float(row["value"]) for row in rows]
    except ValueError as error:
        raise ValueError(f"{args.known}: non-numeric value ({error})") from None
    predictor = ForgettingPredictor.from_pretrained(args.predictor)
    predicted = predictor.predict([row["example_id"] for row in rows], values)
    lines = ["example_id,predicted"] + [f"{i},{v:.6g}" for i, v in zip(predictor.example_ids, predicted)]
    atomic_write_text(args.output, "\n".join(lines))
    top = np.argsort(-predicted)[:5]
    print("Most forgotten (predicted): " + ", ".join(f"{predictor.example_ids[j]} ({predicted[j]:+.3f})" for j in top))
    print(f"Wrote {len(predicted)} predictions to {args.output}")
    return 0


def _usage() -> str:
    lines = ["usage: hf-forgetting <stage> --config <recipe.yaml> [--flag value ...]", "", "stages:"]
    lines += [f"  {name:<10} {help_}" for name, help_ in STAGES.items()]
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

    handlers = {"collect": _collect, "analyze": _analyze, "evaluate": _evaluate, "fit": _fit, "predict": _predict}
    try:
        return handlers[stage](rest)
    except (SourceUnavailableError, ForgettingMatrixError, FileNotFoundError, KeyError, ValueError) as error:
        print(f"hf-forgetting {stage}: {error}", file=sys.stderr)  # a clear message, not a traceback
        return 1


if __name__ == "__main__":
    sys.exit(main())
