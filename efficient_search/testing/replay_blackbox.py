"""A :class:`~efficient_search.blackbox.Blackbox` on one instance as a replay source, so that a
:class:`~efficient_search.testing.replay.ReplaySimulation` drives searchers and schedulers over the
blackbox's *real* hyperparameters (the same space, lookup and clock for every method).

Budget step ``k`` is the fidelity value ``fidelity_steps(...)[k - 1]`` (epoch ``k`` on LCBench); a run
the blackbox holds at an earlier step (a table's run that stopped early) ends there. A
trial's config holds the hyperparameters of ``blackbox.space()`` (keys the schedulers add, such as
``epochs``, are ignored by the blackbox). A config's whole curve is evaluated in one batch the first
time it runs and kept, so replaying a step costs a lookup. Whether steps continue or restart comes
from ``blackbox.fidelity.continuable`` (see :mod:`efficient_search.testing.replay`).

Example::

    source = BlackboxReplay(YahpoBenchmark("lcbench"), "3945")
    searcher = OptunaSearcher(source.space(), metric=source.metric, mode=source.mode, seed=0)
    ref = source.reference()  # best/worst and median full-run seconds of 2,000 random configs
    outcome = ReplaySimulation(source, searcher, FIFOScheduler(), budget_s=5 * ref.full_run_s).run()
    outcome.regret_at(outcome.times[-1], best=ref.best, worst=ref.worst)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from efficient_search.blackbox.base import COST_KEY, Blackbox, check_instance
from efficient_search.blackbox.sampling import (
    GRID_POINTS,
    REFERENCE_SAMPLES,
    ReferenceValues,
    fidelity_steps,
    metric_mode,
    reference_values,
)


class BlackboxReplay:
    """``blackbox`` on ``instance`` as a :class:`~efficient_search.testing.replay.ReplaySource`.

    Args:
        blackbox: any Blackbox.
        instance: one of ``blackbox.instances``.
        metric, mode: the objective (default: the blackbox's; a mode it knows cannot be overridden).
        points: budget steps of a fidelity that is not a small range of whole numbers.
    """

    def __init__(self, blackbox: Blackbox, instance: str, *, metric: str | None = None,
                 mode: str | None = None, points: int = GRID_POINTS):
        if not isinstance(blackbox, Blackbox):
            raise TypeError(f"`blackbox` must be a Blackbox, but got {type(blackbox).__name__}.")
        self.blackbox = blackbox
        self.instance = check_instance(instance, blackbox.instances)
        self._metric, self._mode = metric_mode(blackbox, metric, mode)
        self.grid = fidelity_steps(blackbox.fidelity, points)
        self._names = list(blackbox.space())
        self._curves: dict[str, list[dict[str, Any]]] = {}

    # -- ReplaySource ------------------------------------------------------------------------------
    @property
    def metric(self) -> str:
        return self._metric

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def max_steps(self) -> int:
        return len(self.grid)

    @property
    def continuable(self) -> bool:
        return self.blackbox.fidelity.continuable

    def steps(self, config: Mapping[str, Any]) -> int:
        """Steps ``config`` can run: all, unless the blackbox holds a shorter run at its last step (a
        table's run that stopped early reports the fidelity it reached, below the one asked for)."""
        key = self.blackbox.fidelity.key
        reached = 0
        for out, value in zip(self._curve(config), self.grid, strict=True):
            if key in out and not math.isclose(float(out[key]), float(value), rel_tol=1e-9, abs_tol=1e-12):
                break
            reached += 1
        return max(reached, 1)

    def result(self, config: Mapping[str, Any], step: int) -> tuple[float, float, dict[str, Any]]:
        """The metric, the seconds of a run from scratch to ``step``, and the other outputs (among them
        ``fidelity/<name>``)."""
        if not 1 <= step <= self.max_steps:
            raise ValueError(f"`step` must be in [1, {self.max_steps}], but got {step!r}.")
        out = self._curve(config)[step - 1]
        others = {k: v for k, v in out.items() if k not in (self._metric, COST_KEY)}
        return float(out[self._metric]), float(out[COST_KEY]), others

    def _curve(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        hyperparameters = {n: config[n] for n in self._names if n in config}
        key = json.dumps(hyperparameters, sort_keys=True, default=str)
        if key not in self._curves:
            self._curves[key] = self.blackbox.evaluate_many(
                [hyperparameters] * len(self.grid), self.instance, self.grid)
        return self._curves[key]

    # -- what a benchmark needs besides ----------------------------------------------------------
    def space(self) -> dict[str, Any]:
        """The blackbox's space over the real hyperparameters (every method searches this)."""
        return self.blackbox.space()

    def reference(self, samples: int = REFERENCE_SAMPLES, seed: int = 0) -> ReferenceValues:
        """Best/worst value and median full-run seconds of random configs (an estimate; cached)."""
        return reference_values(self.blackbox, self.instance, metric=self._metric, mode=self._mode,
                                samples=samples, seed=seed)

    def __repr__(self) -> str:
        kind = "continues" if self.continuable else "restarts"
        return (f"BlackboxReplay({self.blackbox!r}, instance {self.instance!r}, {self.max_steps} steps, "
                f"{kind}, {self._metric} ({self._mode}))")
