"""The scheduler contract suite (DESIGN.md) and the simulator it runs schedulers in.

Run it over any ``TrialScheduler`` factory::

    from efficient_search.testing.schedulers import SchedulerContract

    class TestMine(SchedulerContract):
        @staticmethod
        def make(mode: str) -> TrialScheduler: ...

The simulator drives a scheduler the way Ray Tune's controller does, one trial at a time, through
a controller that exposes exactly the attributes Ray lets schedulers use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

METRIC = "score"
TIME_ATTR = "fidelity/epoch"
MAX_EPOCHS = 8


class WhitelistedController:
    """The controller surface Ray hands schedulers (``TuneController._wrapped``), nothing more."""

    search_alg = None

    def __init__(self) -> None:
        self.trials: list[Trial] = []
        self.scheduler: TrialScheduler | None = None

    def get_trials(self) -> list[Trial]:
        return list(self.trials)

    def get_live_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]

    def _set_trial_status(self, trial: Trial, status: str) -> None:
        trial.set_status(status)

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        trial.set_status(Trial.PAUSED)

    def stop_trial(self, trial: Trial) -> None:
        # As Tune's controller: pending or paused trials are removed, running ones completed.
        assert self.scheduler is not None
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)  # type: ignore[arg-type]
        elif trial.status == Trial.RUNNING:
            self.scheduler.on_trial_complete(self, trial,  # type: ignore[arg-type]
                                             trial.last_result or {})
        if trial.status != Trial.ERROR:
            trial.set_status(Trial.TERMINATED)

    def _schedule_trial_save(self, trial: Trial, result: dict | None = None) -> None:
        return None


class Deadlock(AssertionError):
    """Paused trials remain, nothing runs or waits, and the scheduler picks nothing."""


@dataclass
class Simulation:
    """A whole experiment driven through a scheduler, one trial at a time."""

    scheduler: TrialScheduler
    configs: list[dict[str, Any]]
    score: Callable[[dict[str, Any], int], float]
    controller: Any = field(default_factory=WhitelistedController)  # stands in for TuneController
    log: list[tuple[str, int, str]] = field(default_factory=list)
    progress: dict[str, int] = field(default_factory=dict)
    epochs_trained: int = 0
    last_result: dict[str, int] = field(default_factory=dict)  # trial id -> result count then
    resumable: set[str] = field(default_factory=set)  # restored PENDING trials with a checkpoint

    def __post_init__(self) -> None:
        self.controller.scheduler = self.scheduler
        for i, config in enumerate(self.configs):
            trial = Trial("simulated", config=dict(config), trial_id=f"t{i:03d}", stub=True)
            self.controller.trials.append(trial)
            self.scheduler.on_trial_add(self.controller, trial)

    def trial(self, trial_id: str) -> Trial:
        return next(t for t in self.controller.trials if t.trial_id == trial_id)

    def step(self) -> bool:
        """Run the next trial the scheduler picks until it pauses or stops; False when done."""
        trial = self.scheduler.choose_trial_to_run(self.controller)
        again = self.scheduler.choose_trial_to_run(self.controller)
        assert again is trial, "choose_trial_to_run must be idempotent"
        if trial is None:
            statuses = {t.status for t in self.controller.trials}
            if Trial.PAUSED in statuses and not statuses & {Trial.RUNNING, Trial.PENDING}:
                raise Deadlock(f"paused trials wait forever: {self.statuses()}")
            return False
        assert trial.status in (Trial.PENDING, Trial.PAUSED), trial.status
        restart = (trial.status == Trial.PENDING and trial.trial_id not in self.resumable) or bool(
            trial.config.get("fidelity_restart"))
        self.resumable.discard(trial.trial_id)
        epoch = 0 if restart else self.progress.get(trial.trial_id, 0)
        trial.set_status(Trial.RUNNING)
        target = int(trial.config.get("epochs", MAX_EPOCHS))
        if epoch >= target:
            # The trainable has nothing left to do and returns: Tune replays its last result
            # with done=True, then completes the trial.
            result = {METRIC: self.score(trial.config, epoch), TIME_ATTR: epoch,
                      "training_iteration": epoch, "done": True}
            self.log.append((trial.trial_id, epoch,
                             self.scheduler.on_trial_result(self.controller, trial, result)))
            trial.set_status(Trial.TERMINATED)
            self.scheduler.on_trial_complete(self.controller, trial, result)
            return True
        while True:
            epoch += 1
            self.epochs_trained += 1
            result = {METRIC: self.score(trial.config, epoch), TIME_ATTR: epoch,
                      "training_iteration": epoch}
            decision = self.scheduler.on_trial_result(self.controller, trial, result)
            self.log.append((trial.trial_id, epoch, decision))
            self.last_result[trial.trial_id] = len(self.log)
            if decision == TrialScheduler.PAUSE or trial.status == Trial.PAUSED:
                # Tune saves a trial before pausing it, and asks the scheduler for the next
                # trial meanwhile: the pausing trial is still RUNNING then.
                if trial.status == Trial.RUNNING:
                    self.scheduler.choose_trial_to_run(self.controller)
                trial.set_status(Trial.PAUSED)
                self.progress[trial.trial_id] = epoch
                return True
            if decision == TrialScheduler.STOP or epoch >= target:
                trial.set_status(Trial.TERMINATED)
                self.scheduler.on_trial_complete(self.controller, trial, result)
                return True
            if trial.status == Trial.TERMINATED:  # stopped through the controller
                return True

    def restore(self, scheduler: TrialScheduler) -> None:
        """Go on with ``scheduler`` (its saved state set) as after ``Tuner.restore``: new Trial
        objects with the same ids and configs, added newest result first; every unfinished trial
        PENDING, and resumed from its last epoch (its checkpoint) when it runs again."""
        restored = []
        for old in sorted(self.controller.trials, key=lambda t: -self.last_result.get(t.trial_id, 0)):
            trial = Trial("simulated", config=dict(old.config), trial_id=old.trial_id, stub=True)
            if old.status in (Trial.TERMINATED, Trial.ERROR):
                trial.set_status(old.status)
            elif old.trial_id in self.progress:
                self.resumable.add(old.trial_id)
            restored.append(trial)
        self.scheduler = self.controller.scheduler = scheduler
        self.controller.trials = restored
        for trial in restored:
            scheduler.on_trial_add(self.controller, trial)

    def run(self, max_steps: int = 10_000) -> Simulation:
        for _ in range(max_steps):
            if not self.step():
                return self
        raise Deadlock(f"no end after {max_steps} steps: {self.statuses()}")

    def statuses(self) -> dict[str, str]:
        return {t.trial_id: t.status for t in self.controller.trials}


def grid(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{"x": float(x)} for x in rng.uniform(0, 1, size=n)]


def learning_curve(config: dict[str, Any], epoch: int) -> float:
    """Higher x learns faster and ends higher; every curve rises with epochs."""
    return config["x"] * (1 - math.exp(-epoch / 3))


class SchedulerContract:
    """Subclass and define ``make(mode)`` returning a fresh scheduler with metric ``score``."""

    restores_state = False  # set True when the scheduler implements get_state/set_state

    @staticmethod
    def make(mode: str) -> TrialScheduler:
        raise NotImplementedError

    def simulate(self, mode: str = "max", n: int = 9, sign: float = 1.0,
                 score: Callable[[dict[str, Any], int], float] | None = None) -> Simulation:
        curve = score or learning_curve
        return Simulation(self.make(mode), grid(n), lambda c, e: sign * curve(c, e)).run()

    def test_runs_to_the_end_without_deadlock(self) -> None:
        sim = self.simulate()
        assert set(sim.statuses().values()) == {Trial.TERMINATED}

    def test_choose_returns_only_pending_or_paused_and_is_idempotent(self) -> None:
        self.simulate()  # the simulator asserts both at every step

    def test_min_and_max_modes_mirror_each_other(self) -> None:
        as_max = self.simulate("max").log
        as_min = self.simulate("min", sign=-1.0).log
        assert as_max == as_min

    def test_nan_results_are_skipped(self) -> None:
        def score(config: dict[str, Any], epoch: int) -> float:
            return math.nan if config["x"] > 0.8 else learning_curve(config, epoch)

        sim = self.simulate(score=score)
        assert set(sim.statuses().values()) == {Trial.TERMINATED}
        finite = [c for c in sim.configs if c["x"] <= 0.8]
        best_finite = max(finite, key=lambda c: c["x"])
        best_id = f"t{sim.configs.index(best_finite):03d}"
        assert max(e for t, e, _ in sim.log if t == best_id) == max(e for _, e, _ in sim.log)

    def test_error_complete_and_remove_on_pending_and_paused_trials(self) -> None:
        sim = Simulation(self.make("max"), grid(9), learning_curve)
        pending = [t for t in sim.controller.trials if t.status == Trial.PENDING]
        sim.scheduler.on_trial_error(sim.controller, pending[-1])
        pending[-1].set_status(Trial.ERROR)
        sim.scheduler.on_trial_remove(sim.controller, pending[-2])
        pending[-2].set_status(Trial.TERMINATED)
        sim.scheduler.on_trial_complete(sim.controller, pending[-3], {})
        pending[-3].set_status(Trial.TERMINATED)
        for _ in range(50):
            if any(t.status == Trial.PAUSED for t in sim.controller.trials) or not sim.step():
                break
        paused = [t for t in sim.controller.trials if t.status == Trial.PAUSED]
        if paused:  # not every scheduler pauses (ASHA stops instead)
            sim.scheduler.on_trial_error(sim.controller, paused[0])
            paused[0].set_status(Trial.ERROR)
        sim.run()
        assert Trial.PAUSED not in sim.statuses().values()
        for trial in pending[-3:]:
            assert all(t != trial.trial_id for t, _, _ in sim.log)

    def test_state_is_plain_data_and_survives_a_restore(self) -> None:
        if not self.restores_state:
            import pytest  # a dev dependency: imported where a contract test runs

            pytest.skip("this scheduler does not promise to survive Tuner.restore")
        straight = self.simulate()
        sim = Simulation(self.make("max"), grid(9), learning_curve)
        for _ in range(6):
            sim.step()
        state = json.loads(json.dumps(sim.scheduler.get_state()))  # type: ignore[attr-defined]
        fresh = self.make("max")
        fresh.set_state(state)  # type: ignore[attr-defined]
        sim.restore(fresh)
        sim.run()
        assert sim.log == straight.log
        assert sim.statuses() == straight.statuses()
