"""Scheduler state through ``Tuner.restore``: Ray saves searchers and callbacks, not schedulers."""

from __future__ import annotations

import math
from typing import Any, Protocol

from ray.tune import Callback
from ray.tune.experiment import Trial


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


class Restorable:
    """Mixin of our schedulers with plain-data ``get_state``/``set_state``: the callback that
    carries that state through ``Tuner.restore``, and the checks and moves of a restore."""

    def state_callback(self: HasState) -> Callback:
        """A Tune callback that saves this scheduler's state with every experiment snapshot."""
        return SchedulerStateCallback(self)

    @staticmethod
    def check_version(state: dict[str, Any], expected: int) -> None:
        """Refuse saved state of another format version."""
        if state.get("version") != expected:
            raise ValueError(f"Saved scheduler state version {state.get('version')!r} is not "
                             f"{expected}. Fix: resume with the efficient-search version that wrote it.")

    @staticmethod
    def wait_again(trial: Trial) -> None:
        """Keep a restored trial waiting for the scheduler. ``Tuner.restore`` makes every unfinished
        trial PENDING and Tune starts PENDING trials without asking; called from ``on_trial_add``,
        this is enough, since ``add_trial`` files the trial under its status after that hook."""
        trial.set_status(Trial.PAUSED)
