"""Targeted replay while fine-tuning: ReplayConfig / ReplayTrainer, drop-in for TRL's SFTConfig / SFTTrainer."""

from .config import ReplayConfig
from .schedule import ReplaySampler, replay_probabilities
from .trainer import ReplayTrainer

__all__ = ["ReplayConfig", "ReplaySampler", "ReplayTrainer", "replay_probabilities"]
