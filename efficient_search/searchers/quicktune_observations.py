"""What a Quick-Tune search has seen of its own trials: learning curves and step costs (no Ray).

One :class:`TrialCurve` per trial holds the hyperparameters as the surrogate sees them, the metric
after each budget step (signed so that larger is better for the surrogate) and the seconds each step
took. Everything is plain data, so the searcher and the scheduler can save it as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from efficient_search.fidelity import FIDELITY_KEYS


def flat_features(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested Tune config as flat ``a.b`` hyperparameters, fidelity keys left out, values JSON-able."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if not prefix and key in FIDELITY_KEYS:
            continue
        if isinstance(value, Mapping):
            out.update(flat_features(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif isinstance(value, np.generic):
            out[name] = value.item()
        else:
            out[name] = str(value)
    return out


@dataclass
class TrialCurve:
    """One trial's hyperparameters, signed metric per budget step and per-step seconds."""

    features: dict[str, Any]
    values: dict[int, float] = field(default_factory=dict)
    costs: dict[int, float] = field(default_factory=dict)
    last_cumulative: float | None = None
    failed: bool = False

    @property
    def last_step(self) -> int:
        return max(self.values, default=0)

    def to_state(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "values": [[s, v] for s, v in sorted(self.values.items())],
            "costs": [[s, c] for s, c in sorted(self.costs.items())],
            "last_cumulative": self.last_cumulative,
            "failed": self.failed,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TrialCurve:
        return cls(
            dict(state["features"]),
            {int(s): float(v) for s, v in state["values"]},
            {int(s): float(c) for s, c in state["costs"]},
            None if state["last_cumulative"] is None else float(state["last_cumulative"]),
            bool(state["failed"]),
        )


class Observations:
    """Curves of every trial in the order they were registered; ``version`` counts changes.

    The count of values and the best value per step are kept as values arrive, so reading them costs
    the same after ten thousand trials as after ten.
    """

    def __init__(self) -> None:
        self.trials: dict[str, TrialCurve] = {}
        self.version = 0
        self.spent_s = 0.0
        self._points = 0
        self._best: dict[int, tuple[float, float]] = {}  # step -> (largest, smallest) value seen

    def register(self, trial_id: str, features: dict[str, Any]) -> None:
        """Known trials keep their first registration (the searcher's view wins over Tune's config)."""
        if trial_id not in self.trials:
            self.trials[trial_id] = TrialCurve(features)

    def observe(
        self,
        trial_id: str,
        step: int,
        value: float,
        *,
        seconds: float | None = None,
        cumulative: float | None = None,
    ) -> float:
        """Record the signed ``value`` after budget ``step``; returns the step's seconds (0 if known).

        ``cumulative`` seconds are turned into the step's own by difference with the last one seen.
        A NaN or infinite value marks the trial failed; a step seen before changes nothing.
        """
        curve = self.trials[trial_id]
        if step in curve.values or step in curve.costs:
            return 0.0
        step_cost = seconds
        if cumulative is not None and math.isfinite(cumulative):
            before = curve.last_cumulative if curve.last_cumulative is not None else 0.0
            step_cost = max(cumulative - before, 0.0)
            curve.last_cumulative = cumulative
        if not math.isfinite(value):
            curve.failed = True
        else:
            self._add_value(curve, step, float(value))
        if step_cost is not None and math.isfinite(step_cost):
            curve.costs[step] = float(step_cost)
            self.spent_s += float(step_cost)
        self.version += 1
        return float(step_cost or 0.0)

    def _add_value(self, curve: TrialCurve, step: int, value: float) -> None:
        curve.values[step] = value
        self._points += 1
        high, low = self._best.get(step, (value, value))
        self._best[step] = (max(high, value), min(low, value))

    def best_per_step(self, steps: int, mode: str = "max") -> np.ndarray:
        """The best value any trial reached at each step ``1..steps`` (``(steps,)``, NaN where none):
        the largest for ``mode="max"``, the smallest for ``"min"``."""
        side = 0 if mode == "max" else 1
        out = np.full(steps, np.nan)
        for step, pair in self._best.items():
            if 1 <= step <= steps:
                out[step - 1] = pair[side]
        return out

    def mark_failed(self, trial_id: str) -> None:
        if trial_id in self.trials and not self.trials[trial_id].failed:
            self.trials[trial_id].failed = True
            self.version += 1

    def usable(self, marks: Mapping[str, int] | None = None) -> list[str]:
        """Trials with at least one value (up to their mark, when ``marks`` are given)."""
        if marks is None:
            return [t for t, c in self.trials.items() if c.values]
        return [
            t
            for t, last in marks.items()
            if t in self.trials and any(s <= last for s in self.trials[t].values)
        ]

    def arrays(
        self, trial_ids: list[str], steps: int, marks: Mapping[str, int] | None = None
    ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
        """Features, ``(N, steps)`` values and per-step costs (NaN unobserved), column ``j`` = step
        ``j + 1``; steps past a trial's mark (or past ``steps``) are left out."""
        values = np.full((len(trial_ids), steps), np.nan)
        costs = np.full_like(values, np.nan)
        for i, trial_id in enumerate(trial_ids):
            curve = self.trials[trial_id]
            last = steps if marks is None else min(steps, marks[trial_id])
            for s, v in curve.values.items():
                if 1 <= s <= last:
                    values[i, s - 1] = v
            for s, c in curve.costs.items():
                if 1 <= s <= last:
                    costs[i, s - 1] = c
        return [self.trials[t].features for t in trial_ids], values, costs

    @property
    def points(self) -> int:
        """Values observed over all trials."""
        return self._points

    def to_state(self) -> dict[str, Any]:
        return {
            "trials": [[t, c.to_state()] for t, c in self.trials.items()],
            "version": self.version,
            "spent_s": self.spent_s,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        trials = {str(t): TrialCurve.from_state(c) for t, c in state["trials"]}
        self.trials, self._points, self._best = {}, 0, {}
        for trial_id, curve in trials.items():
            values, curve.values = curve.values, {}
            for step, value in values.items():
                self._add_value(curve, step, value)
            self.trials[trial_id] = curve
        self.version = int(state["version"])
        self.spent_s = float(state["spent_s"])
