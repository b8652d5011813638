"""Which training settings change a run's result: all of them but where things are written and how
progress is shown. Cached results (adapted models, replay runs) are keyed by these."""

from __future__ import annotations

import json

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
