"""``ReplayTrainer``: TRL's ``SFTTrainer`` that interleaves replayed upstream examples with the task's.

Swap ``SFTTrainer`` for ``ReplayTrainer`` and ``SFTConfig`` for ``ReplayConfig``, pass the upstream
examples (``replay_dataset``) and what is known of their forgetting, and training replays the examples
predicted to be forgotten most. With ``replay_strategy="none"`` it is exactly ``SFTTrainer``.

Replay rows are tokenised with the same masks as the forgetting scorer (all tokens but the first for
raw text, the completion or assistant turns otherwise) and appended after the task rows; a
``ReplaySampler`` decides the order. Every upstream example can be replayed unless an evaluation holds a
seeded subset out (``replay_heldout_size``; ``trainer.heldout_ids``): measure forgetting on it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTTrainer

from ..completion.base import MAX_KNOWN_MAGNITUDE
from ..files import atomic_write_text
from ..scoring import score_encoded, score_examples, tokenize_many_for_scoring
from ..training_guard import ParameterUpdateGuard
from .callbacks import AdaptiveReplayCallback, ReplayStateCallback
from .config import ReplayConfig
from .distillation import base_distributions
from .loss import kl_replay_loss, log_prob_scaling_hook, trained_sequences
from .schedule import ReplaySampler, standardized
from .task_weighting import flow_weights

REPLAY_STATE_FILE = "replay_state.json"
SEQUENCE_WEIGHT = "sequence_weight"  # the column of a row's loss weight (task weighting)
REPLAY_ROW = "replay_row"  # the column of a row's index among the replay rows (-1: a task row), for replay_loss="kl"
BATCH_COLUMNS = (SEQUENCE_WEIGHT, REPLAY_ROW)


def heldout_rows(num_examples: int, size: int, seed: int) -> list[int]:
    """Rows of the upstream set never replayed: a seeded subset of ``size`` (at least one row must stay replayable)."""
    if not 0 <= size < num_examples:
        raise ValueError(f"replay_heldout_size={size} leaves no upstream example to replay: the replay dataset has "
                         f"{num_examples}; hold out fewer (0, the default, replays from all of them)")
    return sorted(np.random.default_rng([seed, 7]).permutation(num_examples)[:size].tolist())


class ReplayTrainer(SFTTrainer):
    """An `SFTTrainer` with targeted replay of upstream examples.

    Args (beyond those of [`~trl.SFTTrainer`]):
        replay_dataset (`datasets.Dataset`, *optional*):
            Upstream examples (`text`, `prompt`/`completion` or `messages`), with an `example_id` column
            (row numbers are used otherwise). Required unless `replay_strategy="none"`.
        replay_scores (`Sequence[float]` or `np.ndarray`, *optional*):
            Forgetting scores aligned with `replay_dataset` (strategies `predicted` and `ground_truth`),
            e.g. a row returned by `predictor.predict(...)`.
        replay_predictor (`ForgettingPredictor`, *optional*):
            A fitted predictor whose `example_ids` cover the replay dataset. With `replay_known` it gives
            the scores of `predicted`; with strategy `online` it completes the row from the examples
            measured at the switch.
        replay_known (`tuple[Sequence[str], Sequence[float]]`, *optional*):
            `(example_ids, values)` measured for this task (offline `predicted` strategy).
    """

    def __init__(
        self,
        *args,
        replay_dataset: Dataset | None = None,
        replay_scores: Sequence[float] | np.ndarray | None = None,
        replay_predictor=None,
        replay_known: tuple[Sequence[str], Sequence[float]] | None = None,
        **kwargs,
    ):
        args_ = kwargs.get("args", args[1] if len(args) > 1 else None)
        if not isinstance(args_, ReplayConfig):
            raise TypeError("ReplayTrainer needs args=ReplayConfig(...) (an SFTConfig with replay settings)")
        super().__init__(*args, **kwargs)
        self.add_callback(ParameterUpdateGuard())
        if (args_.replay_loss_weighting == "sequence" or args_.task_weighting == "flow") and self.compute_loss_func is not None:
            raise ValueError("replay_loss_weighting='sequence' and task_weighting='flow' weight TRL's own loss; they cannot be "
                             "combined with compute_loss_func")
        self._sequences_in_batch: int | None = None
        self.replay_sampler: ReplaySampler | None = None
        self._adaptive: AdaptiveReplayCallback | None = None
        self.heldout_ids: list[str] = []
        self.replay_ids: list[str] = []
        self.task_weights: np.ndarray | None = None
        if args_.replay_strategy != "none":
            self._set_up_replay(replay_dataset, replay_scores, replay_predictor, replay_known)
        if args_.task_weighting == "flow":
            self._attach_flow_weights()

    # -- set-up ---------------------------------------------------------------------------------

    def _set_up_replay(self, replay_dataset, replay_scores, replay_predictor, replay_known) -> None:
        args_ = self.args
        if replay_dataset is None or len(replay_dataset) < 2:
            raise ValueError(f"replay_strategy={args_.replay_strategy!r} needs a replay_dataset with at least 2 examples")
        self._replay_source = replay_dataset
        self._split_heldout(replay_dataset)
        self.replay_predictor = replay_predictor
        scores = self._initial_scores(replay_scores, replay_predictor, replay_known)
        self._attach_replay_rows()
        self.replay_sampler = ReplaySampler(
            num_task=self._num_task_rows,
            num_replay=len(self._replayable),
            replay_every=args_.replay_every,
            seed=args_.resolved_replay_seed,
            temperature=args_.replay_temperature,
            selection=args_.replay_selection,
            scores=self.sampling_scores(scores),
        )
        self._adaptive = AdaptiveReplayCallback(self) if args_.replay_strategy in ("online", "mir") else None
        if self._adaptive is not None:
            self.add_callback(self._adaptive)
        self.add_callback(ReplayStateCallback(self))

    def _attach_flow_weights(self) -> None:
        """FLOW: each task row's weight from the model's loss on it now, before any update (the base model; a
        PEFT adapter starts as the identity), as a `sequence_weight` column (replay rows: 1) the loss reads."""
        rows = self.train_dataset
        num_task = self._num_task_rows if self.replay_sampler is not None else len(rows)
        task = rows.select(range(num_task))
        labels = task["labels"] if "labels" in task.column_names else [None] * num_task
        encoded = [(list(ids), [True] * len(ids) if row_labels is None else [label != -100 for label in row_labels])
                   for ids, row_labels in zip(task["input_ids"], labels)]
        model = self.accelerator.unwrap_model(self.model)
        losses = score_encoded(model, encoded, pad_id=self._pad_id, batch_size=self.args.per_device_eval_batch_size, show_progress=False)
        self.task_weights = flow_weights(losses, self.args.task_weighting_temperature)
        weights = np.concatenate([self.task_weights, np.ones(len(rows) - num_task)])
        self.train_dataset = rows.add_column(SEQUENCE_WEIGHT, weights.tolist())
        self._add_batch_column(SEQUENCE_WEIGHT, torch.float32)

    def _add_batch_column(self, name: str, dtype: torch.dtype) -> None:
        """Carry dataset column `name` into each batch as a tensor (the loss reads it; the model never sees it)."""
        if not isinstance(self.data_collator, _ExtraColumnsCollator):
            self.data_collator = _ExtraColumnsCollator(self.data_collator)
        self.data_collator.columns[name] = dtype

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        extra = [name for name in BATCH_COLUMNS if name not in self._signature_columns]
        self._signature_columns = [*self._signature_columns, *extra]  # Trainer drops the columns the model does not take

    def _split_heldout(self, replay_dataset: Dataset) -> None:
        ids = (
            [str(i) for i in replay_dataset["example_id"]]
            if "example_id" in replay_dataset.column_names
            else [str(i) for i in range(len(replay_dataset))]
        )
        if len(set(ids)) != len(ids):
            raise ValueError("replay_dataset has duplicate example ids")
        heldout = set(heldout_rows(len(ids), self.args.replay_heldout_size, self.args.resolved_replay_seed))
        self._replayable = [i for i in range(len(ids)) if i not in heldout]  # rows of replay_dataset
        self.heldout_ids = [ids[i] for i in sorted(heldout)]
        self.replay_ids = [ids[i] for i in self._replayable]
        self._all_replay_ids = ids

    def _initial_scores(self, replay_scores, predictor, known) -> np.ndarray | None:
        strategy = self.args.replay_strategy
        if strategy in ("random", "online", "mir", "masked"):
            if strategy == "online" and predictor is None:
                raise ValueError("replay_strategy='online' needs replay_predictor (a fitted forgetting predictor)")
            if predictor is not None:
                self._check_predictor_covers(predictor)
            return None
        if replay_scores is None and predictor is not None and known is not None:
            self._check_predictor_covers(predictor)
            row = predictor.predict(*known, calibrated=False)  # replay needs the ordering, not the values
            replay_scores = row[predictor.column_indices(self._all_replay_ids)]
        if replay_scores is None:
            raise ValueError(
                f"replay_strategy={strategy!r} needs replay_scores, or replay_predictor with replay_known=(ids, values)"
            )
        replay_scores = np.asarray(replay_scores, dtype=np.float64)
        if replay_scores.shape != (len(self._all_replay_ids),) or not np.isfinite(replay_scores).all():
            raise ValueError(
                f"replay_scores must be {len(self._all_replay_ids)} finite numbers aligned with replay_dataset; "
                f"got shape {replay_scores.shape}"
            )
        if np.abs(replay_scores).max() > MAX_KNOWN_MAGNITUDE:  # softmax(f / T) would overflow to NaN
            row = int(np.argmax(np.abs(replay_scores)))
            raise ValueError(f"replay_scores must be forgetting values, |score| <= {MAX_KNOWN_MAGNITUDE:g}; row {row} "
                             f"(example_id {self._all_replay_ids[row][:100]!r}) is {replay_scores[row]:g}")
        return replay_scores[self._replayable]

    def _check_predictor_covers(self, predictor) -> None:
        missing = set(self._all_replay_ids) - set(predictor.example_ids or [])
        if missing:
            raise ValueError(f"replay_predictor does not know {len(missing)} replay example ids, e.g. {sorted(missing)[:3]}")

    def _attach_replay_rows(self) -> None:
        """Append the replayable upstream rows, tokenised with the scorer's masks, after the task rows."""
        task_rows = self.train_dataset
        if "labels" not in task_rows.column_names:
            raise ValueError("ReplayTrainer expects the prepared task dataset to have labels (TRL >= 1.0)")
        self._num_task_rows = len(task_rows)
        max_length = self.replay_max_length
        rows = {"input_ids": [], "labels": []}
        masked = self.args.replay_strategy == "masked"  # the control: in the batches, trained on nothing
        replayable = self._replay_source.select(self._replayable) if self.heldout_ids else self._replay_source
        _check_replay_texts(replayable, self._replayable)
        encoded = tokenize_many_for_scoring(replayable, self.processing_class, max_length)
        untrainable = [i for i, (_, mask) in enumerate(encoded) if not any(mask)]
        if untrainable:
            row = self._replayable[untrainable[0]]
            raise ValueError(f"replay_dataset: {len(untrainable)} rows have no token to train on (empty or one-token text), "
                             f"e.g. row {row} (example_id {self._all_replay_ids[row][:100]!r}); drop them from the replay dataset")
        for ids, mask in encoded:
            rows["input_ids"].append(ids)
            rows["labels"].append([t if m and not masked else -100 for t, m in zip(ids, mask)])
        replay_rows = Dataset.from_dict(rows, features=task_rows.select_columns(["input_ids", "labels"]).features)
        self.train_dataset = concatenate_datasets([task_rows.select_columns(["input_ids", "labels"]), replay_rows])
        if self.args.replay_loss == "kl":  # the base's distributions now, before any update
            trained = [(ids, [m and not masked for m in mask]) for ids, mask in encoded]
            self._base_targets = base_distributions(self.accelerator.unwrap_model(self.model), trained, self.args.replay_kl_top_k,
                                                    self._pad_id, self.args.per_device_eval_batch_size)
            self.train_dataset = self.train_dataset.add_column(REPLAY_ROW, [-1] * self._num_task_rows + list(range(len(encoded))))
            self._add_batch_column(REPLAY_ROW, torch.long)

    # -- Trainer hooks --------------------------------------------------------------------------

    def _get_train_sampler(self, train_dataset=None):
        if self.replay_sampler is None:
            return super()._get_train_sampler(train_dataset)
        return self.replay_sampler

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if self.replay_sampler is not None:
            self._announce_replay()
        if resume_from_checkpoint and self.replay_sampler is not None:
            checkpoint = (
                get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True else resume_from_checkpoint
            )
            state_path = Path(checkpoint) / REPLAY_STATE_FILE if checkpoint else None
            if state_path is None or not state_path.exists():
                raise FileNotFoundError(f"No {REPLAY_STATE_FILE} in checkpoint {checkpoint}: cannot resume the replay schedule")
            self.load_replay_state(json.loads(state_path.read_text()))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _announce_replay(self) -> None:
        """One line on what will be replayed, and a warning when an epoch would replay rows more than once."""
        sampler, total = self.replay_sampler, len(self._all_replay_ids)
        per_epoch = sampler.num_replay_per_epoch
        if self.is_world_process_zero():
            print(f"ReplayTrainer: replay pool {self.replay_pool_size} of {total} upstream examples "
                  f"({len(self.heldout_ids)} held out), {per_epoch} replay rows per epoch "
                  f"(one after every {sampler.replay_every} of {sampler.num_task} task rows), strategy {self.args.replay_strategy!r}")
        drawn = per_epoch
        if self.args.max_steps > 0:  # a run shorter than an epoch draws only the replay rows of its batches
            rows = self.args.max_steps * self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            drawn = min(per_epoch, rows // (sampler.replay_every + 1))
        if drawn > self.replay_pool_size:
            warnings.warn(
                f"One epoch draws {drawn} replay rows from a replay pool of {self.replay_pool_size} upstream examples: "
                f"each is replayed about {drawn / self.replay_pool_size:.1f} times per epoch. Give more upstream "
                f"examples, lower replay_ratio ({self.args.replay_ratio:g}) or replay_heldout_size "
                f"({self.args.replay_heldout_size}).", stacklevel=3)

    def trained_replay_rows(self) -> list[int]:
        """Replay rows (indices into :attr:`replay_ids`) of the batches trained so far, in order: the first
        `global_step x total batch` rows of the schedule, epoch after epoch (rows the dataloader fetched
        ahead of the last step are not counted)."""
        sampler = self.replay_sampler
        if sampler is None:
            return []
        batch = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        remaining, rows, epoch = self.state.global_step * batch, [], 0
        current_epoch = sampler.epoch
        try:
            while remaining > 0:
                sampler.set_epoch(epoch)
                order = list(sampler)[:remaining]
                rows += [index - sampler.num_task for index in order if index >= sampler.num_task]
                remaining -= len(order)
                epoch += 1
        finally:
            sampler.set_epoch(current_epoch)
        return rows

    # -- replay state (saved beside each checkpoint) ----------------------------------------------
    # Not a transformers `ExportableState` callback: Trainer restores those by constructing a new
    # callback from JSON arguments, which cannot hold the sampler this trainer owns; and the sampler
    # must be restored before the dataloader iterates. Like the RNG state, it is a file of the checkpoint.

    def replay_state(self) -> dict:
        """The replay schedule's state and, for adaptive strategies, their measurements (JSON)."""
        adaptive = None if self._adaptive is None else self._adaptive.state_dict()
        return {"sampler": self.replay_sampler.state_dict(), "adaptive": adaptive}

    def load_replay_state(self, state: dict) -> None:
        """Restore what :meth:`replay_state` returned."""
        self.replay_sampler.load_state_dict(state["sampler"])
        if self._adaptive is not None and state.get("adaptive") is not None:
            self._adaptive.load_state_dict(state["adaptive"])

    def save_replay_state(self, checkpoint_dir: str | Path) -> Path:
        return atomic_write_text(Path(checkpoint_dir) / REPLAY_STATE_FILE, json.dumps(self.replay_state()))

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Also count the sequences with a trained token in the accumulated batch (all processes), the
        denominator of the per-sequence loss, as Trainer counts tokens for the per-token loss."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.args.replay_loss_weighting == "sequence":
            count = trained_sequences(batch_samples)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                count = int(self.accelerator.gather(torch.tensor([count], device=device)).sum())
            self._sequences_in_batch = count
        return batch_samples, num_items_in_batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss; with `replay_loss_weighting="sequence"`, each sequence weighs the same; with task weighting,
        each task row by its weight; with `replay_loss="kl"`, replay rows by their KL to the base model
        (`replay/loss.py`)."""
        weights = inputs.pop(SEQUENCE_WEIGHT, None)
        replay_row = inputs.pop(REPLAY_ROW, None)
        if replay_row is not None and not return_outputs and bool((replay_row >= 0).any()):
            return self._loss_with_kl_replay(model, inputs, replay_row, weights, num_items_in_batch)
        return self._text_loss(model, inputs, return_outputs, num_items_in_batch, weights=weights)

    def _text_loss(self, model, inputs, return_outputs, num_items_in_batch, *, weights=None, sequences=None):
        """TRL's loss, its per-token log-probabilities scaled by the row weights and the sequence weighting (of
        `sequences` in the batch, by default those the accumulated batch counted)."""
        weighting = self.args.replay_loss_weighting
        if weighting == "token" and weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        count = sequences if sequences is not None else self._sequences_in_batch
        handle = model.register_forward_hook(log_prob_scaling_hook(weighting, num_items_in_batch, count, weights))
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            handle.remove()

    def _loss_with_kl_replay(self, model, inputs, replay_row, weights, num_items_in_batch):
        """`replay_loss="kl"`: the task rows' text loss plus the replay rows' KL to the base, each replay token's KL
        weighted and normalised as its NLL would have been (the same `num_items_in_batch`)."""
        replay = replay_row >= 0
        labels = inputs["labels"][:, 1:]
        accumulated = num_items_in_batch is not None and self._sequences_in_batch is not None
        tokens = num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum()
        sequences = self._sequences_in_batch if accumulated else int((labels != -100).any(-1).sum())
        loss = torch.zeros((), device=labels.device)
        if (~replay).any():
            task = {name: value[~replay] if torch.is_tensor(value) and value.shape[:1] == replay.shape else value
                    for name, value in inputs.items()}
            loss = self._text_loss(model, task, False, tokens, weights=None if weights is None else weights[~replay], sequences=sequences)
        rows = replay.nonzero().flatten()
        logits = model(input_ids=inputs["input_ids"][rows], attention_mask=inputs["attention_mask"][rows], use_cache=False).logits[:, :-1]
        targets = [self._base_targets[int(r)] for r in replay_row[rows]]
        replay_loss = kl_replay_loss(logits, labels[rows] != -100, targets, self.args.replay_loss_weighting, tokens, sequences)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:  # as TRL scales its loss
            replay_loss = replay_loss * self.accelerator.num_processes
        return loss + replay_loss

    def sampling_scores(self, scores: np.ndarray | None) -> np.ndarray | None:
        """The scores the sampler draws by: as given, or standardised (`replay_standardize_scores`)."""
        if scores is None or not self.args.replay_standardize_scores:
            return scores
        return standardized(scores)

    # -- the replay pool ----------------------------------------------------------------------------

    @property
    def _pad_id(self) -> int:
        """The token that pads rows scored or distilled outside TRL's collator (the tokenizer's, else 0)."""
        pad_id = getattr(self.processing_class, "pad_token_id", None)
        return pad_id if pad_id is not None else 0

    @property
    def replay_pool_size(self) -> int:
        """Number of replayable upstream examples (the sampler's replay rows)."""
        return len(self._replayable)

    @property
    def replay_max_length(self) -> int | None:
        """Tokens kept of each replayed example (`replay_max_length`, else `max_length`)."""
        return self.args.replay_max_length or self.args.max_length

    def replay_examples(self, rows: Sequence[int]) -> list[dict]:
        """The upstream examples of replay rows ``rows`` (indices into :attr:`replay_ids`)."""
        return [self._replay_source[self._replayable[r]] for r in rows]

    def score_replay_rows(self, rows: Sequence[int]) -> np.ndarray:
        """Mean token NLL of replay rows ``rows`` under the model as it is now (the scorer's masks)."""
        model = self.accelerator.unwrap_model(self.model)
        return score_examples(
            model, self.processing_class, self.replay_examples(rows), max_length=self.replay_max_length,
            batch_size=self.args.per_device_eval_batch_size, show_progress=False,
        )


class _ExtraColumnsCollator:
    """The trainer's collator, with the rows' values of `columns` (those they carry) as tensors of the batch."""

    def __init__(self, collator):
        self.collator, self.columns = collator, {}

    def __call__(self, examples):
        extra = {name: [example.pop(name) for example in examples]
                 for name in self.columns if examples and name in examples[0]}
        batch = self.collator(examples)
        for name, values in extra.items():
            batch[name] = torch.tensor(values, dtype=self.columns[name])
        return batch


def _check_replay_texts(dataset: Dataset, rows: Sequence[int]) -> None:
    """Refuse raw-text replay rows whose text is not a non-empty string, naming the first (as a row of ``replay_dataset``)."""
    if "text" not in dataset.column_names or {"messages", "prompt"} & set(dataset.column_names):
        return
    for position, text in enumerate(dataset["text"]):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"replay_dataset row {rows[position]}: the text is {text!r:.60}, not a non-empty string")
