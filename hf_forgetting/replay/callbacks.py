"""The callbacks `ReplayTrainer` adds: its replay state in every checkpoint, and the adaptive strategies' measurements
(online: probes measured at the switch and the row completed; MIR: candidates' forgetting refreshed)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from transformers import TrainerCallback


class ReplayStateCallback(TrainerCallback):
    """Writes the trainer's replay state into every checkpoint, for exact resumption."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.trainer.save_replay_state(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class AdaptiveReplayCallback(TrainerCallback):
    """Online: measure probes at the switch and complete the row. MIR: refresh candidate forgetting."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.base_scores: np.ndarray | None = None
        self.resumed = False
        self.probe_rows: np.ndarray | None = None
        self.switched = False

    def state_dict(self) -> dict:
        return {"base_scores": None if self.base_scores is None else self.base_scores.tolist()}

    def load_state_dict(self, state: dict) -> None:
        """Base-model NLLs measured before the first update of the original run, reused on resumption."""
        if state.get("base_scores") is not None:
            self.base_scores = np.asarray(state["base_scores"], dtype=np.float64)
            self.resumed = True

    def _pool_sample(self, size: int, salt: int) -> np.ndarray:
        pool = self.trainer.replay_pool_size
        rng = np.random.default_rng([self.trainer.args.resolved_replay_seed, 11, salt])
        return np.sort(rng.choice(pool, size=min(size, pool), replace=False))

    def on_train_begin(self, args, state, control, **kwargs):
        trainer = self.trainer
        self.switched = len(trainer.replay_sampler.switches) > 1  # resumed after the online switch
        if args.replay_strategy == "online":
            self.probe_rows = self._pool_sample(args.online_num_probe, 0)
        if self.resumed:
            return
        if args.replay_strategy == "online":
            self.base_scores = trainer.score_replay_rows(self.probe_rows)  # before any update: the base model
            unscored = [trainer.replay_ids[r] for r, v in zip(self.probe_rows, self.base_scores) if not np.isfinite(v)]
            if unscored:
                warnings.warn(f"{len(unscored)} of {len(self.probe_rows)} online probes have no finite NLL under the base "
                              f"model (e.g. {unscored[:3]}); the row will be completed from the others", stacklevel=2)
        else:  # MIR compares candidates with their base-model NLL: measure the whole pool once
            self.base_scores = trainer.score_replay_rows(range(trainer.replay_pool_size))

    def on_step_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        if args.replay_strategy == "online":
            switch_step = max(1, math.ceil(args.online_warmup_fraction * state.max_steps))
            if not self.switched and state.global_step >= switch_step:
                self._switch_to_predicted(trainer)
        elif state.global_step % args.mir_refresh_steps == 0:
            candidates = self._pool_sample(args.mir_candidates, state.global_step)
            forgetting = trainer.score_replay_rows(candidates) - self.base_scores[candidates]
            scores = np.full(trainer.replay_pool_size, -np.inf)
            # only fresh candidates, the most forgotten first; one without a scored token is not preferred
            scores[candidates] = np.where(np.isfinite(forgetting), forgetting, -np.inf)
            trainer.replay_sampler.set_scores(trainer.sampling_scores(scores))

    def _switch_to_predicted(self, trainer) -> None:
        """Measure the probes, complete the row from those with a finite forgetting, replay by it."""
        self.switched = True
        forgetting = trainer.score_replay_rows(self.probe_rows) - self.base_scores
        measured = np.isfinite(forgetting)
        if not measured.any():
            warnings.warn(f"None of the {len(forgetting)} online probes has a finite forgetting (no token to score, or a "
                          "non-finite loss): replay stays random", stacklevel=2)
            return
        known_ids = [trainer.replay_ids[r] for r in self.probe_rows[measured]]
        row = trainer.replay_predictor.predict(known_ids, forgetting[measured], calibrated=False)
        columns = trainer.replay_predictor.column_indices(trainer.replay_ids)
        trainer.replay_sampler.set_scores(trainer.sampling_scores(row[columns]))
