"""Restore edge cases of the schedulers that wrap Ray's (the contract suite covers the plain path)."""

from __future__ import annotations

import json
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from efficient_search.ray_compat import (
    bracket_live_trials,
    bracket_milestone,
    bracket_progress,
    hyperband_bands,
    median_results,
    trial_brackets,
)
from efficient_search.schedulers import RestorableHyperBand, RestorableMedian
from efficient_search.testing.schedulers import (
    MAX_EPOCHS,
    METRIC,
    TIME_ATTR,
    Simulation,
    grid,
    learning_curve,
)


def hyperband() -> RestorableHyperBand:
    return RestorableHyperBand(time_attr=TIME_ATTR, max_t=MAX_EPOCHS, reduction_factor=2,
                               metric=METRIC, mode="max")


def paused_simulation(steps: int) -> Simulation:
    sim = Simulation(hyperband(), grid(9), learning_curve)
    for _ in range(steps):
        sim.step()
    return sim


def restored(sim: Simulation, drop: frozenset[str] = frozenset()) -> RestorableHyperBand:
    fresh = hyperband()
    fresh.set_state(json.loads(json.dumps(sim.scheduler.get_state())))  # type: ignore[attr-defined]
    sim.controller.trials = [t for t in sim.controller.trials if t.trial_id not in drop]
    sim.restore(fresh)
    return fresh


def test_hyperband_restores_at_every_point_like_an_uninterrupted_run() -> None:
    straight = Simulation(hyperband(), grid(9), learning_curve).run()
    for steps in range(1, 14):
        sim = paused_simulation(steps)
        restored(sim)
        sim.run()
        assert sim.log == straight.log, steps
        assert sim.statuses() == straight.statuses(), steps


def test_hyperband_goes_on_when_tune_does_not_bring_a_saved_trial_back() -> None:
    sim = paused_simulation(6)
    paused = [t.trial_id for t in sim.controller.trials if t.status == Trial.PAUSED]
    waiting = [t.trial_id for t in sim.controller.trials if t.status == Trial.PENDING]
    assert paused and waiting
    restored(sim, drop=frozenset(waiting))  # the bracket would wait for them forever
    sim.run()  # the simulator raises Deadlock if paused trials are left waiting
    assert set(sim.statuses().values()) == {Trial.TERMINATED}


def test_hyperband_stops_a_restored_trial_its_bracket_had_let_go() -> None:
    sim = paused_simulation(6)
    scheduler = restored(sim)
    trial = next(t for t in sim.controller.trials if t.status == Trial.PAUSED)
    bracket, _ = trial_brackets(scheduler)[trial]
    bracket.cleanup_trial(trial)  # as after a STOP Tune had not carried out
    result = {METRIC: 0.5, TIME_ATTR: 1, "training_iteration": 1}
    assert scheduler.on_trial_result(sim.controller, trial, result) == TrialScheduler.STOP  # type: ignore[arg-type]


def median() -> RestorableMedian:
    return RestorableMedian(time_attr=TIME_ATTR, grace_period=1, min_samples_required=2,
                            metric=METRIC, mode="max")


def report(scheduler: RestorableMedian, controller: Any, trial: Trial, epoch: int,
           value: float) -> str:
    return scheduler.on_trial_result(controller, trial, {METRIC: value, TIME_ATTR: epoch})


def test_median_counts_steps_reported_again_after_a_restore_once() -> None:
    sim = Simulation(median(), grid(3), learning_curve)
    scheduler, controller = sim.scheduler, sim.controller
    first, second, _ = controller.trials
    for trial, values in ((first, [0.9, 0.9, 0.9]), (second, [0.1, 0.1, 0.1])):
        trial.set_status(Trial.RUNNING)
        for epoch, value in enumerate(values, start=1):
            report(scheduler, controller, trial, epoch, value)  # type: ignore[arg-type]
    saved = json.loads(json.dumps(scheduler.get_state()))  # type: ignore[attr-defined]
    fresh = median()
    fresh.set_state(saved)
    sim.restore(fresh)
    first = next(t for t in controller.trials if t.trial_id == first.trial_id)
    # Restored from its epoch-1 checkpoint, `first` reports epochs 2 and 3 again, lower this time.
    report(fresh, controller, first, 2, 0.2)
    report(fresh, controller, first, 3, 0.2)
    assert [r[METRIC] for r in median_results(fresh)[first]] == [0.9, 0.2, 0.2]
    assert json.loads(json.dumps(fresh.get_state()))["trials"][first.trial_id]["results"] == [
        [1.0, 0.9], [2.0, 0.2], [3.0, 0.2]]


def test_a_trial_failing_after_a_halving_does_not_strand_its_bracket() -> None:
    """Ray's HyperBand deadlocked here (its bracket stayed marked as being processed, or was
    finished without stopping its paused trials): the simulator raises Deadlock."""
    failed = 0
    for steps in range(1, 20):
        sim = paused_simulation(steps)
        # A band's s-th bracket starts with s halvings left.
        halved = [b for band in hyperband_bands(sim.scheduler) for s, b in enumerate(band)  # type: ignore[arg-type]
                  if b is not None and bracket_progress(b)["halves"] != s]
        waiting = [t for b in halved for t, r in bracket_live_trials(b).items()
                   if t.status in (Trial.PENDING, Trial.PAUSED)
                   and (r is None or r[TIME_ATTR] < bracket_milestone(b))]
        if not waiting:
            continue
        sim.scheduler.on_trial_error(sim.controller, waiting[0])
        waiting[0].set_status(Trial.ERROR)
        sim.run()
        assert set(sim.statuses().values()) <= {Trial.TERMINATED, Trial.ERROR}
        failed += 1
    assert failed >= 2
