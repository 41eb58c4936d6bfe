"""``RestorableHyperBand``: Ray's synchronous HyperBand that survives ``Tuner.restore``.

Ray's ``HyperBandScheduler`` keys its brackets by ``Trial`` objects and Ray saves no scheduler
state, so a resumed search used to lose every bracket; the trials it had paused at a milestone
were then never continued. This subclass keeps bands, brackets (size, milestone, halvings left,
progress), each trial's place and last result (its time and metric only) as plain data, carried
through experiment snapshots by :meth:`state_callback` (``efficient_search.run`` passes it). On
restore the saved brackets get the restored ``Trial`` objects back by id, and a trial that was
waiting at its milestone waits again: Tune makes every unfinished trial PENDING and starts PENDING
trials without asking the scheduler. Decisions are Ray's own.

Example::

    scheduler = RestorableHyperBand(time_attr="training_iteration", max_t=9, reduction_factor=3)
    tune.Tuner(fn, tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", scheduler=scheduler),
               run_config=tune.RunConfig(callbacks=[scheduler.state_callback()]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler

from efficient_search.ray_compat import (
    bracket_all_trials,
    bracket_live_trials,
    bracket_milestone,
    bracket_progress,
    bracket_result_time,
    hyperband_bands,
    hyperband_position,
    new_hyperband_bracket,
    process_hyperband_bracket,
    scheduler_mode,
    scheduler_time_attr,
    set_bracket_all_trials,
    set_bracket_live_trials,
    set_bracket_progress,
    set_hyperband_bands,
    set_hyperband_position,
    set_stopped_count,
    stopped_count,
    trial_brackets,
)
from efficient_search.schedulers.state import Restorable, from_json_float, json_float

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

    from efficient_search.ray_compat import HyperBandBracket

STATE_VERSION = 1


class RestorableHyperBand(Restorable, HyperBandScheduler):
    """``HyperBandScheduler`` with ``get_state``/``set_state`` (see the module docstring)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._awaiting: dict[str, tuple[int, int]] = {}  # restored ids -> (band, bracket index)
        self._unsettled: list[HyperBandBracket] = []  # restored brackets to settle before the next step

    # -- restore: saved brackets get their Trial objects back -----------------------------------
    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        place = self._awaiting.pop(trial.trial_id, None)
        if place is None:
            super().on_trial_add(tune_controller, trial)
            return
        band, index = place
        bracket = hyperband_bands(self)[band][index]
        assert bracket is not None  # saved places point at made brackets
        _swap_in(bracket, trial)
        trial_brackets(self)[trial] = bracket, band
        live = bracket_live_trials(bracket)
        if trial.status in (Trial.TERMINATED, Trial.ERROR) and trial in live:
            # Ended after the saved scheduler state (a kill between Ray's state files).
            bracket.cleanup_trial(trial)
            self._unsettled.append(bracket)
        if trial.status == Trial.PENDING and trial in live:
            result = live[trial]
            reached = (result is not None
                       and bracket_result_time(bracket, result) >= bracket_milestone(bracket))
            if reached or trial in bracket.trials_to_unpause:
                # It was paused at its milestone (or pausing when the driver died): it waits
                # for its bracket again, or for choose_trial_to_run when already promoted.
                self.wait_again(trial)

    def _drop_placeholders(self) -> None:
        """Saved trials Tune did not bring back leave their brackets, as removed trials do."""
        for band, index in self._awaiting.values():
            bracket = hyperband_bands(self)[band][index]
            assert bracket is not None
            set_bracket_live_trials(bracket, {t: r for t, r in bracket_live_trials(bracket).items()
                                              if isinstance(t, Trial)})
            set_bracket_all_trials(bracket, [t for t in bracket_all_trials(bracket) if isinstance(t, Trial)])
            bracket.trials_to_unpause = {t for t in bracket.trials_to_unpause if isinstance(t, Trial)}
            self._unsettled.append(bracket)
        self._awaiting.clear()

    def _settle(self, tune_controller: TuneController) -> None:
        """After a restore, a bracket that lost trials is processed as when its last trial reaches
        the milestone (halved, or its paused trials stopped when it is finished), so that its
        paused trials do not wait for the missing ones forever."""
        self._drop_placeholders()
        unsettled, self._unsettled = self._unsettled, []
        for bracket in {id(b): b for b in unsettled}.values():
            if bracket_live_trials(bracket) and bracket.cur_iter_done():
                with _processing(bracket):
                    process_hyperband_bracket(self, tune_controller, bracket)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        """A trial that ends or fails early leaves its bracket; if the others were waiting only
        for it, the bracket is halved (or, finished, its paused trials stopped) now. Ray skipped
        both once a bracket had been halved or had reached its last milestone, and the paused
        trials waited forever."""
        bracket, _ = trial_brackets(self)[trial]
        bracket.cleanup_trial(trial)
        if not bracket.is_being_processed and bracket_live_trials(bracket) and bracket.cur_iter_done():
            with _processing(bracket):
                process_hyperband_bracket(self, tune_controller, bracket)

    def debug_string(self) -> str:
        self._drop_placeholders()
        return super().debug_string()

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        self._settle(tune_controller)
        return super().choose_trial_to_run(tune_controller)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial,
                        result: dict[str, Any]) -> str:
        self._settle(tune_controller)
        bracket, _ = trial_brackets(self)[trial]
        if trial not in bracket_live_trials(bracket):
            # Its bracket had let it go (a STOP Tune had not carried out when the driver died):
            # stop it instead of failing Ray's bookkeeping.
            return self.STOP
        with _processing(bracket):  # Ray halves the bracket here when the trial completes it
            return super().on_trial_result(tune_controller, trial, result)

    # -- state ------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Bands of brackets (None where Ray skipped a too-small one), the current bracket, the
        stop count and each trial's place: JSON-able."""
        places: dict[int, tuple[int, int]] = {}
        bands = []
        for b, band in enumerate(hyperband_bands(self)):
            bands.append([None if bracket is None else self._bracket_state(bracket) for bracket in band])
            for i, bracket in enumerate(band):
                if bracket is not None:
                    places[id(bracket)] = (b, i)
        band_idx, current = hyperband_position(self)
        trials = {_trial_id(t): list(places[id(bracket)])
                  for t, (bracket, _) in trial_brackets(self).items()}
        trials.update({t: list(p) for t, p in self._awaiting.items()})
        return {"version": STATE_VERSION, "metric": self.metric, "mode": scheduler_mode(self),
                "bands": bands, "band_idx": band_idx,
                "current": None if current is None else list(places[id(current)]),
                "num_stopped": stopped_count(self), "trials": trials}

    def _bracket_state(self, bracket: HyperBandBracket) -> dict[str, Any]:
        metric, time_attr = self.metric, scheduler_time_attr(self)
        live = [[_trial_id(t), None if r is None else
                 {time_attr: json_float(r.get(time_attr)), metric: json_float(r.get(metric))}]
                for t, r in bracket_live_trials(bracket).items()]
        return {**bracket_progress(bracket), "live": live,
                "all": [_trial_id(t) for t in bracket_all_trials(bracket)],
                "to_unpause": sorted(_trial_id(t) for t in bracket.trials_to_unpause)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.check_version(state, STATE_VERSION)
        if state["mode"] is not None:
            self.set_search_properties(state["metric"], state["mode"])
        bands = [[None if saved is None else self._restore_bracket(s, saved)
                  for s, saved in enumerate(band)] for band in state["bands"]]
        set_hyperband_bands(self, bands)
        current = None
        if state["current"] is not None:
            band, index = state["current"]
            current = bands[band][index]
        set_hyperband_position(self, int(state["band_idx"]), current)
        set_stopped_count(self, int(state["num_stopped"]))
        trial_brackets(self).clear()
        self._awaiting = {str(t): (int(p[0]), int(p[1])) for t, p in state["trials"].items()}

    def _restore_bracket(self, s: int, saved: dict[str, Any]) -> HyperBandBracket:
        bracket = new_hyperband_bracket(self, s)  # a band's s-th bracket is made with s halvings
        set_bracket_progress(bracket, {"n": int(saved["n"]), "r": int(saved["r"]),
                                       "cumul_r": saved["cumul_r"], "halves": int(saved["halves"]),
                                       "completed_progress": saved["completed_progress"]})
        set_bracket_live_trials(bracket, {t: None if r is None else
                                          {k: from_json_float(v) for k, v in r.items()}
                                          for t, r in saved["live"]})
        set_bracket_all_trials(bracket, list(saved["all"]))
        bracket.trials_to_unpause = set(saved["to_unpause"])
        return bracket



def _trial_id(trial: Trial | str) -> str:
    return trial if isinstance(trial, str) else trial.trial_id


@contextlib.contextmanager
def _processing(bracket: HyperBandBracket) -> Iterator[None]:
    """Mark ``bracket`` as being halved while Ray's halving step may run (the trials it stops
    come back through ``on_trial_remove``, which must not halve it again). Ray sets the mark for
    good at the first halving."""
    bracket.is_being_processed = True
    try:
        yield
    finally:
        bracket.is_being_processed = False


def _swap_in(bracket: HyperBandBracket, trial: Trial) -> None:
    """Put ``trial`` where its id stood in the bracket, keeping the order (ties sort by it)."""
    key = trial.trial_id
    set_bracket_live_trials(bracket, {trial if t == key else t: r
                                      for t, r in bracket_live_trials(bracket).items()})
    set_bracket_all_trials(bracket, [trial if t == key else t for t in bracket_all_trials(bracket)])
    if key in bracket.trials_to_unpause:
        bracket.trials_to_unpause.discard(key)
        bracket.trials_to_unpause.add(trial)
