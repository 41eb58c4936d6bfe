"""The successive-halving guard of freeze-thaw (no Ray): at a rung, only the best ``1/eta`` go on.

A trial paused at a rung (``budget_step * eta**k`` below the last step) may continue only if its value
there is among the best ``ceil(n / eta)`` of the ``n`` trials that reached that rung, as in ASHA;
between rungs every trial may. The acquisition still chooses among those that may.
"""

from __future__ import annotations

import math

import numpy as np

from efficient_search.searchers.quicktune_observations import Observations


def rung_steps(budget_step: int, eta: int | None, limit: int) -> set[int]:
    """``budget_step * eta**k`` below ``limit``; none without ``eta``."""
    out: set[int] = set()
    if not eta:
        return out
    step = budget_step
    while step < limit:
        out.add(step)
        step *= eta
    return out


class RungRanks:
    """The values every trial reached at a step, best first, kept until the observations change."""

    def __init__(self) -> None:
        self._version: int | None = None
        self._ranked: dict[int, np.ndarray] = {}

    def at(self, observations: Observations, step: int, sign: float) -> np.ndarray:
        if self._version != observations.version:
            self._version, self._ranked = observations.version, {}
        if step not in self._ranked:
            values = [sign * c.values[step] for c in observations.trials.values()
                      if step in c.values and not c.failed]
            self._ranked[step] = np.sort(values)[::-1]
        return self._ranked[step]


def promotable(observations: Observations, trial_ids: list[str], *, rungs: set[int], eta: int | None,
               sign: float, ranks: RungRanks) -> np.ndarray:
    """Whether each trial may continue under the guard (see the module docstring); ``sign`` is 1 when
    larger values are better, -1 otherwise."""
    out = np.ones(len(trial_ids), dtype=bool)
    if not rungs or not eta:
        return out
    for i, trial_id in enumerate(trial_ids):
        curve = observations.trials[trial_id]
        step = curve.last_step
        if step not in rungs or step not in curve.values:
            continue
        values = ranks.at(observations, step, sign)
        out[i] = sign * curve.values[step] >= values[math.ceil(len(values) / eta) - 1]
    return out
