"""The predictor format: ``predictor.json`` (kind, class, settings, example ids, small state) and
``model.safetensors`` (the fitted arrays), in a local folder or a Hub dataset repo. Nothing is pickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PredictorFormatError
from .matrix import METRICS, check_kind, validate_ids

PREDICTOR_KIND = "forgetting_predictor"
PREDICTOR_FORMAT_VERSION = 1
CONFIG_FILE = "predictor.json"
WEIGHTS_FILE = "model.safetensors"
PREDICTOR_FILES = (CONFIG_FILE, WEIGHTS_FILE)


@dataclass(frozen=True)
class PredictorHeader:
    """The content of ``predictor.json``.

    Args:
        predictor_class (`str`):
            Class name, looked up in the predictor registry (never imported by name).
        config (`dict`):
            Constructor arguments.
        metric (`str`):
            Metric of the matrix it was fitted on.
        example_ids (`list[str]`):
            Column order of every predicted row.
        state (`dict`):
            Small JSON fitted state beside the arrays.
        source (`dict`, *optional*):
            What the fitted matrix measured: `base_model` and `score_max_length` where it recorded them
            (empty where it recorded neither).
    """

    predictor_class: str
    config: dict
    metric: str
    example_ids: list[str]
    state: dict
    source: dict = field(default_factory=dict)

    def to_json(self) -> str:
        content = {
            "kind": PREDICTOR_KIND,
            "format_version": PREDICTOR_FORMAT_VERSION,
            "predictor_class": self.predictor_class,
            "config": self.config,
            "metric": self.metric,
            "example_ids": self.example_ids,
            "state": self.state,
            "source": self.source,
        }
        return json.dumps(content, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> PredictorHeader:
        try:
            content = json.loads(text, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as error:
            raise PredictorFormatError(f"{where}: not valid JSON ({error})") from None
        if not isinstance(content, dict):
            raise PredictorFormatError(f"{where}: expected a JSON object")
        check_kind(content.get("kind", PREDICTOR_KIND), PREDICTOR_KIND, where)
        if content.get("format_version") != PREDICTOR_FORMAT_VERSION:
            raise PredictorFormatError(f"{where}: unsupported format_version {content.get('format_version')!r}")
        for key, kind in (("predictor_class", str), ("config", dict), ("metric", str), ("example_ids", list)):
            if not isinstance(content.get(key), kind):
                raise PredictorFormatError(f"{where}: field {key!r} missing or not a {kind.__name__}")
        if content["metric"] not in METRICS:
            raise PredictorFormatError(f"{where}: metric must be one of {METRICS}; got {content['metric']!r}")
        state = content.get("state", {})
        if not isinstance(state, dict):
            raise PredictorFormatError(f"{where}: field 'state' is not an object")
        source = content.get("source", {})
        if not isinstance(source, dict) or not all(isinstance(v, (str, int, type(None))) for v in source.values()):
            raise PredictorFormatError(f"{where}: field 'source' is not an object of strings and integers")
        try:
            example_ids = validate_ids(content["example_ids"], "example_ids")
        except ValueError as error:
            raise PredictorFormatError(f"{where}: {error}") from None
        return cls(content["predictor_class"], content["config"], content["metric"], example_ids, state, source)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``model.safetensors`` (never a pickle)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except (SafetensorError, OSError) as error:
        raise PredictorFormatError(f"{path}: cannot read ({error})") from None


def write_arrays(path: str, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(array) for name, array in arrays.items()}, path)


def finite_number(value: Any, name: str, where: str) -> float:
    """``value`` as a float, refused unless it is a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PredictorFormatError(f"{where}: {name} must be a finite number; got {value!r}")
    return float(value)
