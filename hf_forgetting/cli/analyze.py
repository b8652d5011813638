"""``hf-forgetting analyze``: how low-rank a matrix is (R^2 by rank, simpler models, spectrum, plots)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import check_at_least, parse_stage


@dataclass
class AnalyzeArguments:
    matrix: str = field(metadata={"help": "Folder of a saved ForgettingMatrix."})
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the report (default: <matrix>/../analysis)."})
    max_rank: int = field(default=9, metadata={"help": "Largest rank of the truncated-SVD fits."})

    def __post_init__(self):
        check_at_least(self, max_rank=1)


def main(argv: list[str]) -> int:
    from pathlib import Path

    from ..analysis import report_markdown, write_low_rank_report
    from ..matrix import ForgettingMatrix

    args = parse_stage(AnalyzeArguments, argv, "analyze", positional="matrix")
    matrix = ForgettingMatrix.load(args.matrix)
    output_dir = Path(args.output_dir or Path(args.matrix).resolve().parent / "analysis")
    report = write_low_rank_report(matrix, output_dir, max_rank=args.max_rank)
    print(report_markdown(report, matrix))
    print(f"Report and plots: {output_dir}")
    return 0
