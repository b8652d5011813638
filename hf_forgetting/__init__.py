"""hf_forgetting: measure, predict and prevent forgetting when fine-tuning language models."""

from .matrix import ForgettingMatrix
from .scoring import exact_match_scores, score_examples

__version__ = "0.1.0"
__all__ = ["ForgettingMatrix", "exact_match_scores", "score_examples"]
