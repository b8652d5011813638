"""Predicting a new task's forgetting row from a few measured entries (matrix and tensor completion)."""

from .additive import AdditivePredictor, ColumnMeanPredictor
from .base import ForgettingPredictor, NotFittedError
from .embedding import EmbeddingSimilarityPredictor
from .evaluation import evaluate_predictor, split_rows
from .knn import KNNPredictor
from .logistic import LogisticMFPredictor
from .mf import MFPredictor
from .tensor import TensorPredictor

PREDICTORS = {
    "embedding": EmbeddingSimilarityPredictor,
    "column_mean": ColumnMeanPredictor,
    "additive": AdditivePredictor,
    "knn": KNNPredictor,
    "mf": MFPredictor,
    "logistic_mf": LogisticMFPredictor,
    "tensor": TensorPredictor,
}

__all__ = [
    "PREDICTORS",
    "AdditivePredictor",
    "ColumnMeanPredictor",
    "EmbeddingSimilarityPredictor",
    "ForgettingPredictor",
    "KNNPredictor",
    "LogisticMFPredictor",
    "MFPredictor",
    "NotFittedError",
    "TensorPredictor",
    "evaluate_predictor",
    "split_rows",
]
