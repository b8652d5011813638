"""``hf-forgetting fit``: fit a predictor on a matrix and save it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import check_at_least, parse_stage


@dataclass
class FitArguments:
    matrix: str = field(metadata={"help": "Folder of a saved ForgettingMatrix."})
    predictor: str = field(default="mf", metadata={"help": "Predictor name: column_mean, additive, knn, mf, logistic_mf, tensor, embedding."})
    output_dir: str = field(default="predictor", metadata={"help": "Where save_pretrained writes the predictor."})
    rank: int | None = field(default=None, metadata={"help": "Rank for mf / logistic_mf."})

    def __post_init__(self):
        if self.rank is not None:
            check_at_least(self, rank=1)


def main(argv: list[str]) -> int:
    from ..completion import predictor_class
    from ..matrix import ForgettingMatrix

    args = parse_stage(FitArguments, argv, "fit", positional="matrix")
    cls = predictor_class(args.predictor)
    if args.rank is not None and "rank" not in cls.config_fields:
        raise ValueError(f"--rank applies to predictors with a rank, not {args.predictor!r}")
    kwargs = {"rank": args.rank} if args.rank is not None else {}
    predictor = cls(**kwargs).fit(ForgettingMatrix.load(args.matrix))
    print(f"Saved {type(predictor).__name__} to {predictor.save_pretrained(args.output_dir)}")
    return 0
