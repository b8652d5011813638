"""hf_forgetting: measure, predict and prevent forgetting when fine-tuning language models."""

from .analysis import low_rank_report
from .completion import (
    AdditivePredictor,
    ColumnMeanPredictor,
    ForgettingPredictor,
    KNNPredictor,
    LogisticMFPredictor,
    MFPredictor,
    TensorPredictor,
    evaluate_predictor,
)
from .matrix import ForgettingMatrix
from .replay import ReplayConfig, ReplayTrainer
from .scoring import exact_match_scores, score_examples

__version__ = "0.1.0"
__all__ = [
    "AdditivePredictor",
    "ColumnMeanPredictor",
    "ForgettingMatrix",
    "ForgettingPredictor",
    "KNNPredictor",
    "LogisticMFPredictor",
    "MFPredictor",
    "ReplayConfig",
    "ReplayTrainer",
    "TensorPredictor",
    "evaluate_predictor",
    "exact_match_scores",
    "low_rank_report",
    "score_examples",
]
