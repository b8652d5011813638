"""``hf-forgetting push``: a matrix (new repo, or new task rows) or a predictor to a Hub dataset repo."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import parse_stage


@dataclass
class PushArguments:
    folder: str = field(metadata={"help": "A saved matrix (or a collect output folder) or a saved predictor."})
    repo_id: str = field(metadata={"help": "Hub dataset repo, 'user/name'."})
    private: bool | None = field(default=None, metadata={"help": "Create the repo private (new repos only)."})
    branch: str | None = field(default=None, metadata={"help": "Branch to commit to (default: main)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit title (default: says what was added)."})
    license: str | None = field(default=None, metadata={"help": "License of the dataset card (matrices; default: 'other')."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the saved login)."})


def main(argv: list[str]) -> int:
    from pathlib import Path

    from ..completion import ForgettingPredictor
    from ..errors import RepoKindError
    from ..format.matrix import HEADER_FILE
    from ..format.predictor import CONFIG_FILE
    from ..matrix import ForgettingMatrix

    args = parse_stage(PushArguments, argv, "push", positional=("folder", "repo_id"))
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
