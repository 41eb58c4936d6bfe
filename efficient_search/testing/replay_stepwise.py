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
``ReplaySimulation``). These loops stop trials; they never pause and resume one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from efficient_search.testing.replay import COST_KEY, ReplayOutcome, ReplaySource, step_charge

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
    """Drive ``method`` over ``source`` one trial at a time for ``budget_s`` simulated seconds.

    Example::

        outcome = StepwiseReplay(source, OptunaPruned(...), budget_s=1800.0).run()
        outcome.regret_at(900.0, best=ref.best, worst=ref.worst)
    """

    def __init__(self, source: ReplaySource, method: StepwiseMethod, *, budget_s: float,
                 max_trials: int = 10_000):
        if not budget_s > 0:
            raise ValueError(f"`budget_s` must be > 0 simulated seconds, but got {budget_s!r}.")
        self.source, self.method = source, method
        self.budget_s, self.max_trials = float(budget_s), max_trials
        self.clock = 0.0
        self.outcome = ReplayOutcome(mode=source.mode)

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        return self.outcome.timed(call, *args)

    def run(self) -> ReplayOutcome:
        while self.clock < self.budget_s and self.outcome.trials < self.max_trials:
            asked = self._timed(self.method.ask)
            if asked is None:
                break
            handle, config = asked
            self.outcome.trials += 1
            self._trial(f"s{self.outcome.trials - 1:05d}", handle, config)
        return self.outcome

    def _trial(self, trial_id: str, handle: Any, config: dict[str, Any]) -> None:
        end = self.source.steps(config)
        spent, result = 0.0, {}
        for step in range(1, end + 1):
            value, seconds, fidelity = self.source.result(config, step)
            charge = step_charge(self.source, config, step, seconds)
            self.clock += charge
            spent += charge
            self.outcome.record(trial_id, step, value, charge, self.clock)
            result = {**fidelity, self.source.metric: value, "training_iteration": step,
                      COST_KEY: spent, "time_this_iter_s": charge}
            go_on = self._timed(self.method.report, handle, step, result)
            if self.clock >= self.budget_s:
                return  # the run is cut short: as when Tune's time budget ends, nothing is told
            if not go_on or step == end:
                self._timed(self.method.end, handle, result, step == end)
                return
