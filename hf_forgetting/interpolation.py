"""Weight interpolation with the base model (WiSE-FT, Wortsman et al., CVPR 2022): after training, move the
fine-tuned weights part of the way back to the base's, ``base + alpha * (tuned - base)``. It costs no training
and trades some of what the fine-tune learned for some of what it forgot; ``alpha`` sets where on that line.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def interpolate_weights(tuned, base, alpha: float = 0.5):
    """Move every parameter of `tuned` to ``base + alpha * (tuned - base)``, in place, and return the model.

    Args:
        tuned (`PreTrainedModel` or `PeftModel`):
            The fine-tuned model. A PEFT model's adapters are merged into its base weights first and the merged
            model is returned (the adapters' delta is what gets scaled).
        base (`PreTrainedModel`):
            The model it was fine-tuned from: the same architecture, parameter names and shapes.
        alpha (`float`, *optional*, defaults to `0.5`):
            Weight of the fine-tuned model: 1 keeps it, 0 gives back the base.

    Returns:
        The interpolated model (`tuned` itself, or the merged model of a PEFT `tuned`).

    Example:
    ```python
    >>> base, _ = load_model_and_tokenizer(model_args)
    >>> model = interpolate_weights(trainer.model, base, alpha=0.5)
    ```
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1] (1: the fine-tuned weights, 0: the base's); got {alpha}")
    if hasattr(tuned, "merge_and_unload"):
        tuned = tuned.merge_and_unload()
    base_parameters = dict(base.named_parameters())
    pairs = []
    for name, parameter in tuned.named_parameters():  # tied weights are listed once, so none moves twice
        reference = base_parameters.get(name)
        if reference is None or reference.shape != parameter.shape:
            found = "missing" if reference is None else f"of shape {tuple(reference.shape)}"
            raise ValueError(f"The base model does not match the fine-tuned one: parameter {name!r} of shape "
                             f"{tuple(parameter.shape)} is {found} in the base")
        pairs.append((parameter, reference))
    for parameter, reference in pairs:  # checked first: a mismatch leaves `tuned` as it was
        parameter.lerp_(reference.to(device=parameter.device, dtype=parameter.dtype), 1 - alpha)
    return tuned
