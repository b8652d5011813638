"""``hf-forgetting adapt``: continue training the base model on the upstream examples (cached)."""

from __future__ import annotations

from .parsing import parse_training_stage


def main(argv: list[str]) -> int:
    from trl import ModelConfig, SFTConfig

    from ..adapt import AdaptArguments, adapt_base_model

    args, training_args, model_args = parse_training_stage((AdaptArguments, SFTConfig, ModelConfig), "adapt", argv)
    adapt_base_model(args, training_args, model_args)
    return 0
