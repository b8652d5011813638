"""See what any Trainer run is forgetting while it trains: `ForgettingMonitorCallback`.

A few upstream probes (default 30) are scored once before the first update and again every
`every_n_steps` optimizer steps and at the end; their forgetting (NLL now minus NLL of the base
model, the scorer's convention) is logged, and with a predictor the whole upstream row is completed
from them by fold-in, as the online replay strategy does.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from .completion import ForgettingPredictor
from .data.arguments import BUDGET_ACTIONS, MonitorArguments
from .files import atomic_write_text
from .format.predicted_row import PREDICTED_ROW_FILE, write_predicted_row
from .modeling import model_identity
from .scoring import score_examples

MONITOR_STATE_FILE = "forgetting_monitor.json"
SCORABLE_COLUMNS = (("text",), ("prompt", "completion"), ("messages",))


class ForgettingMonitorCallback(TrainerCallback):
    """Measures the forgetting of upstream probes during training, with any `Trainer` subclass.

    Args:
        probe_dataset (`datasets.Dataset`):
            Upstream examples (`text`, `prompt` + `completion`, or `messages`; scored with the scorer's masks)
            with an `example_id` column when a predictor is given. The first `num_probes` of a seeded
            shuffle are the probes.
        predictor (`ForgettingPredictor` or `str`, *optional*):
            A fitted predictor (or a folder / Hub repo id to load one from) that completes the whole upstream
            row from the probes' forgetting; it must know every probe's `example_id`.
        every_n_steps (`int`, *optional*, defaults to `50`):
            Optimizer steps between measurements; the end of training is always measured.
        num_probes (`int` or `None`, *optional*, defaults to `30`):
            Probes drawn from `probe_dataset` (all of it when `None` or larger than the dataset).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the probe draw.
        max_length (`int`, *optional*):
            Tokens scored per probe; defaults to the `score_max_length` of the matrix the predictor was fitted
            on (as its entries were measured), else 1024.
        batch_size (`int`, *optional*, defaults to `16`):
            Probes per forward pass.
        forgetting_budget (`float`, *optional*):
            A threshold on the mean forgetting (predicted when a predictor is given, else the probes'): when a
            measurement crosses it, `budget_action` happens.
        budget_action (`str`, *optional*, defaults to `"stop"`):
            `"stop"` ends training (`control.should_training_stop`) after a warning; `"warn"` only warns.
        trainer (`Trainer`, *optional*):
            The trainer, to log through `trainer.log` so that reporting integrations (TensorBoard, W&B,
            MLflow, ...) receive the numbers. Without it, they go into the trainer's own log entries
            (`state.log_history`, the console) but integrations listed before this callback miss them.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            Only needed when the trainer has no `processing_class`.
        plot (`bool`, *optional*, defaults to `True`):
            Write `forgetting_monitor.png` (forgetting over steps) to the output folder at the end.

    After training, `history` holds every measurement and `predicted_row` the latest
    `(example_ids, predicted forgetting, step)`; each checkpoint holds `forgetting_monitor.json` (the
    base scores, so a resumed run measures against the base model, not the tuned one) and
    `forgetting_row.parquet`.
    """

    def __init__(
        self,
        probe_dataset,
        predictor: ForgettingPredictor | str | None = None,
        *,
        every_n_steps: int = 50,
        num_probes: int | None = 30,
        seed: int = 0,
        max_length: int | None = None,
        batch_size: int = 16,
        forgetting_budget: float | None = None,
        budget_action: str = "stop",
        trainer=None,
        tokenizer=None,
        plot: bool = True,
    ):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1; got {every_n_steps}")
        if num_probes is not None and num_probes < 1:
            raise ValueError(f"num_probes must be >= 1 or None; got {num_probes}")
        if budget_action not in BUDGET_ACTIONS:
            raise ValueError(f"budget_action must be one of {BUDGET_ACTIONS}; got {budget_action!r}")
        if forgetting_budget is not None and not np.isfinite(forgetting_budget):
            raise ValueError(f"forgetting_budget must be a finite number; got {forgetting_budget}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be >= 2 (one token to predict from another); got {max_length}")
        _check_scorable(probe_dataset)
        self.probes = _draw_probes(probe_dataset, num_probes, seed)
        self.probe_ids = list(self.probes["example_id"]) if "example_id" in self.probes.column_names else None
        self.predictor = _load_predictor(predictor, self.probe_ids)
        source = self.predictor.source if self.predictor is not None else {}
        self.max_length = max_length or source.get("score_max_length") or 1024
        self.every_n_steps, self.batch_size = every_n_steps, batch_size
        self.forgetting_budget, self.budget_action = forgetting_budget, budget_action
        self.trainer, self.tokenizer, self.plot = trainer, tokenizer, plot
        self.base_scores: np.ndarray | None = None
        self.history: list[dict] = []
        self.predicted_row: tuple[list[str], np.ndarray, int] | None = None
        self._pending: dict | None = None  # metrics waiting for the trainer's next log entry (no trainer given)

    @classmethod
    def from_arguments(
        cls, args: MonitorArguments, probe_dataset, trainer, seed: int = 0, max_length: int | None = None
    ) -> ForgettingMonitorCallback | None:
        """The monitor that command-line / recipe settings describe, logging through `trainer`; None when off.
        `max_length` applies when the settings give none (e.g. the collection's score_max_length)."""
        if not args.monitor_probes:
            return None
        return cls(
            probe_dataset, predictor=args.monitor_predictor, every_n_steps=args.monitor_every_n_steps,
            num_probes=args.monitor_probes, seed=seed, max_length=args.monitor_max_length or max_length,
            forgetting_budget=args.monitor_budget, budget_action=args.monitor_budget_action, trainer=trainer,
        )

    # -- Trainer events ---------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        self.tokenizer = self.tokenizer or getattr(processing_class, "tokenizer", processing_class)
        if self.tokenizer is None:
            raise ValueError("ForgettingMonitorCallback needs a tokenizer: give the trainer a processing_class, or pass tokenizer=")
        self._check_predictor_model(model)
        if state.global_step > 0:  # resumed: the model is already tuned, the base scores come from the checkpoint
            self._restore(args, state)
            return
        self.base_scores = self._score(model)
        self.history = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.base_scores is not None and state.global_step % self.every_n_steps == 0:
            self._measure(args, state, control, model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._pending and logs is not None:
            logs.update(self._pending)
            if state.log_history:
                state.log_history[-1].update(self._pending)
            self._pending = None

    def on_save(self, args, state, control, **kwargs):
        if self.base_scores is None or not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        atomic_write_text(folder / MONITOR_STATE_FILE, json.dumps(self.state_dict()))
        if self.predicted_row is not None:
            self.write_predicted_row(folder / PREDICTED_ROW_FILE)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.base_scores is None:
            return
        if not self.history or self.history[-1]["step"] != state.global_step:
            self._measure(args, state, control, model, final=True)
        if state.is_world_process_zero:
            if self.predicted_row is not None:
                self.write_predicted_row(Path(args.output_dir) / PREDICTED_ROW_FILE)
            if self.plot and self.history:
                from .plots import plot_forgetting_history

                plot_forgetting_history(self.history, Path(args.output_dir) / "forgetting_monitor.png")

    def _check_predictor_model(self, model) -> None:
        """Warn when the predictor learned the forgetting of another base model than the one training."""
        fitted_on = self.predictor.source.get("base_model") if self.predictor is not None else None
        training = getattr(model, "name_or_path", None)
        if fitted_on and training and model_identity(fitted_on) != model_identity(training):
            warnings.warn(f"The monitor's predictor was fitted on the forgetting of {fitted_on!r}, but the model "
                          f"training is {training!r}: its predicted rows describe another model", stacklevel=2)

    # -- state --------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """What a resumed run needs: the base model's probe scores (and which probes), and the history."""
        return {"probe_ids": self.probe_ids, "num_probes": len(self.probes), "max_length": self.max_length,
                "base_scores": None if self.base_scores is None else self.base_scores.tolist(), "history": self.history}

    def load_state_dict(self, saved: dict) -> None:
        if saved.get("probe_ids") != self.probe_ids or saved.get("num_probes") != len(self.probes) or saved.get("max_length") != self.max_length:
            raise ValueError("The checkpoint's forgetting monitor measured other probes (or another max_length); "
                             "resume with the same probe_dataset, num_probes, seed and max_length")
        self.base_scores = np.asarray(saved["base_scores"], dtype=np.float64)
        self.history = list(saved.get("history", []))

    def _restore(self, args, state) -> None:
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / MONITOR_STATE_FILE
        if isinstance(args.resume_from_checkpoint, str):
            path = Path(args.resume_from_checkpoint) / MONITOR_STATE_FILE
        if not path.exists():
            warnings.warn(f"Resumed at step {state.global_step} without {path}: the base model's probe scores are unknown, "
                          "so the forgetting monitor is off for this run (scoring the tuned model would measure nothing)", stacklevel=2)
            self.base_scores = None
            return
        self.load_state_dict(json.loads(path.read_text()))

    # -- measuring ----------------------------------------------------------------------------------

    def _score(self, model) -> np.ndarray:
        return score_examples(model, self.tokenizer, self.probes, batch_size=self.batch_size, max_length=self.max_length,
                              show_progress=False).astype(np.float64)

    def _measure(self, args, state, control, model, final: bool = False) -> None:
        forgetting = self._score(model) - self.base_scores
        metrics = {
            "forgetting/probe_mean": float(np.nanmean(forgetting)),
            "forgetting/probe_std": float(np.nanstd(forgetting)),
            "forgetting/probe_fraction_forgotten": float(np.mean(forgetting[~np.isnan(forgetting)] > 0)),
        }
        if self.predictor is not None:
            known = ~np.isnan(forgetting)
            row = self.predictor.predict([i for i, k in zip(self.probe_ids, known) if k], forgetting[known])
            top = np.sort(row)[::-1][: max(1, len(row) // 100)]
            metrics |= {
                "forgetting/predicted_mean": float(np.mean(row)),
                "forgetting/predicted_top1pct_mean": float(np.mean(top)),
                "forgetting/predicted_fraction_forgotten": float(np.mean(row > 0)),
            }
            self.predicted_row = (list(self.predictor.example_ids), row, state.global_step)
        self.history.append({"step": state.global_step, **metrics,
                             "probe_forgetting": [None if np.isnan(v) else float(v) for v in forgetting]})
        self._report(state, control, metrics, final)
        self._check_budget(control, metrics)

    def _report(self, state, control, metrics: dict, final: bool) -> None:
        if self.trainer is not None:
            self.trainer.log(dict(metrics))
        elif final:  # no log event follows the end of training: the entry is added here
            state.log_history.append({**metrics, "step": state.global_step})
        else:  # into the log entry the trainer writes at the end of this step, whatever logging_steps says
            self._pending = dict(metrics)
            control.should_log = True

    def _check_budget(self, control, metrics: dict) -> None:
        if self.forgetting_budget is None:
            return
        name = "forgetting/predicted_mean" if self.predictor is not None else "forgetting/probe_mean"
        if metrics[name] > self.forgetting_budget:
            action = "stopping training" if self.budget_action == "stop" else "training goes on"
            warnings.warn(f"{name} = {metrics[name]:.4f} is over the forgetting budget {self.forgetting_budget}; {action}", stacklevel=2)
            if self.budget_action == "stop":
                control.should_training_stop = True

    def write_predicted_row(self, path: Path) -> Path:
        """Write the latest predicted row (with the probes and their forgetting) as parquet at `path`."""
        example_ids, row, step = self.predicted_row
        last = self.history[-1]
        return write_predicted_row(path, example_ids, row, step,
                                   {"probe_ids": self.probe_ids, "probe_forgetting": last["probe_forgetting"]})


def _check_scorable(dataset) -> None:
    columns = set(dataset.column_names)
    if not any(set(needed) <= columns for needed in SCORABLE_COLUMNS):
        raise ValueError(f"probe_dataset has columns {sorted(columns)}; it needs 'text', 'prompt' + 'completion' or 'messages'")
    if len(dataset) == 0:
        raise ValueError("probe_dataset is empty")
    if "text" in columns and not {"prompt", "messages"} & columns:
        blank = next((row for row, text in enumerate(dataset["text"]) if not isinstance(text, str) or not text.strip()), None)
        if blank is not None:
            raise ValueError(f"probe_dataset row {blank}: the text is {dataset[blank]['text']!r:.60}, not a non-empty string")


def probe_indices(num_examples: int, num_probes: int | None, seed: int) -> np.ndarray:
    """Which rows of a probe dataset of `num_examples` the monitor measures (sorted)."""
    if num_probes is None or num_probes >= num_examples:
        return np.arange(num_examples)
    return np.sort(np.random.default_rng(seed).choice(num_examples, size=num_probes, replace=False))


def _draw_probes(dataset, num_probes: int | None, seed: int):
    return dataset.select(probe_indices(len(dataset), num_probes, seed))


def _load_predictor(predictor, probe_ids: list[str] | None) -> ForgettingPredictor | None:
    if predictor is None:
        return None
    if isinstance(predictor, str):
        predictor = ForgettingPredictor.from_pretrained(predictor)
    if predictor.metric != "nll_increase":
        raise ValueError(f"The monitor measures NLL increase; the predictor was fitted on {predictor.metric!r}")
    if probe_ids is None:
        raise ValueError("With a predictor, probe_dataset needs an 'example_id' column (the predictor's column ids)")
    predictor.column_indices(probe_ids)  # raises, naming the ids the predictor does not know
    return predictor
