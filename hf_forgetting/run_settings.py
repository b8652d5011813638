"""Which training settings change a run's result: all of them but where things are written and how
progress is shown. Cached results (adapted models, replay runs) are keyed by these."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

# Settings that change no result: output places, logging, saving and progress display.
IGNORED_TRAINING_SETTINGS = frozenset({
    "output_dir", "logging_dir", "run_name", "report_to", "disable_tqdm", "logging_steps", "logging_strategy",
    "logging_first_step", "save_strategy", "save_steps", "save_total_limit", "push_to_hub", "hub_model_id",
    "hub_strategy", "hub_token", "hub_private_repo", "dataloader_num_workers", "resume_from_checkpoint",
})
IGNORED_MODEL_SETTINGS = frozenset({"trust_remote_code"})


def result_settings(training_args) -> dict:
    """The settings of a `TrainingArguments` that change what training produces, as JSON-able values."""
    kept = {key: value for key, value in training_args.to_dict().items() if key not in IGNORED_TRAINING_SETTINGS}
    return json.loads(json.dumps(kept, default=str))


# Settings that may differ between two runs whose results are compared: they place the same training on
# other hardware (the batch layout is compared as the effective batch instead).
LAYOUT_SETTINGS = frozenset({
    "per_device_train_batch_size", "gradient_accumulation_steps", "per_device_eval_batch_size", "use_cpu", "local_rank",
    "ddp_backend", "ddp_timeout", "ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers",
    "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor", "fsdp", "fsdp_config",
    "deepspeed", "accelerator_config", "parallelism_config", "gradient_checkpointing", "gradient_checkpointing_kwargs",
    "activation_checkpointing",
})


def settings_fingerprint(settings: dict) -> dict:
    """What must match for two runs' rows to be comparable: the settings, with the batch layout
    reduced to the effective batch (2 processes x 4 rows trains like 1 process x 8 rows)."""
    fingerprint = json.loads(json.dumps(settings))
    training = fingerprint.get("training", {})
    per_device = training.get("per_device_train_batch_size") or 1
    accumulation = training.get("gradient_accumulation_steps") or 1
    training["effective_batch_size"] = per_device * accumulation * (fingerprint.pop("world_size", None) or 1)
    for key in LAYOUT_SETTINGS:
        training.pop(key, None)
    return fingerprint


def settings_differences(previous: dict, current: dict, prefix: str = "") -> list[str]:
    """The settings that differ, as `name: old -> new`: every top-level entry (e.g. `preparation`, the way
    training rows are built), and within the sections those both record."""
    changed = []
    keys = set(previous) | set(current) if not prefix else set(previous) & set(current)
    for key in sorted(keys):
        old, new = previous.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += settings_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return changed


def model_settings(model_args) -> dict:
    """The model settings (a `trl.ModelConfig`: the model, its precision, LoRA) that change a result, JSON-able."""
    return {key: _jsonable(value) for key, value in vars(model_args).items() if key not in IGNORED_MODEL_SETTINGS}


def _jsonable(value):
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


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


def trains_in_emulated_bf16(training_args) -> bool:
    """Whether `bf16=True` would train on a CPU without native bf16 (no AVX512-BF16 or AMX), where bf16
    autocast is emulated and many times slower than float32. Says so in one line when it would; the stages then
    train in float32."""
    bf16 = getattr(training_args, "bf16", False)
    if bf16 is None:  # TRL's configs before their __post_init__: unset means bf16 unless fp16
        bf16 = not getattr(training_args, "fp16", False)
    if not bf16:
        return False
    from .modeling import bf16_supported, has_accelerator

    if (has_accelerator() and not training_args.use_cpu) or bf16_supported("cpu"):
        return False
    warnings.warn("bf16=True: this CPU has no native bf16 (AVX512-BF16 or AMX) and would emulate it many times "
                  "slower; training in float32 (runs are recorded and cached as float32 runs)", stacklevel=3)
    return True


def in_native_precision(training_args):
    """`training_args`, or a float32 copy of them where bf16 would be emulated (`trains_in_emulated_bf16`)."""
    return dataclasses.replace(training_args, bf16=False) if trains_in_emulated_bf16(training_args) else training_args


def unrecorded_settings(previous: dict, current: dict, configs: dict) -> list[str]:
    """Settings of `current` set to other than their defaults that `previous` does not record (it was written by an
    older transformers / TRL with fewer options); `configs` maps each section to its dataclass."""
    missing = []
    for section, config in configs.items():
        absent = set(current.get(section, {})) - set(previous.get(section, {}))
        if absent:
            defaults = declared_defaults(config)
            missing += [f"{section}.{key}" for key in sorted(absent) if current[section][key] != defaults.get(key)]
    return missing


def declared_defaults(cls) -> dict:
    """The declared defaults of dataclass `cls`, as JSON values."""
    defaults = {}
    for spec in dataclasses.fields(cls):
        if spec.default is not dataclasses.MISSING:
            defaults[spec.name] = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            defaults[spec.name] = spec.default_factory()
    return json.loads(json.dumps(defaults, default=str))

