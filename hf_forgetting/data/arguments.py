"""The argument dataclasses every stage shares: which upstream examples, and how tasks are loaded.

``CollectArguments`` and ``TrainArguments`` extend both, so a recipe names these fields the same way
(and with the same defaults) for collection, replay training and the replay experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from . import EMBEDDED_UPSTREAM, load_task, load_upstream

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass
class UpstreamArguments:
    """The upstream examples (the matrix's columns, and the replay pool).

    Args:
        upstream_dataset (`str`, *optional*, defaults to `"embedded"`):
            `"embedded"` (SQuAD-shifts + Austen), `"squad_shifts"`, `"austen"`, a local file or a Hub dataset id.
        upstream_split (`str`, *optional*, defaults to `"train"`):
            Split of a Hub upstream dataset.
        upstream_text_field (`str`, *optional*, defaults to `"text"`):
            Raw-text column of a Hub upstream dataset.
        upstream_id_field (`str`, *optional*):
            Column with stable example ids (default: `<dataset>/<split>/<row>`).
        num_upstream_examples (`int`, *optional*, defaults to `200`):
            Number of upstream examples N (a seeded random subset); `None` for all.
        upstream_seed (`int`, *optional*, defaults to `0`):
            Seed of the upstream subset.
    """

    upstream_dataset: str = field(
        default=EMBEDDED_UPSTREAM,
        metadata={"help": "Upstream examples: 'embedded' (SQuAD-shifts + Austen), 'squad_shifts', 'austen' or a Hub dataset id."},
    )
    upstream_split: str = field(default="train", metadata={"help": "Split of a Hub upstream dataset."})
    upstream_text_field: str = field(default="text", metadata={"help": "Raw-text column of a Hub upstream dataset."})
    upstream_id_field: str | None = field(
        default=None, metadata={"help": "Column with stable example ids (default: '<dataset>/<split>/<row>')."}
    )
    num_upstream_examples: int | None = field(
        default=200, metadata={"help": "Number of upstream examples N (a seeded random subset); None for all."}
    )
    upstream_seed: int = field(default=0, metadata={"help": "Seed of the upstream subset."})

    def __post_init__(self):
        if self.num_upstream_examples is not None and self.num_upstream_examples < 1:
            raise ValueError(f"num_upstream_examples must be positive or None; got {self.num_upstream_examples}")
        if hasattr(super(), "__post_init__"):  # the other argument classes a stage's dataclass combines
            super().__post_init__()

    def load_upstream(self) -> Dataset:
        """The upstream examples these arguments describe, in column order."""
        return load_upstream(
            self.upstream_dataset,
            num_examples=self.num_upstream_examples,
            seed=self.upstream_seed,
            split=self.upstream_split,
            text_field=self.upstream_text_field,
            id_field=self.upstream_id_field,
        )


@dataclass
class TaskArguments:
    """How a fine-tuning task's training examples are loaded.

    Args:
        task_split (`str`, *optional*, defaults to `"train"`):
            Split of Hub task datasets.
        max_train_examples (`int`, *optional*, defaults to `256`):
            Training examples per task (a seeded random subset); `None` for all.
        task_seed (`int`, *optional*, defaults to `0`):
            Seed of each task's training subset.
        task_prompt_field (`str`, *optional*):
            Column of Hub task datasets to train on as the prompt (e.g. `"instruction"`).
        task_completion_field (`str`, *optional*):
            Column of Hub task datasets to train on as the completion (e.g. `"response"`).
        min_train_fraction (`float`, *optional*, defaults to `0.9`):
            A task of which fewer of the requested training examples fit `max_length` with their whole
            completion is refused (its row would not mean fine-tuning on the task).
        allow_hollow_rows (`bool`, *optional*, defaults to `False`):
            Train on such a task anyway; its row's provenance says `"hollow": true`.
    """

    task_split: str = field(default="train", metadata={"help": "Split of Hub task datasets."})
    max_train_examples: int | None = field(
        default=256, metadata={"help": "Training examples per task (a seeded random subset); None for all."}
    )
    task_seed: int = field(default=0, metadata={"help": "Seed of each task's training subset."})
    task_prompt_field: str | None = field(
        default=None, metadata={"help": "Column of Hub task datasets to train on as the prompt (e.g. 'instruction')."}
    )
    task_completion_field: str | None = field(
        default=None, metadata={"help": "Column of Hub task datasets to train on as the completion (e.g. 'response')."}
    )
    min_train_fraction: float = field(
        default=0.9,
        metadata={"help": "Refuse a task when fewer of its requested examples fit max_length with their whole completion."},
    )
    allow_hollow_rows: bool = field(
        default=False, metadata={"help": "Train on such a task anyway (its row's provenance says hollow: true)."}
    )

    def __post_init__(self):
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise ValueError(f"max_train_examples must be positive or None; got {self.max_train_examples}")
        if not 0 <= self.min_train_fraction <= 1:
            raise ValueError(f"min_train_fraction must be in [0, 1]; got {self.min_train_fraction}")
        if hasattr(super(), "__post_init__"):  # the other argument classes a stage's dataclass combines
            super().__post_init__()

    def load_task(self, name: str, max_examples: int | None | str = "default") -> Dataset:
        """Task ``name`` loaded with these settings; ``max_examples`` defaults to ``max_train_examples``."""
        return load_task(
            name,
            self.max_train_examples if max_examples == "default" else max_examples,
            seed=self.task_seed,
            split=self.task_split,
            prompt_field=self.task_prompt_field,
            completion_field=self.task_completion_field,
        )


def from_settings(cls, settings: dict):
    """An argument dataclass rebuilt from recorded settings (fields it does not know are ignored;
    fields the settings lack take their defaults)."""
    names = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in settings.items() if key in names})


BUDGET_ACTIONS = ("stop", "warn")


@dataclass
class MonitorArguments:
    """The monitor as command-line / recipe settings (`hf-forgetting train`); off while `monitor_probes` is 0."""

    monitor_probes: int = field(default=0, metadata={"help": "Upstream probes the forgetting monitor measures (0: no monitor)."})
    monitor_every_n_steps: int = field(default=50, metadata={"help": "Optimizer steps between monitor measurements."})
    monitor_predictor: str | None = field(default=None, metadata={"help": "Predictor folder or Hub repo that completes the row."})
    monitor_max_length: int | None = field(
        default=None, metadata={"help": "Tokens scored per probe (default: the predictor's matrix's score_max_length, else 1024)."}
    )
    monitor_budget: float | None = field(default=None, metadata={"help": "Mean forgetting at which budget_action happens."})
    monitor_budget_action: str = field(default="stop", metadata={"help": "stop or warn.", "choices": list(BUDGET_ACTIONS)})

    def __post_init__(self):
        if self.monitor_probes < 0 or self.monitor_every_n_steps < 1:
            raise ValueError("monitor_probes must be >= 0 and monitor_every_n_steps >= 1")
        if self.monitor_max_length is not None and self.monitor_max_length < 2:
            raise ValueError(f"monitor_max_length must be >= 2 (one token to predict from another); got {self.monitor_max_length}")
        if hasattr(super(), "__post_init__"):  # the other argument classes a stage's dataclass combines
            super().__post_init__()
