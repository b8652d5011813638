"""The replay schedule: which rows a training epoch visits, in which order.

The training dataset of a ``ReplayTrainer`` is the task rows (indices ``0 .. num_task - 1``) followed by
the replayable upstream rows. Each epoch visits the task rows in a seeded random order and, after every
``replay_every`` of them, one replay row. Replay rows are drawn without replacement from an order fixed
by the sampling weights: ``sample`` orders the pool by Gumbel keys ``log p + G`` (drawing without
replacement with probabilities proportional to ``p``, Efraimidis-Spirakis), ``max`` by decreasing
score. When the pool is used up it is drawn again from the start of a fresh order.

Everything is a function of ``(seed, epoch, weights)``, so every process draws the same schedule and a
resumed run, which skips the batches it already trained on, continues exactly where it stopped. The
weights can be replaced during an epoch (online and MIR strategies): rows not yet drawn are then taken
from an order computed from the new weights with a seed that also depends on the position.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def replay_probabilities(scores: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(scores / temperature), computed stably."""
    logits = np.asarray(scores, dtype=np.float64) / temperature
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


def standardized(scores: np.ndarray) -> np.ndarray:
    """Scores with zero mean and unit standard deviation over their finite entries (-inf stays -inf)."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    if finite.sum() < 2:
        return scores
    spread = scores[finite].std()
    centred = np.where(finite, scores - scores[finite].mean(), scores)
    return centred / spread if spread > 0 else np.where(finite, 0.0, scores)


def draw_order(scores: np.ndarray, temperature: float, selection: str, rng: np.random.Generator) -> np.ndarray:
    """A full order of the pool: by decreasing score (``max``) or Gumbel-top-k under softmax(f/T) (``sample``).

    Rows that cannot be told apart (equal scores under ``max``; rows of zero probability, such as the
    ``-inf`` of rows MIR did not measure, under ``sample``) come in a random order among themselves, not
    by row number.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if selection == "max":
        keys = scores
    else:
        with np.errstate(divide="ignore"):
            keys = np.log(replay_probabilities(scores, temperature)) + rng.gumbel(size=len(scores))
    tie_break = rng.permutation(len(scores))
    return np.lexsort((tie_break, -keys))


class ReplaySampler(torch.utils.data.Sampler):
    """Yields dataset indices: task rows interleaved with replay rows (offset by ``num_task``).

    ``switches`` lists ``(epoch, position, scores)``: from stream position ``position`` (rows yielded,
    task and replay) of epoch ``epoch`` on, replay rows follow ``scores`` (None = uniform). It is the sampler's whole mutable state, saved in
    checkpoints so that a resumed run draws the same rows.
    """

    def __init__(
        self,
        num_task: int,
        num_replay: int,
        replay_every: int,
        seed: int,
        *,
        temperature: float = 0.1,
        selection: str = "sample",
        scores: np.ndarray | None = None,
    ):
        if num_task < 1 or num_replay < 1:
            raise ValueError(f"ReplaySampler needs task and replay rows; got {num_task} and {num_replay}")
        self.num_task, self.num_replay, self.replay_every = num_task, num_replay, replay_every
        self.seed, self.temperature, self.selection = seed, temperature, selection
        self.epoch, self.position = 0, 0
        self.switches: list[tuple[int, int, np.ndarray | None]] = [(0, 0, self._checked(scores))]

    @property
    def num_replay_per_epoch(self) -> int:
        return self.num_task // self.replay_every

    def __len__(self) -> int:
        return self.num_task + self.num_replay_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _checked(self, scores):
        if scores is None:
            return None
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (self.num_replay,) or np.isnan(scores).any():
            raise ValueError(f"replay scores must be {self.num_replay} numbers without NaN; got shape {scores.shape}")
        return scores

    def set_scores(self, scores: np.ndarray | None) -> None:
        """Replay rows drawn from now on (after the rows this epoch has yielded so far) follow ``scores``
        (None = uniform)."""
        self.switches.append((self.epoch, self.position, self._checked(scores)))

    def _active(self, index: int) -> int:
        """Index of the switch in force for the row at stream position ``index`` (0-based, task and replay
        rows counted) of this epoch: a switch made after ``p`` rows were yielded applies from position ``p`` on."""
        return max(i for i, (e, p, _) in enumerate(self.switches) if (e, p) <= (self.epoch, index))

    def _order(self, switch: int, salt: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, switch, salt])
        scores = self.switches[switch][2]
        if scores is None:
            return rng.permutation(self.num_replay)
        return draw_order(scores, self.temperature, self.selection, rng)

    def __iter__(self) -> Iterator[int]:
        task_order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_task)
        switch, refills, order, cursor, used = -1, 0, np.empty(0, dtype=np.int64), 0, set()
        self.position = 0  # rows yielded so far in this epoch; counted before each yield
        for count, task_row in enumerate(task_order, start=1):
            self.position += 1
            yield int(task_row)
            if count % self.replay_every:
                continue
            if self._active(self.position) != switch:  # the weights changed (online switch, MIR refresh)
                switch = self._active(self.position)
                order, cursor = self._order(switch, refills), 0
            while cursor < len(order) and int(order[cursor]) in used:
                cursor += 1
            if cursor == len(order):  # pool exhausted: draw it again in a fresh order
                refills += 1
                used.clear()
                order, cursor = self._order(switch, refills), 0
            replay_row = int(order[cursor])
            used.add(replay_row)
            cursor += 1
            self.position += 1
            yield self.num_task + replay_row
        self.position = 0

    # -- checkpoint state -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"switches": [[e, p, None if s is None else s.tolist()] for e, p, s in self.switches]}

    def load_state_dict(self, state: dict) -> None:
        self.switches = [(int(e), int(p), self._checked(s)) for e, p, s in state["switches"]]
