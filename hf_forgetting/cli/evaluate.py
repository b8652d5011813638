"""``hf-forgetting evaluate``: hold tasks out, reveal k entries each, compare predictors."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import check_at_least, parse_stage


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
        check_at_least(self, k=1, num_seeds=1)
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1); got {self.test_fraction}")


def main(argv: list[str]) -> int:
    from ..completion import predictor_class
    from ..matrix import ForgettingMatrix

    args = parse_stage(EvaluateArguments, argv, "evaluate", positional="matrix")
    matrix = ForgettingMatrix.load(args.matrix)
    binary = matrix.metric == "em_drop"
    names = args.predictors or (["column_mean", "logistic_mf"] if binary else ["column_mean", "additive", "knn", "mf"])
    if args.predictors is None and matrix.metadata.get("settings", {}).get("collect") and _upstream_texts_obtainable(matrix):
        names = ["embedding", *names]  # the LM-based baseline, when the matrix says where its texts come from
    classes = [predictor_class(name) for name in names]
    if args.test_matrix:
        _evaluate_on_new_rows(args, matrix, [name for name in names if name not in ("column_mean", "embedding")])
    else:
        _evaluate_held_out_tasks(args, matrix, classes)
    return 0


def _evaluate_on_new_rows(args: EvaluateArguments, matrix, names: list[str]) -> None:
    """Fit on the matrix and test on the rows of ``args.test_matrix``; the column mean is a baseline there."""
    import json

    from ..completion import predictor_class
    from ..completion.evaluation import evaluate_on_new_rows, new_rows_table
    from ..files import atomic_write_text
    from ..matrix import ForgettingMatrix

    new_rows = ForgettingMatrix.load(args.test_matrix)
    print(f"{matrix!r}; tested on the {len(new_rows.task_ids)} rows of {args.test_matrix}; k = {args.k}, {args.num_seeds} seeds")
    result = evaluate_on_new_rows([predictor_class(name) for name in names], matrix, new_rows, args.k, range(args.num_seeds))
    print(new_rows_table(result))
    if args.output:
        atomic_write_text(args.output, json.dumps(result, indent=2))


def _evaluate_held_out_tasks(args: EvaluateArguments, matrix, classes: list) -> None:
    import json

    from ..completion.evaluation import default_test_tasks, evaluate_predictor, results_table
    from ..files import atomic_write_text

    test_tasks = args.test_tasks or default_test_tasks(matrix, args.test_fraction, args.split_seed)
    print(f"{matrix!r}; test tasks ({len(test_tasks)}): {', '.join(test_tasks)}; k = {args.k}, {args.num_seeds} seeds")
    results = [evaluate_predictor(cls(), matrix, test_tasks, k=args.k, seeds=range(args.num_seeds)) for cls in classes]
    print(results_table(results, matrix.metric))
    if args.output:
        atomic_write_text(args.output, json.dumps({"test_tasks": test_tasks, "results": results}, indent=2))


def _upstream_texts_obtainable(matrix) -> bool:
    """Whether the texts of `matrix`'s upstream examples can be loaded; if the registry withholds their source, the
    default evaluation leaves the LM-based baseline out with a note instead of failing (asked for by name, it fails)."""
    from ..data.matrix_sources import load_matrix_upstream
    from ..sources import SourceRefusedError

    try:
        load_matrix_upstream(matrix)
    except SourceRefusedError as refusal:
        print(f"The LM-based baseline (embedding) is left out: its upstream texts cannot be fetched. {str(refusal)[:300]}")
        return False
    return True
