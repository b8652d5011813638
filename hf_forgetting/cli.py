"""The ``hf-forgetting`` command: one sub-command per stage, each configured by a recipe YAML.

    hf-forgetting collect --config recipes/smollm2-135m-instruct/collect/config_demo.yaml
    accelerate launch -m hf_forgetting collect --config <recipe> [--flag value ...]

Flags given on the command line override the recipe's values (TRL's ``TrlParser`` semantics).
"""

from __future__ import annotations

import sys

STAGES = {
    "collect": "fine-tune the base model on each task and record the forgetting matrix (resumable)",
}


def _collect(argv: list[str]) -> int:
    from trl import ModelConfig, SFTConfig, TrlParser

    from .collect import CollectArguments, collect_forgetting_matrix

    parser = TrlParser((CollectArguments, SFTConfig, ModelConfig), prog="hf-forgetting collect")
    args, training_args, model_args = parser.parse_args_and_config(argv)
    collect_forgetting_matrix(args, training_args, model_args)
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

    try:
        return {"collect": _collect}[stage](rest)
    except SourceUnavailableError as error:  # a clear message, not a traceback
        print(f"hf-forgetting {stage}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
