"""``RestorableMedian``: Ray's median stopping rule that keeps its statistics across ``Tuner.restore``.

Ray's ``MedianStoppingRule`` keys every trial's results by ``Trial`` object and Ray saves no
scheduler state, so a resumed search judged its trials against empty statistics. This subclass
keeps each trial's (time, metric) history, whether it was stopped and when it last yielded as
plain data, carried through experiment snapshots by :meth:`state_callback` (``efficient_search.run``
passes it); restored trials get their history back by id. A trial restored from a checkpoint
older than its last result reports those steps again: they replace the recorded ones instead of
counting twice. Decisions are Ray's own.

Example::

    scheduler = RestorableMedian(time_attr="training_iteration", grace_period=1)
    tune.Tuner(fn, tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", scheduler=scheduler),
               run_config=tune.RunConfig(callbacks=[scheduler.state_callback()]))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import MedianStoppingRule

from efficient_search.ray_compat import (
    median_last_pause,
    median_results,
    median_stopped,
    scheduler_mode,
    scheduler_time_attr,
)
from efficient_search.schedulers.state import Restorable, from_json_float, json_float

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

STATE_VERSION = 1


class RestorableMedian(Restorable, MedianStoppingRule):
    """``MedianStoppingRule`` with ``get_state``/``set_state`` (see the module docstring)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._awaiting: dict[str, dict[str, Any]] = {}  # saved trial state -> until Tune adds it
        self._order: dict[str, int] = {}  # trial id -> when it was first added
        self._yielded: set[str] = set()  # trials paused to let waiting ones run, not resumed yet

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        self._order.setdefault(trial.trial_id, len(self._order))
        if trial.status == Trial.PENDING and trial.trial_id in self._yielded:
            # Tune makes every unfinished trial PENDING on restore and starts those unasked; a
            # trial that had yielded its slot waits its turn again.
            self.wait_again(trial)
        saved = self._awaiting.pop(trial.trial_id, None)
        if saved is None:
            return
        if saved["results"]:
            time_attr, metric = scheduler_time_attr(self), self.metric
            median_results(self)[trial] = [{time_attr: from_json_float(t), metric: from_json_float(v)}
                                           for t, v in saved["results"]]
        if saved["stopped"]:
            median_stopped(self).add(trial)
        if saved["last_pause"] is not None:
            median_last_pause(self)[trial] = float(saved["last_pause"])

    def on_trial_result(self, tune_controller: TuneController, trial: Trial,
                        result: dict[str, Any]) -> str:
        time_attr, results = scheduler_time_attr(self), median_results(self)
        time = result.get(time_attr)
        if (time is not None and self.metric in result and trial in results
                and trial not in median_stopped(self)):
            # Restarted from an older checkpoint: this step and later ones are reported again.
            results[trial] = [r for r in results[trial] if r[time_attr] < time]
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == self.PAUSE:
            self._yielded.add(trial.trial_id)
        else:
            self._yielded.discard(trial.trial_id)
        return decision

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        """Ray's FIFO choice (pending first, then paused), in the order trials were first added:
        Tune lists restored trials newest first."""
        order = sorted(tune_controller.get_trials(),
                       key=lambda t: self._order.get(t.trial_id, len(self._order)))
        for status in (Trial.PENDING, Trial.PAUSED):
            for trial in order:
                if trial.status == status:
                    return trial
        return None

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial,
                          result: dict[str, Any]) -> None:
        # Ray records any final result; one without time or metric (a trial ended before its first
        # report) would break every later median.
        self._yielded.discard(trial.trial_id)
        if scheduler_time_attr(self) in result and self.metric in result:
            super().on_trial_complete(tune_controller, trial, result)

    # -- state ------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Each trial's (time, metric) results, whether it was stopped, its last yield: JSON-able."""
        time_attr, metric = scheduler_time_attr(self), self.metric
        stopped, last_pause = median_stopped(self), median_last_pause(self)
        trials = {
            trial.trial_id: {
                "results": [[json_float(r[time_attr]), json_float(r[metric])]
                            for r in results if time_attr in r and metric in r],
                "stopped": trial in stopped,
                "last_pause": _finite_or_none(last_pause.get(trial)),
            }
            for trial, results in median_results(self).items()
        }
        for trial in stopped - set(median_results(self)):
            trials[trial.trial_id] = {"results": [], "stopped": True, "last_pause": None}
        return {"version": STATE_VERSION, "metric": metric, "mode": scheduler_mode(self),
                "trials": {**self._awaiting, **trials}, "order": list(self._order),
                "yielded": sorted(self._yielded)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.check_version(state, STATE_VERSION)
        if state["mode"] is not None:
            self.set_search_properties(state["metric"], state["mode"])
        median_results(self).clear()
        median_stopped(self).clear()
        median_last_pause(self).clear()
        self._awaiting = {str(t): dict(saved) for t, saved in state["trials"].items()}
        self._order = {str(t): i for i, t in enumerate(state["order"])}
        self._yielded = {str(t) for t in state["yielded"]}



def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
