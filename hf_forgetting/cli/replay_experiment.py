"""``hf-forgetting replay-experiment``: hold tasks out of a matrix; compare no / random / predicted / true replay."""

from __future__ import annotations

from .parsing import parse_training_stage


def main(argv: list[str]) -> int:
    from trl import ModelConfig

    from ..replay import ReplayConfig
    from ..replay.experiment import ReplayExperimentArguments, run_replay_experiment

    dataclass_types = (ReplayExperimentArguments, ReplayConfig, ModelConfig)
    args, replay_args, model_args = parse_training_stage(dataclass_types, "replay-experiment", argv)
    run_replay_experiment(args, replay_args, model_args)
    return 0
