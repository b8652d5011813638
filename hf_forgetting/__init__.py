"""hf_forgetting: measure, predict and prevent forgetting when fine-tuning language models.

Top-level names are imported when first used, so that reading a matrix or a predictor never loads
torch, transformers, TRL or gradio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> module that defines it
_LAZY = {
    "ForgettingMatrix": ".matrix",
    "low_rank_report": ".analysis",
    "AdditivePredictor": ".completion",
    "ColumnMeanPredictor": ".completion",
    "EmbeddingSimilarityPredictor": ".completion",
    "ForgettingPredictor": ".completion",
    "KNNPredictor": ".completion",
    "LogisticMFPredictor": ".completion",
    "MFPredictor": ".completion",
    "TensorPredictor": ".completion",
    "evaluate_predictor": ".completion",
    "ForgettingMonitorCallback": ".monitor",
    "interpolate_weights": ".interpolation",
    "MeasureArguments": ".measure",
    "measure_forgetting": ".measure",
    "ReplayConfig": ".replay",
    "ReplayTrainer": ".replay",
    "exact_match_scores": ".scoring",
    "score_examples": ".scoring",
}
__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from .analysis import low_rank_report as low_rank_report
    from .completion import (
        AdditivePredictor as AdditivePredictor,
    )
    from .completion import (
        ColumnMeanPredictor as ColumnMeanPredictor,
    )
    from .completion import (
        EmbeddingSimilarityPredictor as EmbeddingSimilarityPredictor,
    )
    from .completion import (
        ForgettingPredictor as ForgettingPredictor,
    )
    from .completion import (
        KNNPredictor as KNNPredictor,
    )
    from .completion import (
        LogisticMFPredictor as LogisticMFPredictor,
    )
    from .completion import (
        MFPredictor as MFPredictor,
    )
    from .completion import (
        TensorPredictor as TensorPredictor,
    )
    from .completion import (
        evaluate_predictor as evaluate_predictor,
    )
    from .interpolation import interpolate_weights as interpolate_weights
    from .matrix import ForgettingMatrix as ForgettingMatrix
    from .measure import MeasureArguments as MeasureArguments
    from .measure import measure_forgetting as measure_forgetting
    from .monitor import ForgettingMonitorCallback as ForgettingMonitorCallback
    from .replay import ReplayConfig as ReplayConfig
    from .replay import ReplayTrainer as ReplayTrainer
    from .scoring import exact_match_scores as exact_match_scores
    from .scoring import score_examples as score_examples


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
