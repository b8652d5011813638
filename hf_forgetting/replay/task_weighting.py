"""Weights of the task's own examples that limit forgetting without upstream data: FLOW (Sanyal et al., ICML 2025,
"Upweighting Easy Samples in Fine-Tuning Mitigates Forgetting"). Each task example's loss is multiplied by
``exp(-L_i / tau)``, where ``L_i`` is the base model's mean token loss on it and ``tau`` by default the median of
those losses, as in the authors' code: examples the base already predicts well pull the model away from it least.
"""

from __future__ import annotations

import numpy as np


def flow_weights(base_losses, temperature: float | None = None) -> np.ndarray:
    """``exp(-L / tau)`` of each example's base-model loss ``L``; ``tau`` defaults to the median finite loss.

    Examples without a finite loss (no trained token) get weight 0, as the authors' code gives them.
    """
    losses = np.asarray(base_losses, dtype=np.float64)
    finite = np.isfinite(losses)
    if not finite.any():
        raise ValueError("FLOW needs the base model's loss on at least one task example; none is finite")
    tau = float(np.median(losses[finite])) if temperature is None else float(temperature)
    if not tau > 0 or not np.isfinite(tau):
        raise ValueError(f"FLOW's temperature must be a finite number > 0; got {tau} "
                         + ("(the median base loss)" if temperature is None else ""))
    return np.where(finite, np.exp(-np.where(finite, losses, 0.0) / tau), 0.0)
