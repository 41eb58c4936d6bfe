"""``RestorableASHA``: Ray's asynchronous successive halving, seeded and restorable.

Ray's ``AsyncHyperBandScheduler`` draws each trial's bracket from NumPy's global random state and
loses its rungs on ``Tuner.restore`` (Ray saves searchers, not schedulers). This subclass draws
brackets from its own seeded generator and keeps rungs, bracket assignments and generator state
as plain data, carried through experiment snapshots by :meth:`state_callback`
(``efficient_search.run`` passes it), so a resumed search stops the trials an uninterrupted one
would. Decisions are Ray's own.

Example::

    scheduler = RestorableASHA(seed=0, max_t=8, grace_period=1, reduction_factor=2)
    tune.Tuner(fn, tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", scheduler=scheduler),
               run_config=tune.RunConfig(callbacks=[scheduler.state_callback()]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler

from efficient_search.ray_compat import (
    asha_brackets,
    asha_rungs,
    has_objective,
    scheduler_mode,
    set_asha_rungs,
    set_stopped_count,
    stopped_count,
    trial_brackets,
)
from efficient_search.schedulers.state import Restorable, from_json_float, json_float

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

STATE_VERSION = 1


class RestorableASHA(Restorable, AsyncHyperBandScheduler):
    """``AsyncHyperBandScheduler`` with a seeded bracket draw and ``get_state``/``set_state``."""

    def __init__(self, *, seed: int = 0, **options: Any):
        super().__init__(**options)
        self._rng = np.random.default_rng(seed)

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        if not has_objective(self):
            super().on_trial_add(tune_controller, trial)  # Ray's error for a missing metric/mode
        assigned = trial_brackets(self)
        if trial.trial_id in assigned:  # a restored trial keeps its bracket
            return
        brackets = asha_brackets(self)
        sizes = np.array([len(asha_rungs(b)) for b in brackets])
        weights = np.exp(sizes - sizes.max())
        index = int(self._rng.choice(len(brackets), p=weights / weights.sum()))
        assigned[trial.trial_id] = brackets[index]

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        trial_brackets(self).pop(trial.trial_id, None)

    # -- state ----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Rungs (milestone, {trial_id: signed score}) per bracket, bracket of each live trial,
        stop count and the generator state: JSON-able."""
        own = asha_brackets(self)
        brackets = [[[milestone, {t: json_float(v) for t, v in recorded.items()}]
                     for milestone, recorded in asha_rungs(bracket)] for bracket in own]
        assigned = {t: own.index(b) for t, b in trial_brackets(self).items()}
        return {"version": STATE_VERSION, "metric": self.metric, "mode": scheduler_mode(self),
                "brackets": brackets, "trials": assigned, "num_stopped": stopped_count(self),
                "rng": self._rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.check_version(state, STATE_VERSION)
        own = asha_brackets(self)
        if len(state["brackets"]) != len(own):
            raise ValueError(f"The saved state has {len(state['brackets'])} brackets, this scheduler "
                             f"{len(own)}. Fix: restore with the options it ran with.")
        if state["mode"] is not None:
            self.set_search_properties(state["metric"], state["mode"])
        for bracket, rungs in zip(own, state["brackets"], strict=True):
            set_asha_rungs(bracket, [(milestone, {str(t): from_json_float(v) for t, v in recorded.items()})
                                     for milestone, recorded in rungs])
        assigned = trial_brackets(self)
        assigned.clear()
        assigned.update({str(t): own[int(i)] for t, i in state["trials"].items()})
        set_stopped_count(self, int(state["num_stopped"]))
        self._rng.bit_generator.state = state["rng"]


