"""Which training settings change a run's result: all of them but where things are written and how
progress is shown. Cached results (adapted models, replay runs) are keyed by these."""

from __future__ import annotations

import json
import math

# Settings that change no result: output places, logging, saving and progress display.
IGNORED_TRAINING_SETTINGS = frozenset({
    "output_dir", "logging_dir", "run_name", "report_to", "disable_tqdm", "logging_steps", "logging_strategy",
    "logging_first_step", "save_strategy", "save_steps", "save_total_limit", "push_to_hub", "hub_model_id",
    "hub_strategy", "hub_token", "hub_private_repo", "dataloader_num_workers", "resume_from_checkpoint",
})


def result_settings(training_args) -> dict:
    """The settings of a `TrainingArguments` that change what training produces, as JSON-able values."""
    kept = {key: value for key, value in training_args.to_dict().items() if key not in IGNORED_TRAINING_SETTINGS}
    return json.loads(json.dumps(kept, default=str))


def check_training_settings(training_args) -> None:
    """Refuse numeric training settings that transformers would silently reinterpret or that cannot
    train (e.g. `max_steps=-5` trains 3 epochs): one message naming the setting and its value."""
    checks = {  # a setting that is None (unset, or absent from this transformers version) is not checked
        "max_steps": lambda v: v == -1 or v >= 1,
        "num_train_epochs": lambda v: math.isfinite(v) and v > 0,
        "learning_rate": lambda v: math.isfinite(v) and v >= 0,
        "weight_decay": lambda v: math.isfinite(v) and v >= 0,
        "max_grad_norm": lambda v: math.isfinite(v) and v >= 0,
        "adam_beta1": lambda v: 0 <= v < 1,
        "adam_beta2": lambda v: 0 <= v < 1,
        "adam_epsilon": lambda v: math.isfinite(v) and v > 0,
        "warmup_ratio": lambda v: 0 <= v <= 1,
        "warmup_steps": lambda v: math.isfinite(v) and v >= 0,
        "per_device_train_batch_size": lambda v: v >= 1,
        "gradient_accumulation_steps": lambda v: v >= 1,
        "max_length": lambda v: v >= 1,
    }
    for name, valid in checks.items():
        value = getattr(training_args, name, None)
        if value is None:
            continue
        if isinstance(value, bool) or not valid(value):
            raise ValueError(f"{name}={value!r} is out of range (see `--help` for what it means)")
