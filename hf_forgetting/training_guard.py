"""A guard for training that silently changes nothing.

A model that went through a Trainer keeps TRL's patched ``forward`` in its instance dict; a deep copy
of it keeps a closure over the *original* model, so a forward call on the copy can run the original's
parameters and the optimizer, which holds the copy's, updates nothing. The loss looks normal and every
parameter stays as it was. ``ParameterUpdateGuard`` notices: after the first optimizer step taken
with a positive learning rate, if no trainable parameter changed, it stops the run with a one-line
error instead of letting it produce a row, a replay run or a monitor reading.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from .errors import HfForgettingError


class TrainingDidNotUpdateError(HfForgettingError, RuntimeError):
    """An optimizer step with a positive learning rate left every trainable parameter unchanged."""


class ParameterUpdateGuard(TrainerCallback):
    """Raise `TrainingDidNotUpdateError` when the first optimizer step with a positive learning rate
    changes no trainable parameter; afterwards it costs nothing.

    A checksum of every trainable parameter (its sum and sum of squares, in float64, plus its first
    values) is taken before the step and compared after it.
    """

    def __init__(self):
        self.checked = False
        self._before: list[torch.Tensor] | None = None
        self._learning_rate = 0.0

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.checked or model is None:
            return
        self._learning_rate = max((group.get("lr", 0.0) for group in optimizer.param_groups), default=0.0) if optimizer else 0.0
        self._before = _checksums(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.checked or model is None or self._before is None:
            return
        if self._learning_rate <= 0:  # e.g. the first step of a warm-up from 0: nothing can change yet
            return
        self.checked = True
        after = _checksums(model)
        if after and all(torch.equal(old, new) for old, new in zip(self._before, after)):
            raise TrainingDidNotUpdateError(
                f"Optimizer step {state.global_step} (learning rate {self._learning_rate:g}) left all "
                f"{len(after)} trainable parameters of the {type(model).__name__} unchanged: the loss does not reach "
                "the parameters the optimizer holds (for example a deep copy of a model that went through a "
                "Trainer, whose forward still runs the original). Load a fresh model instead of copying one."
            )
        self._before = None


def _checksums(model) -> list[torch.Tensor]:
    sums = []
    with torch.no_grad():
        for parameter in model.parameters():
            local = parameter.to_local() if hasattr(parameter, "to_local") else parameter  # FSDP2 shards
            if parameter.requires_grad and local.numel() > 0:  # ZeRO-3 leaves empty placeholders here
                flat = local.detach().reshape(-1)
                double = flat.double()
                sums.append(torch.cat([double.sum().reshape(1), (double * double).sum().reshape(1), flat[:16].double().cpu()]).cpu())
    return sums
