"""Scheduler state through ``Tuner.restore``: Ray saves searchers and callbacks, not schedulers."""

from __future__ import annotations

import math
from typing import Any, Protocol

from ray.tune import Callback


class HasState(Protocol):
    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


class SchedulerStateCallback(Callback):
    """Carries a scheduler's plain-data ``get_state``/``set_state`` through Tune's experiment
    snapshots (pass it in ``RunConfig(callbacks=...)``; ``efficient_search.run`` does)."""

    def __init__(self, scheduler: HasState):
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        return self.scheduler.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.set_state(state)


def json_float(value: float | None) -> float | str | None:
    """A score as strict JSON: NaN and infinities as text ("nan", "inf", "-inf")."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else str(value)


def from_json_float(value: float | str | None) -> float | None:
    """The float :func:`json_float` wrote."""
    return None if value is None else float(value)
