"""``hf-forgetting pull``: a matrix (all contributions merged) or a predictor from a Hub dataset repo."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import parse_stage


@dataclass
class PullArguments:
    repo_id: str = field(metadata={"help": "Hub dataset repo holding a matrix or a predictor."})
    folder: str = field(metadata={"help": "Where to save it (ForgettingMatrix.save / save_pretrained)."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit id (default: main)."})
    on_duplicate: str = field(default="error", metadata={"help": "Two contributions of one task: 'error' or 'first'."})
    token: str | None = field(default=None, metadata={"help": "Hub token, for private repos."})


def main(argv: list[str]) -> int:
    from ..completion import ForgettingPredictor
    from ..format.predictor import PREDICTOR_KIND
    from ..hub.predictor_repo import repo_kind
    from ..matrix import ForgettingMatrix

    args = parse_stage(PullArguments, argv, "pull", positional=("repo_id", "folder"))
    if repo_kind(args.repo_id, args.revision, args.token) == PREDICTOR_KIND:
        predictor = ForgettingPredictor.from_pretrained(args.repo_id, revision=args.revision, token=args.token)
        print(f"Saved {type(predictor).__name__} from {args.repo_id} to {predictor.save_pretrained(args.folder)}")
        return 0
    matrix = ForgettingMatrix.from_hub(args.repo_id, args.revision, args.token, args.on_duplicate)
    contributors = sorted({row.get("contributor", "?") for row in matrix.metadata.get("rows", {}).values()})
    print(f"Saved {matrix!r} from {args.repo_id}@{matrix.metadata['hub']['revision'][:12]} to {matrix.save(args.folder)}")
    print(f"Contributors: {', '.join(contributors)}")
    return 0
