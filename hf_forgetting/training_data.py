"""The rows a trainer trains on: every example tokenised once, with the scorer's masks, and counted.

TRL truncates an example longer than ``max_length`` from the end and then drops the ones whose
completion was cut away entirely, silently: a task with long prompts can train on 2 of its 256
examples. Here, once for collection, replay training and the replay experiment:

- an example with a prompt (prompt/completion, or a chat) keeps its end: the start of the prompt is
  cut so that the completion (the last assistant turn) is trained on whole; an example whose
  completion alone is longer than ``max_length`` is dropped and counted;
- raw text keeps its start, the tokens the forgetting scorer scores;
- labels are the token ids where the scorer's mask is on (completion, assistant turns, or all but
  the first token of raw text) and -100 elsewhere; non-conversational examples end with the EOS
  token, as TRL appends it.

The result is a dataset of ``input_ids`` and ``labels`` that ``SFTTrainer`` and ``ReplayTrainer`` use
as it is, and the counts of what survived.
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Dataset

from .errors import HfForgettingError
from .scoring import tokenize_for_scoring

# Recorded with every collection: rows prepared otherwise are not comparable.
PREPARATION = "keep-completion-v1"


class HollowTaskError(HfForgettingError, ValueError):
    """Too few of a task's examples survive preparation for its row to mean fine-tuning on the task."""


@dataclass
class TrainingRows:
    """A task's training rows and what became of the requested examples.

    Args:
        dataset (`datasets.Dataset`): columns `input_ids` and `labels`.
        requested (`int`): examples given.
        prompt_truncated (`int`): kept with the start of their prompt cut.
        dropped (`int`): dropped: the completion alone is longer than `max_length`, or nothing is trained.
    """

    dataset: Dataset
    requested: int
    prompt_truncated: int
    dropped: int

    @property
    def kept(self) -> int:
        return len(self.dataset)

    def counts(self) -> dict[str, int]:
        """Provenance: examples and tokens that reach the trainer."""
        input_tokens = sum(len(ids) for ids in self.dataset["input_ids"])
        trained_tokens = sum(sum(label != -100 for label in labels[1:]) for labels in self.dataset["labels"])
        return {
            "num_requested_examples": self.requested,
            "num_train_examples": self.kept,
            "num_prompt_truncated": self.prompt_truncated,
            "num_dropped_examples": self.dropped,
            "num_input_tokens": input_tokens,
            "num_trained_tokens": trained_tokens,
        }

    def is_hollow(self, min_fraction: float) -> bool:
        """Fewer than `min_fraction` of the requested examples survived."""
        return self.requested > 0 and self.kept < min_fraction * self.requested

    def check(self, task: str, max_length: int | None, min_fraction: float, allow_hollow: bool = False) -> None:
        """Refuse a task of which fewer than `min_fraction` of the requested examples survive."""
        if not self.is_hollow(min_fraction) or allow_hollow:
            return
        raise HollowTaskError(
            f"Task {task!r}: only {self.kept} of {self.requested} training examples fit max_length={max_length} "
            f"with their whole completion ({self.dropped} dropped, below min_train_fraction={min_fraction:g}); "
            "raise max_length, or set allow_hollow_rows to train on them anyway (the row is marked)."
        )


def prepare_training_rows(dataset, tokenizer, max_length: int | None) -> TrainingRows:
    """Tokenise and truncate every example of `dataset` (see the module docstring)."""
    eos = tokenizer.eos_token_id
    rows = {"input_ids": [], "labels": []}
    truncated = dropped = 0
    for example in dataset:
        ids, mask = tokenize_for_scoring(example, tokenizer)
        conversational = "messages" in example and example["messages"] is not None or isinstance(example.get("prompt"), list)
        if not conversational and eos is not None and (not ids or ids[-1] != eos):
            ids, mask = [*ids, eos], [*mask, True]
        prompted = "prompt" in example or conversational
        if max_length is not None and len(ids) > max_length:
            if not prompted:
                ids, mask = ids[:max_length], mask[:max_length]
            else:
                if len(ids) - _last_trained_span_start(mask) > max_length:
                    dropped += 1
                    continue
                ids, mask = ids[-max_length:], mask[-max_length:]
                mask[0] = False  # nothing predicts the first token
                truncated += 1
        if not any(mask):
            dropped += 1
            continue
        rows["input_ids"].append(ids)
        rows["labels"].append([token if trained else -100 for token, trained in zip(ids, mask)])
    return TrainingRows(Dataset.from_dict(rows), len(dataset), truncated, dropped)


def _last_trained_span_start(mask: list[bool]) -> int:
    """Index of the first token of the last run of trained tokens (the completion, the last assistant turn)."""
    end = max((position for position, trained in enumerate(mask) if trained), default=0)
    start = end
    while start > 0 and mask[start - 1]:
        start -= 1
    return start
