"""An `SFTTrainer` whose loss projects only the positions that have a label through the LM head, on a CPU too.

TRL's fused LM head scores only the positions with a label where Triton runs (CUDA, XPU). Elsewhere it
projects every position — prompt, padding and all — through the LM head and folds each vocabulary tile in
torch, with the bookkeeping of its entropy and top-1 metrics on every one of them. With prompt-completion
tasks most positions are prompt: on the demo's tasks that work is about a third of a CPU training step.

`LabelPositionsSFTTrainer` computes the same loss — the sum of the label tokens' NLL divided by
`num_items_in_batch` (or by the batch's label tokens) — from the backbone's hidden states at the label
positions alone, where that is the whole of TRL's loss: a single process off CUDA/XPU, `loss_type="nll"`,
no `compute_loss_func`, label smoothing, `shift_labels`, logit scaling or soft-capping, router loss, and a
text-only model. Anywhere else it is `SFTTrainer`. On its own path the token metrics TRL logs with the
loss (entropy, mean token accuracy, token count) are not computed; the loss, gradient norm and learning
rate are. It enters accelerate's autocast itself, since it calls the backbone and the head directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from .scoring import LOGIT_TRANSFORM_FIELDS

TRITON_DEVICES = ("cuda", "xpu")  # where TRL's fused head already skips unlabelled positions
# Config fields with which the logits are more than `lm_head(hidden)` (scaled, soft-capped) or the loss more than
# the NLL (a mixture of experts' router loss): TRL's path handles them, this one leaves them to it.
LOGIT_OR_LOSS_FIELDS = (*LOGIT_TRANSFORM_FIELDS, "output_router_logits")


class LabelPositionsSFTTrainer(SFTTrainer):
    """`SFTTrainer` with the LM head applied to the label positions only, where TRL would project them all."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not self._projects_label_positions_itself(inputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        causal_lm = self.accelerator.unwrap_model(model)
        if hasattr(causal_lm, "get_base_model"):  # PEFT: the adapters live inside the base model's modules
            causal_lm = causal_lm.get_base_model()
        backbone_inputs = {key: value for key, value in inputs.items() if key not in ("labels", "use_cache")}
        labels = inputs["labels"][:, 1:]
        labelled = labels != -100
        # The mixed precision accelerate gives the wrapped model's forward (`bf16=True`), which this path bypasses
        with self.accelerator.autocast():
            hidden = causal_lm.base_model(**backbone_inputs, use_cache=False).last_hidden_state[:, :-1]
            logits = causal_lm.get_output_embeddings()(hidden[labelled]).float()
        token_nll = F.cross_entropy(logits, labels[labelled], reduction="sum")
        tokens = labelled.sum() if num_items_in_batch is None else num_items_in_batch
        return token_nll / torch.as_tensor(tokens, device=token_nll.device).clamp(min=1)

    def _projects_label_positions_itself(self, inputs) -> bool:
        text_config = self.model.config.get_text_config()
        return (
            self.model.training
            and "labels" in inputs
            and "shift_labels" not in inputs
            and inputs["labels"].device.type not in TRITON_DEVICES
            and self.accelerator.num_processes == 1
            and self.args.loss_type == "nll"
            and self.compute_loss_func is None
            and self.label_smoother is None
            and text_config is self.model.config  # a text model, not a vision-language wrapper
            and all(getattr(text_config, field, None) is None for field in LOGIT_OR_LOSS_FIELDS)
        )
