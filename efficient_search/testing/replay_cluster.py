"""A simulated cluster of N workers for replayed searches: when each trial's budget step ends.

:class:`~efficient_search.testing.replay.ReplaySimulation` and
:class:`~efficient_search.testing.replay_stepwise.StepwiseReplay` hand every step they run to a
:class:`SimulatedCluster` and handle the finished steps in the order the simulated clock gives them,
so with several workers results interleave as they would on a real cluster. A
:class:`ClusterModel` says how the cluster behaves:

- ``workers``: trials training at once (each holds one worker from its start, or resume, until it
  pauses or ends);
- ``startup_s``: seconds before a trial's first step each time it starts or resumes on a worker
  (actor start, checkpoint restore);
- stragglers: every step's duration is multiplied by ``exp(N(0, jitter²))`` and, with probability
  ``straggler_p``, by ``straggler_slowdown`` on top (a slow or shared node);
- preemptions: a busy worker is lost at random, ``preemptions_per_hour`` times per simulated hour of
  its time (exponential waiting times). Its trial restarts on a replacement worker after
  ``recovery_s`` + ``startup_s``: from its last finished step when trials checkpoint every step
  (``checkpoints=True``, as :func:`~efficient_search.testing.replay.replay_trainable` does), else from
  the step its run started at (the trial's start, or the checkpoint it was paused at), as Tune restores
  a failed trial. Steps run again give the same values (a replay is deterministic), so they are charged
  to the clock but not reported again; the search method never hears of the loss.

A step's charge as reported (``time_this_iter_s``) is its slowed duration; start-up, recovery and
work run again are not in it: they only delay results. With the defaults (one worker, no latency,
noise or preemptions) the clock is the sum of the charges, as in the one-trial-at-a-time loop.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from efficient_search.validate import is_int

__all__ = ["ClusterModel", "ClusterStats", "SimulatedCluster"]


@dataclass(frozen=True)
class ClusterModel:
    """How a simulated cluster behaves (see the module docstring)."""

    workers: int = 1
    startup_s: float = 0.0
    jitter: float = 0.0
    straggler_p: float = 0.0
    straggler_slowdown: float = 4.0
    preemptions_per_hour: float = 0.0
    recovery_s: float = 0.0
    checkpoints: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not is_int(self.workers) or self.workers < 1:
            raise ValueError(f"`workers` must be an int >= 1, but got {self.workers!r}. Fix: e.g. workers=8.")
        for name in ("startup_s", "jitter", "preemptions_per_hour", "recovery_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, but got {value!r}. Fix: e.g. "
                                 f"{name}=0 to leave it out.")
        if not isinstance(self.straggler_p, (int, float)) or not 0 <= self.straggler_p <= 1:
            raise ValueError(f"`straggler_p` must be a probability in [0, 1], but got {self.straggler_p!r}. "
                             "Fix: e.g. straggler_p=0.05.")
        if not isinstance(self.straggler_slowdown, (int, float)) or not self.straggler_slowdown >= 1:
            raise ValueError(f"`straggler_slowdown` must be a factor >= 1, but got "
                             f"{self.straggler_slowdown!r}. Fix: e.g. straggler_slowdown=4.")
        if not is_int(self.seed):
            raise ValueError(f"`seed` must be an int, but got {self.seed!r}.")

    @property
    def noisy(self) -> bool:
        return self.jitter > 0 or self.straggler_p > 0


@dataclass
class ClusterStats:
    """What the workers did: training seconds (``busy_s``, work lost to preemptions included), the
    part lost, start-up and recovery seconds, preemptions, and the time the search ended."""

    workers: int = 1
    busy_s: float = 0.0
    lost_s: float = 0.0
    startup_s: float = 0.0
    preemptions: int = 0
    makespan_s: float = 0.0

    @property
    def utilisation(self) -> float:
        """Training seconds over ``workers`` x makespan (start-up, recovery and idle time not counted)."""
        return self.busy_s / (self.workers * self.makespan_s) if self.makespan_s > 0 else math.nan


@dataclass
class _Run:
    """A trial on a worker: the step in flight and the work a loss would make it run again."""

    token: int
    fresh: bool = True  # the next segment pays start-up
    charge: float = 0.0  # the step in flight's slowed duration (what is reported)
    begun: float = 0.0  # when the segment in flight began
    overhead: float = 0.0  # its start-up/recovery part, before the training part
    finished: float = 0.0  # charges of this run's finished steps (redone after a loss without checkpoints)
    retained: float = 0.0  # the part of them not lost since they last ran


class SimulatedCluster:
    """Workers, a clock and the steps in flight; :meth:`pop` hands over finished steps in time order.

    Example::

        cluster = SimulatedCluster(ClusterModel(workers=2))
        cluster.begin("a"); cluster.step("a", 5.0)
        cluster.begin("b"); cluster.step("b", 3.0)
        cluster.pop()  # ("b", 3.0) at cluster.clock == 3.0
    """

    def __init__(self, model: ClusterModel | None = None):
        self.model = model or ClusterModel()
        self.clock = 0.0
        self.stats = ClusterStats(workers=self.model.workers)
        self._rng = np.random.default_rng(self.model.seed)
        self._runs: dict[Hashable, _Run] = {}
        self._events: list[tuple[float, int, Hashable, int, bool]] = []  # (time, order, key, token, lost)
        self._order = 0

    @property
    def free(self) -> int:
        """Workers with no trial."""
        return self.model.workers - len(self._runs)

    @property
    def busy(self) -> bool:
        """Whether any step is in flight."""
        return bool(self._runs)

    def holds(self, key: Hashable) -> bool:
        return key in self._runs

    def begin(self, key: Hashable) -> None:
        """Trial ``key`` takes a free worker (its next step pays start-up)."""
        if key in self._runs:
            raise RuntimeError(f"trial {key!r} already holds a worker.")
        if not self.free:
            raise RuntimeError(f"no free worker for trial {key!r}: all {self.model.workers} are taken.")
        self._order += 1
        self._runs[key] = _Run(token=self._order)

    def step(self, key: Hashable, seconds: float) -> None:
        """Start a step of ``seconds`` (before noise) for trial ``key``, which holds a worker."""
        run = self._runs[key]
        run.charge = max(float(seconds), 0.0) * self._slowdown()
        overhead = 0.0
        if run.fresh:
            run.fresh, overhead = False, self.model.startup_s
        self._schedule(key, run, overhead, run.charge)

    def end(self, key: Hashable) -> None:
        """Trial ``key`` leaves its worker (paused, stopped or finished); a step in flight is dropped."""
        run = self._runs.pop(key, None)
        if run is not None:
            self._account(run, self.clock)

    def pop(self) -> tuple[Hashable, float] | None:
        """Advance the clock to the next finished step: ``(key, its charge)``; None when none is in
        flight. Preemptions on the way are handled here (module docstring)."""
        while self._events:
            time, _, key, token, lost = heapq.heappop(self._events)
            run = self._runs.get(key)
            if run is None or run.token != token:
                continue  # the trial left its worker before this step ended
            self.clock = time
            wasted = max(time - run.begun - run.overhead, 0.0)  # the segment's training so far
            self._account(run, time)
            if lost:
                self._preempted(key, run, wasted)
                continue
            run.finished += run.charge
            run.retained = run.finished
            return key, run.charge
        return None

    def close(self, at: float) -> ClusterStats:
        """Count the steps still in flight up to ``at`` (the end of the search) and return the stats."""
        for run in self._runs.values():
            self._account(run, at)
        self.stats.makespan_s = at
        return self.stats

    # -- inside -------------------------------------------------------------------------------------
    def _slowdown(self) -> float:
        model = self.model
        if not model.noisy:
            return 1.0
        factor = math.exp(self._rng.normal(0.0, model.jitter)) if model.jitter > 0 else 1.0
        if model.straggler_p > 0 and self._rng.random() < model.straggler_p:
            factor *= model.straggler_slowdown
        return factor

    def _loss_after(self) -> float:
        """Seconds until the worker of a segment starting now is lost (inf: never)."""
        rate = self.model.preemptions_per_hour / 3600.0
        return float(self._rng.exponential(1.0 / rate)) if rate > 0 else math.inf

    def _schedule(self, key: Hashable, run: _Run, overhead: float, training: float) -> None:
        run.begun, run.overhead = self.clock, overhead
        length = overhead + training
        lost_after = self._loss_after()
        lost = lost_after < length
        self._order += 1
        heapq.heappush(self._events, (self.clock + (lost_after if lost else length), self._order, key,
                                      run.token, lost))

    def _account(self, run: _Run, until: float) -> None:
        """Add the segment in flight's start-up and training seconds up to ``until`` to the stats."""
        elapsed = max(until - run.begun, 0.0)
        self.stats.startup_s += min(elapsed, run.overhead)
        self.stats.busy_s += max(elapsed - run.overhead, 0.0)
        run.begun, run.overhead = until, max(run.overhead - elapsed, 0.0)

    def _preempted(self, key: Hashable, run: _Run, wasted: float) -> None:
        """The worker under ``key`` was lost ``wasted`` training seconds into its segment: run the lost
        work again on a replacement."""
        self.stats.preemptions += 1
        self.stats.lost_s += wasted
        redo = 0.0
        if not self.model.checkpoints:  # the run's finished steps are lost too (counted once per loss)
            redo, self.stats.lost_s, run.retained = run.finished, self.stats.lost_s + run.retained, 0.0
        self._schedule(key, run, self.model.recovery_s + self.model.startup_s, redo + run.charge)
