"""``ReplayConfig``: TRL's ``SFTConfig`` plus the settings of targeted replay (PAPER.md section 4)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import SFTConfig

from ..modeling import has_accelerator
from ..run_settings import check_training_settings, trains_in_emulated_bf16

REPLAY_STRATEGIES = ("none", "random", "predicted", "ground_truth", "mir", "online", "masked")
REPLAY_SELECTIONS = ("sample", "max")
REPLAY_WEIGHTINGS = ("token", "sequence")
TASK_WEIGHTINGS = ("none", "flow")
REPLAY_LOSSES = ("nll", "kl")


@dataclass
class ReplayConfig(SFTConfig):
    r"""
    Configuration for [`ReplayTrainer`]: every [`~trl.SFTConfig`] field, plus:

    Parameters:
        replay_ratio (`float`, *optional*, defaults to `1/32`):
            Upstream examples replayed per task example: one replay row after every `1 / replay_ratio` task rows.
        replay_strategy (`str`, *optional*, defaults to `"predicted"`):
            Which upstream examples to replay: `"none"` (plain SFT), `"random"` (uniform), `"predicted"` or
            `"ground_truth"` (by the forgetting scores given to the trainer), `"mir"` (the most forgotten of a fresh
            random candidate set, measured with the current model), `"online"` (random for the first
            `online_warmup_fraction` of steps, then by a row completed from `online_num_probe` measured examples),
            or `"masked"`: the batches of `"random"` with the replay rows trained on nothing, the control of a
            replay experiment that shares the replay arms' schedule (`"none"` is plain `SFTTrainer`).
        replay_temperature (`float`, *optional*, defaults to `0.1`):
            Temperature T of the sampling weights softmax(f / T) over forgetting scores f.
        replay_standardize_scores (`bool`, *optional*, defaults to `False`):
            Standardise the scores (zero mean, unit standard deviation over the pool) before softmax(f / T), so
            that T means the same for every row whatever its spread or a predictor's shrinkage.
        replay_selection (`str`, *optional*, defaults to `"sample"`):
            `"sample"`: draw without replacement with probabilities softmax(f / T); `"max"`: take the highest
            scores first.
        replay_heldout_size (`int`, *optional*, defaults to `0`):
            Upstream examples set aside (a seeded random subset) that are never replayed, to evaluate forgetting on
            (`trainer.heldout_ids`). By default every upstream example can be replayed; an evaluation holds out a set
            explicitly. At least one example must remain replayable.
        replay_seed (`int` or `None`, *optional*):
            Seed of the held-out split and the replay schedule; `None` (the default) follows `seed`, also when
            `seed` is changed later (e.g. with `dataclasses.replace`). See [`ReplayConfig.resolved_replay_seed`].
        replay_loss_weighting (`str`, *optional*, defaults to `"token"`):
            `"token"`: the usual mean over all scored tokens of the batch; `"sequence"`: the mean over sequences of
            each sequence's mean token loss (over the whole accumulated batch of every process), so long replayed
            documents do not dominate. Computed inside TRL's loss (its fused LM head's per-token log-probabilities
            are re-weighted), so TRL's metrics and gradient accumulation are unchanged; needs `loss_type="nll"`
            and no label smoothing.
        replay_max_length (`int` or `None`, *optional*):
            Tokens kept of each replayed upstream example, and scored for the online and MIR probes; defaults to
            `max_length`. Set it to the length the forgetting is measured on (the collection's
            `score_max_length`) to replay what is measured and no more: long passages then stop padding every
            batch of short task rows to `max_length`.
        replay_loss (`str`, *optional*, defaults to `"nll"`):
            `"nll"`: replay rows are trained on their text; `"kl"`: to keep the base model's next-token distribution
            (logit replay: KL(base || model) over the base's `replay_kl_top_k` likeliest tokens and the rest, at every
            position that would be trained; the base's part computed once per replay row before training). Each
            replay token's KL takes the place, and the weight, its NLL would have.
        replay_kl_top_k (`int`, *optional*, defaults to `32`):
            Tokens of the base's distribution kept per position for `replay_loss="kl"` (8 bytes each).
        task_weighting (`str`, *optional*, defaults to `"none"`):
            `"flow"`: each task example's loss is multiplied by `exp(-L / tau)`, `L` the base model's mean token loss
            on it, measured once before training (FLOW, Sanyal et al., ICML 2025): the examples the base already
            predicts well weigh most, which limits forgetting without any upstream data. Replay rows keep weight 1.
            Needs `loss_type="nll"` and no label smoothing.
        task_weighting_temperature (`float` or `None`, *optional*):
            `tau` of `"flow"`; defaults to the median of the base losses, as the authors set it.
        online_warmup_fraction (`float`, *optional*, defaults to `0.1`):
            Share of the training steps run with random replay before the online switch.
        online_num_probe (`int`, *optional*, defaults to `30`):
            Upstream examples measured at the online switch (k in the paper).
        mir_candidates (`int`, *optional*, defaults to `64`):
            Random replay candidates scored with the current model at each MIR refresh.
        mir_refresh_steps (`int`, *optional*, defaults to `10`):
            Optimizer steps between MIR refreshes.
    """

    replay_ratio: float = field(
        default=1 / 32,
        metadata={"help": "Upstream examples replayed per task example (one after every 1/ratio task rows)."},
    )
    replay_strategy: str = field(
        default="predicted",
        metadata={"help": "none, random, predicted, ground_truth, mir or online.", "choices": list(REPLAY_STRATEGIES)},
    )
    replay_temperature: float = field(default=0.1, metadata={"help": "Temperature T of softmax(f / T)."})
    replay_standardize_scores: bool = field(
        default=False, metadata={"help": "Standardise the scores over the pool before softmax(f / T)."}
    )
    replay_selection: str = field(
        default="sample",
        metadata={"help": "sample (without replacement by softmax(f/T)) or max (highest first).",
                  "choices": list(REPLAY_SELECTIONS)},
    )
    replay_heldout_size: int = field(
        default=0, metadata={"help": "Upstream examples never replayed, to evaluate forgetting on (default: none held out)."}
    )
    replay_seed: int | None = field(default=None, metadata={"help": "Seed of the held-out split and schedule (default: seed)."})
    replay_loss_weighting: str = field(
        default="token",
        metadata={"help": "token (mean over tokens) or sequence (mean over sequences of per-sequence means).",
                  "choices": list(REPLAY_WEIGHTINGS)},
    )
    replay_max_length: int | None = field(
        default=None, metadata={"help": "Tokens kept of each replayed upstream example (default: max_length)."}
    )
    replay_loss: str = field(
        default="nll",
        metadata={"help": "nll (train replay rows on their text) or kl (to the base model's next-token distribution).",
                  "choices": list(REPLAY_LOSSES)},
    )
    replay_kl_top_k: int = field(default=32, metadata={"help": "Base-model tokens kept per position for replay_loss=kl."})
    task_weighting: str = field(
        default="none",
        metadata={"help": "none, or flow: task examples weighted exp(-L / tau) by the base model's loss L (FLOW).",
                  "choices": list(TASK_WEIGHTINGS)},
    )
    task_weighting_temperature: float | None = field(
        default=None, metadata={"help": "tau of flow (default: the median base loss of the task examples)."}
    )
    online_warmup_fraction: float = field(
        default=0.1, metadata={"help": "Share of steps with random replay before the online switch."}
    )
    online_num_probe: int = field(default=30, metadata={"help": "Upstream examples measured at the online switch."})
    mir_candidates: int = field(default=64, metadata={"help": "Candidates scored at each MIR refresh."})
    mir_refresh_steps: int = field(default=10, metadata={"help": "Optimizer steps between MIR refreshes."})

    def __post_init__(self):
        if not self.use_cpu and not has_accelerator():
            self.use_cpu = True  # as the CLI does, so that settings written for a GPU (bf16) run on a CPU
        if trains_in_emulated_bf16(self):
            self.bf16 = False
        super().__post_init__()
        check_training_settings(self)
        if self.replay_strategy not in REPLAY_STRATEGIES:
            raise ValueError(f"replay_strategy must be one of {REPLAY_STRATEGIES}; got {self.replay_strategy!r}")
        if self.replay_selection not in REPLAY_SELECTIONS:
            raise ValueError(f"replay_selection must be one of {REPLAY_SELECTIONS}; got {self.replay_selection!r}")
        if self.replay_loss_weighting not in REPLAY_WEIGHTINGS:
            raise ValueError(f"replay_loss_weighting must be one of {REPLAY_WEIGHTINGS}; got {self.replay_loss_weighting!r}")
        if not 0 < self.replay_ratio <= 1:
            raise ValueError(f"replay_ratio must be in (0, 1]; got {self.replay_ratio}")
        if not self.replay_temperature > 0 or not math.isfinite(self.replay_temperature):
            raise ValueError(f"replay_temperature must be a finite number > 0; got {self.replay_temperature}")
        if self.replay_max_length is not None and self.replay_max_length < 2:
            raise ValueError(f"replay_max_length must be >= 2 (one token to predict from another); got {self.replay_max_length}")
        if self.replay_max_length and self.max_length and self.replay_max_length > self.max_length:
            raise ValueError(f"replay_max_length ({self.replay_max_length}) must not exceed max_length ({self.max_length})")
        if self.replay_heldout_size < 0:
            raise ValueError(f"replay_heldout_size must be >= 0; got {self.replay_heldout_size}")
        if not 0 < self.online_warmup_fraction < 1:
            raise ValueError(f"online_warmup_fraction must be in (0, 1); got {self.online_warmup_fraction}")
        for name in ("online_num_probe", "mir_candidates", "mir_refresh_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.replay_loss not in REPLAY_LOSSES:
            raise ValueError(f"replay_loss must be one of {REPLAY_LOSSES}; got {self.replay_loss!r}")
        if self.replay_loss == "kl" and self.replay_strategy == "none":
            raise ValueError("replay_loss='kl' is the loss of replay rows; replay_strategy='none' replays none")
        if self.replay_kl_top_k < 1:
            raise ValueError(f"replay_kl_top_k must be >= 1; got {self.replay_kl_top_k}")
        if self.task_weighting not in TASK_WEIGHTINGS:
            raise ValueError(f"task_weighting must be one of {TASK_WEIGHTINGS}; got {self.task_weighting!r}")
        temperature = self.task_weighting_temperature
        if temperature is not None and (not temperature > 0 or not math.isfinite(temperature)):
            raise ValueError(f"task_weighting_temperature must be a finite number > 0; got {temperature}")
        for name, weighted in (("replay_loss_weighting='sequence'", self.replay_loss_weighting == "sequence"),
                               ("task_weighting='flow'", self.task_weighting == "flow"),
                               ("replay_loss='kl'", self.replay_loss == "kl")):
            if weighted and (self.label_smoothing_factor or self.loss_type != "nll"):
                raise ValueError(
                    f"{name} re-weights the per-token NLL; it needs loss_type='nll' and no label smoothing "
                    f"(got loss_type={self.loss_type!r}, label_smoothing_factor={self.label_smoothing_factor})"
                )
        if self.packing and self.replay_strategy != "none":
            raise ValueError(
                "packing=True cannot be combined with replay: packed sequences merge task and replay examples, so the "
                "replay schedule and the per-example loss masks lose their meaning. Set packing=False."
            )

    @property
    def resolved_replay_seed(self) -> int:
        """The seed of the held-out split and the replay schedule: `replay_seed`, or `seed` when it is unset."""
        return self.seed if self.replay_seed is None else self.replay_seed

    @property
    def replay_every(self) -> int:
        """Task rows between two replay rows."""
        return max(1, round(1 / self.replay_ratio))
