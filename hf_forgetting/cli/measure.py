"""``hf-forgetting measure``: what a fine-tuned checkpoint forgot; k probes measured, the whole row predicted."""

from __future__ import annotations

from .parsing import check_recipe_types, stage_parser


def main(argv: list[str]) -> int:
    from trl import ModelConfig

    from ..measure import MeasureArguments, measure_forgetting

    check_recipe_types(argv, (MeasureArguments, ModelConfig))
    args, model_args = stage_parser((MeasureArguments, ModelConfig), "measure").parse_args_and_config(argv)
    result = measure_forgetting(args, model_args)
    print(result.summary)
    print("Wrote " + ", ".join(str(path) for path in result.files.values()))
    return 0
