"""Predicting a new task's forgetting row from a few measured entries (matrix and tensor completion).

Every predictor registers itself in :data:`PREDICTORS` under its ``name``; :func:`predictor_class`
looks one up by name or class name. Importing this package loads numpy and safetensors only: a
predictor that needs a model (the embedding baseline) imports it when used.
"""

from .additive import AdditivePredictor, ColumnMeanPredictor
from .base import PREDICTORS, BiasedFactorsPredictor, ForgettingPredictor, NotFittedError, predictor_class
from .embedding import EmbeddingSimilarityPredictor
from .evaluation import evaluate_predictor, split_rows
from .knn import KNNPredictor
from .logistic import LogisticMFPredictor
from .mf import MFPredictor
from .tensor import TensorPredictor

__all__ = [
    "PREDICTORS",
    "AdditivePredictor",
    "BiasedFactorsPredictor",
    "ColumnMeanPredictor",
    "EmbeddingSimilarityPredictor",
    "ForgettingPredictor",
    "KNNPredictor",
    "LogisticMFPredictor",
    "MFPredictor",
    "NotFittedError",
    "TensorPredictor",
    "evaluate_predictor",
    "predictor_class",
    "split_rows",
]
