"""Replay recorded learning curves as if they were trained: for tests and the Quick-Tune benchmark.

A :class:`ReplayTable` is one data set of a :class:`~efficient_search.surrogate.MetaDataset`: its
search space is the categorical ``{"config": row}`` over the configs recorded there (a row index;
:meth:`ReplayTable.hyperparameters` maps it back to the real hyperparameters for a searcher that
knows them). Two ways to replay a row:

- :func:`replay_trainable`: a Ray Tune function trainable that reports the recorded metric after each
  epoch, ``fidelity/epoch`` and the recorded cumulative seconds as ``cost/seconds``, checkpointing
  the epoch so paused trials continue (no sleeping: time is simulated);
- :class:`ReplaySimulation`: the same trials driven in-process through the same Ray ``Searcher`` and
  ``TrialScheduler`` objects, the way Tune's controller calls them, on a simulated clock and a
  simulated cluster of N workers (one by default: one trial at a time; see
  :mod:`~efficient_search.testing.replay_cluster` for start-up latency, stragglers and preemptions).
  Hundreds of searches fit in minutes on 2 cores.

The simulation replays any :class:`ReplaySource`: a :class:`ReplayTable`, or a blackbox on one
instance (:class:`~efficient_search.testing.replay_blackbox.BlackboxReplay`, configs over the real
hyperparameters). Budget steps are whole numbers ``1..max_steps`` (epochs, or the points of a
fidelity grid). How a trial's steps are charged to the clock:

- a *continuable* fidelity (epochs) continues: step ``k`` costs ``max(0, seconds(k) - seconds(k-1))``
  of the source's cumulative seconds (a surrogate's need not be monotone); a trial whose config sets
  ``fidelity_restart`` (a restart promotion) trains from step 1 again when it resumes;
- a *non-continuable* fidelity (a training-set fraction) restarts: every step is a run from scratch
  that costs ``seconds(k)`` in full. A trial whose config sets ``epochs`` (the scheduler asks for one
  fidelity: freeze-thaw, layer-freezing rungs) runs that step alone; otherwise (ASHA, HyperBand,
  FIFO) it steps up one fidelity at a time, each a fresh run.

Each step reports the metric, ``training_iteration`` (the step: what Ray's ASHA/HyperBand and our
schedulers count with ``time_attr="training_iteration"``), the source's ``fidelity/*`` keys
(``fidelity/epoch`` for epochs), ``cost/seconds`` (seconds charged to the trial so far) and
``time_this_iter_s`` (this step's charge). With one worker and no cluster noise the clock advances only
by charges; with N workers each trial's steps follow one another on its worker and results are handled
in the order they end. The incumbent follows the source's mode.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from efficient_search.fidelity import EPOCHS, is_restart
from efficient_search.surrogate.meta_dataset import MetaDataset
from efficient_search.testing.replay_cluster import ClusterModel, ClusterStats, SimulatedCluster
from efficient_search.testing.schedulers import WhitelistedController
from efficient_search.validate import is_int

METRIC = "accuracy"
CONFIG_KEY = "config"
COST_KEY = "cost/seconds"


class ReplaySource(Protocol):
    """What a :class:`ReplaySimulation` replays: a metric per (config, budget step) and its cost."""

    @property
    def metric(self) -> str: ...

    @property
    def mode(self) -> str: ...

    @property
    def max_steps(self) -> int: ...

    @property
    def continuable(self) -> bool: ...

    def steps(self, config: Mapping[str, Any]) -> int:
        """Budget steps ``config`` can run (a recorded run may have stopped early)."""
        ...

    def result(self, config: Mapping[str, Any], step: int) -> tuple[float, float, dict[str, Any]]:
        """``(metric, seconds of a run from scratch up to step, fidelity keys)`` for ``config``."""
        ...


@dataclass
class ReplayTable:
    """One data set's recorded runs: rows of hyperparameters, ``(N, T)`` curves and per-step costs."""

    name: str
    data: MetaDataset

    @classmethod
    def from_meta_dataset(cls, data: MetaDataset, name: str) -> ReplayTable:
        return cls(name, data.select([name]))

    @property
    def rows(self) -> int:
        return self.data.n_rows

    @property
    def max_epochs(self) -> int:
        return self.data.n_steps

    def space(self) -> dict[str, Any]:
        return {CONFIG_KEY: tune.choice(list(range(self.rows)))}

    def row(self, config: Mapping[str, Any]) -> int:
        index = config.get(CONFIG_KEY)
        if not is_int(index, numpy=True) or not 0 <= index < self.rows:
            raise ValueError(
                f"`config.{CONFIG_KEY}` must be a row index in [0, {self.rows}), but got {index!r}."
            )
        return int(index)

    def hyperparameters(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The recorded hyperparameters of the row a config names (what a surrogate reads)."""
        values = self.data.configs.iloc[self.row(config)].to_dict()
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}

    def length(self, row: int) -> int:
        """Epochs recorded for ``row`` (runs in the meta-dataset may have stopped early)."""
        observed = np.flatnonzero(np.isfinite(self.data.curves[row]))
        return int(observed[-1]) + 1 if observed.size else 0

    def value(self, row: int, epoch: int) -> float:
        return float(self.data.curves[row, epoch - 1])

    def cost(self, row: int, epoch: int) -> float:
        seconds = self.data.costs[row, epoch - 1]
        return float(seconds) if math.isfinite(seconds) else 0.0

    @property
    def best(self) -> float:
        return float(np.nanmax(self.data.curves))

    @property
    def worst(self) -> float:
        return float(np.nanmin(self.data.curves))

    def meta_features(self) -> dict[str, float] | None:
        meta = self.data.meta_features
        return None if meta.shape[1] == 0 else {str(k): float(v) for k, v in meta.loc[self.name].items()}

    # -- ReplaySource ------------------------------------------------------------------------------
    metric = METRIC
    mode = "max"
    continuable = True

    @property
    def max_steps(self) -> int:
        return self.max_epochs

    def steps(self, config: Mapping[str, Any]) -> int:
        return self.length(self.row(config))

    def result(self, config: Mapping[str, Any], step: int) -> tuple[float, float, dict[str, Any]]:
        row = self.row(config)
        return self.value(row, step), float(self._cumulative[row, step - 1]), {"fidelity/epoch": step}

    @functools.cached_property
    def _cumulative(self) -> np.ndarray:
        return self.data.cumulative_costs()  # unknown steps cost 0, as in cost()


def replay_trainable(table: ReplayTable) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable replaying ``table``'s rows up to ``config["epochs"]`` (default all)."""

    def replay(config: dict[str, Any]) -> None:
        row = table.row(config)
        start, seconds = 0, 0.0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder, open(os.path.join(folder, "replay.json")) as stream:
                state = json.load(stream)
            start, seconds = int(state["epoch"]), float(state["seconds"])
        end = min(int(config.get("epochs") or table.max_epochs), table.length(row))
        for epoch in range(start + 1, end + 1):
            seconds += table.cost(row, epoch)
            with tempfile.TemporaryDirectory() as folder:
                with open(os.path.join(folder, "replay.json"), "w") as stream:
                    json.dump({"epoch": epoch, "seconds": seconds}, stream)
                tune.report(
                    {METRIC: table.value(row, epoch), "fidelity/epoch": epoch, "cost/seconds": seconds},
                    checkpoint=tune.Checkpoint.from_directory(folder),
                )

    return replay


class _SearchAlg:
    """Stands in for Tune's ``SearchGenerator`` where schedulers look (``search_alg.searcher``)."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher


class _Controller(WhitelistedController):
    """The whitelisted controller, telling the searcher too when a trial is stopped (as Tune's does),
    and the simulation when a trial that holds a worker is stopped or paused (it leaves the worker)."""

    def __init__(self, searcher: Searcher, leave: Callable[[Trial], None]):
        super().__init__()
        self.searcher = searcher
        self.search_alg = _SearchAlg(searcher)  # type: ignore[assignment]
        self._leave = leave
        #: Trials that were made PENDING (new, or by a scheduler), oldest first: a superset of the
        #: pending ones, so finding them takes no scan over every trial.
        self.queued: dict[Trial, None] = {}

    def _set_trial_status(self, trial: Trial, status: str) -> None:
        super()._set_trial_status(trial, status)
        if status == Trial.PENDING:
            self.queued[trial] = None

    def pending(self) -> list[Trial]:
        """The PENDING trials, oldest first."""
        for trial in [t for t in self.queued if t.status != Trial.PENDING]:
            del self.queued[trial]
        return list(self.queued)

    def stop_trial(self, trial: Trial) -> None:
        if trial.status in (Trial.PENDING, Trial.PAUSED, Trial.RUNNING):
            self.searcher.on_trial_complete(trial.trial_id, trial.run_metadata.last_result or None)
        running = trial.status == Trial.RUNNING
        super().stop_trial(trial)
        if running:
            self._leave(trial)

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        running = trial.status == Trial.RUNNING
        super().pause_trial(trial, should_checkpoint)
        if running:
            self._leave(trial)


@dataclass(frozen=True)
class ReplayStep:
    """One reported step: which trial, which budget step, its value, what it cost, the clock after."""

    trial_id: str
    step: int
    value: float
    charge: float
    clock: float


@dataclass
class ReplayOutcome:
    """What one replayed search reached: the incumbent after each step, on the simulated clock."""

    mode: str = "max"
    times: list[float] = field(default_factory=list)
    incumbents: list[float] = field(default_factory=list)
    epochs: int = 0  # budget steps run
    trials: int = 0
    overhead_s: float = 0.0  # wall seconds spent inside the searcher and scheduler
    log: list[ReplayStep] = field(default_factory=list)
    #: Wall seconds of every call into the method, by the called method's name (``suggest``, ...), kept
    #: once ``latency_after`` trials have started (to read them at scale).
    latencies: dict[str, list[float]] = field(default_factory=dict)
    latency_after: int = 0
    #: What the simulated workers did (utilisation, preemptions); set when the search ends.
    cluster: ClusterStats = field(default_factory=ClusterStats)

    def incumbent_at(self, t: float) -> float:
        """The best value seen by simulated time ``t`` (NaN before the first)."""
        i = int(np.searchsorted(np.asarray(self.times), t, side="right"))
        return self.incumbents[i - 1] if i else math.nan

    def regret_at(self, t: float, *, best: float, worst: float) -> float:
        """Normalised regret at time ``t``: 0 at ``best``, 1 at ``worst`` or before any result, capped
        at 1 (a low-fidelity value may be worse than ``worst``); below 0 if ``best`` was beaten."""
        value = self.incumbent_at(t)
        if not math.isfinite(value):
            return 1.0
        sign = 1.0 if self.mode == "max" else -1.0
        return min(1.0, sign * (best - value) / max(sign * (best - worst), 1e-12))

    def timed(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``, its wall time added to :attr:`overhead_s` (the method's own time) and to
        :attr:`latencies` under the call's name."""
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            took = time.perf_counter() - started
            self.overhead_s += took
            if self.trials >= self.latency_after:
                self.latencies.setdefault(getattr(call, "__name__", "call"), []).append(took)

    def record(self, trial_id: str, step: int, value: float, charge: float, clock: float) -> None:
        """One reported step at simulated time ``clock``; the incumbent follows ``mode``."""
        best = self.incumbents[-1] if self.incumbents else math.nan
        if math.isfinite(value) and not (
            math.isfinite(best) and (value <= best if self.mode == "max" else value >= best)
        ):
            best = value
        self.times.append(clock)
        self.incumbents.append(best)
        self.epochs += 1
        self.log.append(ReplayStep(trial_id, step, value, charge, clock))


def step_charge(source: ReplaySource, config: Mapping[str, Any], step: int, seconds: float) -> float:
    """Seconds budget step ``step`` of ``config`` adds to the clock, given the source's cumulative
    ``seconds`` of a run from scratch to it: the increase over the step before on a continuable
    fidelity (never below 0), the whole run on a non-continuable one (see the module docstring)."""
    if not source.continuable or step == 1:
        return max(seconds, 0.0)
    return max(seconds - source.result(config, step - 1)[1], 0.0)


def drive(sim: Any) -> ReplayOutcome:
    """The event loop both replays share: fill free workers (``sim._fill``), hand the next finished step
    to ``sim._reported`` until the budget, the work or ``sim.until`` ends the search; then the stats."""
    while sim.clock < sim.budget_s:
        sim._fill()
        finished = sim.cluster.pop()
        if finished is None or not sim._reported(sim._trials[str(finished[0])], finished[1]):
            break
        if sim.until is not None and sim.until(sim.outcome):
            break
    sim.outcome.cluster = sim.cluster.close(sim.clock)
    return sim.outcome


class ReplaySimulation:
    """Drive ``searcher`` + ``scheduler`` over ``source`` (a :class:`ReplaySource`) for ``budget_s``
    simulated seconds on a simulated cluster (``cluster``; default one worker, no noise: one trial at a
    time), calling them as Tune's controller does: at most one pending trial at a time (Tune's default
    for a searcher), and whenever a worker is free, ``choose_trial_to_run`` first, then any pending
    trial. Results arrive in the order the simulated clock gives them; ``until(outcome)``, if given, is
    asked after each and ends the search early when true. See the module docstring for how steps are
    charged and :mod:`~efficient_search.testing.replay_cluster` for the cluster."""

    def __init__(
        self,
        source: ReplaySource,
        searcher: Searcher,
        scheduler: TrialScheduler,
        *,
        budget_s: float,
        max_trials: int = 10_000,
        cluster: ClusterModel | None = None,
        until: Callable[[ReplayOutcome], bool] | None = None,
    ):
        self.source, self.searcher, self.scheduler = source, searcher, scheduler
        self.table = source  # the name older callers use
        self.budget_s, self.max_trials = float(budget_s), max_trials
        self.controller = _Controller(searcher, self._leave)
        self.controller.scheduler = scheduler
        self.cluster = SimulatedCluster(cluster)
        self.until = until
        self.progress: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.outcome = ReplayOutcome(mode=source.mode)
        self._searcher_done = False
        self._trials: dict[str, Trial] = {}
        self._plans: dict[str, deque[int]] = {}
        self._ends: dict[str, int] = {}

    @property
    def clock(self) -> float:
        """Simulated seconds since the search began."""
        return self.cluster.clock

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        return self.outcome.timed(call, *args)

    def _add_trial(self) -> None:
        trials = self.controller.trials
        if self._searcher_done or self.controller.pending() or len(trials) >= self.max_trials:
            return
        trial_id = f"r{len(trials):05d}"
        config = self._timed(self.searcher.suggest, trial_id)
        if config is Searcher.FINISHED:
            self._searcher_done = True
            return
        if config is None:
            return
        trial = Trial("replay", config=dict(config), trial_id=trial_id, stub=True)
        trials.append(trial)
        self.controller.queued[trial] = None
        self._trials[trial_id] = trial
        self.outcome.trials += 1
        self._timed(self.scheduler.on_trial_add, self.controller, trial)

    def run(self) -> ReplayOutcome:
        return drive(self)

    def _fill(self) -> None:
        """Hand free workers to trials as Tune's controller steps would, until none is free or nothing
        more can start."""
        while self.cluster.free:
            self._add_trial()
            chosen = self._timed(self.scheduler.choose_trial_to_run, self.controller)
            started = chosen is not None and self._start(chosen)
            for trial in self.controller.pending():  # Tune starts pending trials by itself
                if not self.cluster.free:
                    break
                started = self._start(trial) or started
            if not started:
                return

    def _finish(self, trial: Trial, result: dict[str, Any]) -> None:
        trial.set_status(Trial.TERMINATED)
        self._timed(self.scheduler.on_trial_complete, self.controller, trial, result)
        self._timed(self.searcher.on_trial_complete, trial.trial_id, result)

    def _leave(self, trial: Trial) -> None:
        self.cluster.end(trial.trial_id)

    def _plan(self, config: Mapping[str, Any], progress: int, end: int) -> list[int]:
        """The steps a trial at ``progress`` runs now to reach ``end`` (module docstring)."""
        if not self.source.continuable:
            return [end] if config.get(EPOCHS) else list(range(progress + 1, end + 1))
        return list(range(1 if is_restart(config) else progress + 1, end + 1))

    def _start(self, trial: Trial) -> bool:
        """Start or resume a waiting ``trial`` on a free worker; False if it is not waiting."""
        if trial.status not in (Trial.PENDING, Trial.PAUSED) or not self.cluster.free:
            return False
        config, trial_id = trial.config, trial.trial_id
        self._trials[trial_id] = trial
        trial.set_status(Trial.RUNNING)
        end = min(int(config.get(EPOCHS) or self.source.max_steps), self.source.steps(config))
        plan = self._plan(config, self.progress.get(trial_id, 0), end)
        if not plan:  # nothing left to train: Tune completes the trial with its last result
            self._finish(trial, dict(trial.run_metadata.last_result or {}))
            return True
        self._plans[trial_id], self._ends[trial_id] = deque(plan), end
        self.cluster.begin(trial_id)
        self._next_step(trial)
        return True

    def _next_step(self, trial: Trial) -> None:
        step = self._plans[trial.trial_id][0]
        seconds = self.source.result(trial.config, step)[1]
        self.cluster.step(trial.trial_id, step_charge(self.source, trial.config, step, seconds))

    def _reported(self, trial: Trial, charge: float) -> bool:
        """Handle a finished step of ``trial`` (charged ``charge`` seconds); False when the budget ran out."""
        trial_id = trial.trial_id
        step = self._plans[trial_id].popleft()
        value, _, fidelity = self.source.result(trial.config, step)
        self.seconds[trial_id] = self.seconds.get(trial_id, 0.0) + charge
        self.outcome.record(trial_id, step, value, charge, self.clock)
        result = {
            **fidelity,
            self.source.metric: value,
            "training_iteration": step,
            COST_KEY: self.seconds[trial_id],
            "time_this_iter_s": charge,
            "trial_id": trial_id,
        }
        trial.run_metadata.last_result = dict(result)
        self.progress[trial_id] = step
        decision = self._timed(self.scheduler.on_trial_result, self.controller, trial, result)
        if decision != TrialScheduler.STOP:
            self._timed(self.searcher.on_trial_result, trial_id, result)
        if self.clock >= self.budget_s:
            return False
        if trial.status == Trial.TERMINATED:  # stopped through the controller: it left its worker
            return True
        if decision == TrialScheduler.PAUSE or trial.status == Trial.PAUSED:
            if trial.status == Trial.RUNNING:
                self._timed(self.scheduler.choose_trial_to_run, self.controller)  # Tune asks while saving
            trial.set_status(Trial.PAUSED)
            self.cluster.end(trial_id)
            return True
        if decision == TrialScheduler.STOP or step >= self._ends[trial_id] or not self._plans[trial_id]:
            self.cluster.end(trial_id)
            self._finish(trial, result)
            return True
        self._next_step(trial)
        return True
