"""Replay a source for search methods that are not Ray Tune objects: another library's own loop.

Some peers are best compared the way their authors run them, through their own API rather than
through Ray Tune adapters: Optuna's ask/tell with its pruner, syne-tune's schedulers. A
:class:`StepwiseMethod` is that API reduced to what a one-worker tuning loop does: ``ask`` for a
trial, ``report`` each budget step (the method answers whether the trial goes on), ``end`` it.
:class:`StepwiseReplay` drives one over any
:class:`~efficient_search.testing.replay.ReplaySource` on the same simulated clock, with the same
charges and the same :class:`~efficient_search.testing.replay.ReplayOutcome` as
:class:`~efficient_search.testing.replay.ReplaySimulation`, so its figures compare with theirs.

A trial runs budget steps ``1, 2, ...`` until the method stops it or it reaches the end of its run;
on a non-continuable fidelity each step is a fresh run charged in full (as FIFO/ASHA trials are in
``ReplaySimulation``). These loops stop trials; they never pause and resume one. With several
workers (``cluster``, see :mod:`~efficient_search.testing.replay_cluster`) several trials train at
once and their reports interleave on the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from efficient_search.testing.replay import COST_KEY, ReplayOutcome, ReplaySource, drive, step_charge
from efficient_search.testing.replay_cluster import ClusterModel, SimulatedCluster

__all__ = ["StepwiseMethod", "StepwiseReplay"]


class StepwiseMethod(Protocol):
    """A search method as one sequential worker sees it."""

    def ask(self) -> tuple[Any, dict[str, Any]] | None:
        """A new trial: ``(handle, config)``, or None when the method has nothing more to run."""
        ...

    def report(self, handle: Any, step: int, result: dict[str, Any]) -> bool:
        """Budget step ``step`` of the trial finished with ``result``; True to run the next step."""
        ...

    def end(self, handle: Any, result: dict[str, Any], completed: bool) -> None:
        """The trial is over: ``completed`` if it ran to its last step, else the method stopped it."""
        ...


class StepwiseReplay:
    """Drive ``method`` over ``source`` for ``budget_s`` simulated seconds on a simulated cluster
    (``cluster``; default one worker: one trial at a time). Whenever a worker is free the method is
    asked for a trial; with several workers, reports arrive in the order the clock gives them. A
    method that has nothing to run (``ask`` gives None) is asked again after the next report, and the
    search ends when it has nothing to run and no trial is training, or early when ``until(outcome)``
    (asked after each report) is true.

    Example::

        outcome = StepwiseReplay(source, OptunaPruned(...), budget_s=1800.0).run()
        outcome.regret_at(900.0, best=ref.best, worst=ref.worst)
    """

    def __init__(self, source: ReplaySource, method: StepwiseMethod, *, budget_s: float,
                 max_trials: int = 10_000, cluster: ClusterModel | None = None,
                 until: Callable[[ReplayOutcome], bool] | None = None):
        if not budget_s > 0:
            raise ValueError(f"`budget_s` must be > 0 simulated seconds, but got {budget_s!r}.")
        self.source, self.method = source, method
        self.budget_s, self.max_trials = float(budget_s), max_trials
        self.cluster = SimulatedCluster(cluster)
        self.until = until
        self.outcome = ReplayOutcome(mode=source.mode)
        self._trials: dict[str, _Running] = {}

    @property
    def clock(self) -> float:
        """Simulated seconds since the search began."""
        return self.cluster.clock

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        return self.outcome.timed(call, *args)

    def run(self) -> ReplayOutcome:
        return drive(self)

    def _fill(self) -> None:
        while self.cluster.free and self.outcome.trials < self.max_trials:
            asked = self._timed(self.method.ask)
            if asked is None:
                return
            handle, config = asked
            trial = _Running(f"s{self.outcome.trials:05d}", handle, config, self.source.steps(config))
            self.outcome.trials += 1
            self._trials[trial.trial_id] = trial
            self.cluster.begin(trial.trial_id)
            self._next_step(trial)

    def _next_step(self, trial: _Running) -> None:
        trial.step += 1
        seconds = self.source.result(trial.config, trial.step)[1]
        self.cluster.step(trial.trial_id, step_charge(self.source, trial.config, trial.step, seconds))

    def _reported(self, trial: _Running, charge: float) -> bool:
        """Report a finished step of ``trial``; False when the budget ran out."""
        step = trial.step
        value, _, fidelity = self.source.result(trial.config, step)
        trial.spent += charge
        self.outcome.record(trial.trial_id, step, value, charge, self.clock)
        result = {**fidelity, self.source.metric: value, "training_iteration": step,
                  COST_KEY: trial.spent, "time_this_iter_s": charge}
        go_on = self._timed(self.method.report, trial.handle, step, result)
        if self.clock >= self.budget_s:
            return False  # the run is cut short: as when Tune's time budget ends, nothing is told
        if not go_on or step >= trial.end:
            self.cluster.end(trial.trial_id)
            del self._trials[trial.trial_id]
            self._timed(self.method.end, trial.handle, result, step >= trial.end)
        else:
            self._next_step(trial)
        return True


@dataclass
class _Running:
    """A trial of the method's on a worker."""

    trial_id: str
    handle: Any
    config: dict[str, Any]
    end: int
    step: int = 0
    spent: float = 0.0
