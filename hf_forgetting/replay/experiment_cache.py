"""What the replay experiment keeps between runs: each finished run's file, keyed by a hash of every setting that
changes it, and the base model's scores of each seed's held-out examples. An unusable file is made again."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from ..files import atomic_write_text
from ..modeling import load_model_and_tokenizer
from ..scoring import cast_for_scoring, score_examples


def settings_key(*parts) -> str:
    """A short hash of everything that changes a run (JSON of the parts, sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


RUN_FIELDS = {"task": str, "method": str, "seed": int, "settings_key": str, "heldout_ids": list, "heldout_forgetting": list,
              "mean_heldout_forgetting": float, "top_quartile_forgetting": float, "task_eval_nll": float}


def read_run(path: Path, expected: dict) -> dict | None:
    """A finished run's file, or None when it is missing or unusable (then the run is made again): it must be
    the run its name says (task, arm, seed, settings key, held-out examples) with a finite value for each."""
    if not path.exists():
        return None
    try:
        run = json.loads(path.read_text())
        usable = isinstance(run, dict) and all(isinstance(run.get(k), t) for k, t in RUN_FIELDS.items())
        usable = usable and all(run[name] == value for name, value in expected.items())
        usable = usable and len(run["heldout_forgetting"]) == len(run["heldout_ids"]) and np.isfinite(run["heldout_forgetting"]).all()
    except (ValueError, TypeError):  # not JSON, not UTF-8, or not numbers
        usable = False
    if not usable:
        warnings.warn(f"{path}: not a usable run file of {expected['task']} / {expected['method']} / seed {expected['seed']}; "
                      "running it again", stacklevel=2)
        return None
    return run


def cached_base_scores(heldout_set, model_args, *, score_length, score_dtype, path: Path, write: bool) -> np.ndarray:
    """Base-model NLL of the held-out examples of one seed, cached in `path` (named by the key of what it depends on);
    only the process that `write`s stores it."""
    if path.exists():
        try:
            cached = json.loads(path.read_text())
            scores = np.array(cached["scores"], dtype=np.float64)
            if cached["example_ids"] == list(heldout_set["example_id"]) and np.isfinite(scores).all():
                return scores
        except (ValueError, TypeError, KeyError):
            pass
        warnings.warn(f"{path}: not usable base scores of these held-out examples; scoring them again", stacklevel=2)
    model, tokenizer = load_model_and_tokenizer(model_args)
    base = score_examples(cast_for_scoring(model, score_dtype), tokenizer, heldout_set, max_length=score_length, show_progress=False)
    if write:
        atomic_write_text(path, json.dumps({"example_ids": list(heldout_set["example_id"]), "scores": base.tolist()}))
    return base
