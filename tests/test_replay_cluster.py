"""The simulated cluster behind the replays: N workers, start-up latency, stragglers and preemptions,
checked against hand-computed timelines; then N-worker searches through the Ray objects and a
stepwise method (results interleave, never more than N trials train, every step reported once)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler
from test_replay_blackbox import ToyBox, steps_of
from test_replay_stepwise import Scripted

from efficient_search.schedulers import FreezeThawScheduler, RestorableASHA
from efficient_search.searchers import OptunaSearcher, QuickTuneSearcher
from efficient_search.testing.replay import ReplayOutcome, ReplaySimulation
from efficient_search.testing.replay_blackbox import BlackboxReplay
from efficient_search.testing.replay_cluster import ClusterModel, SimulatedCluster
from efficient_search.testing.replay_stepwise import StepwiseReplay

STEP = 100.0 / 9  # a ToyBox epoch


class ScriptedLosses(SimulatedCluster):
    """A cluster whose workers are lost at scripted times into each segment (inf: not lost)."""

    def __init__(self, model: ClusterModel, losses: list[float]):
        super().__init__(model)
        self._losses: Iterator[float] = iter(losses)

    def _loss_after(self) -> float:
        return next(self._losses, float("inf"))


def test_steps_end_in_time_order_across_workers() -> None:
    cluster = SimulatedCluster(ClusterModel(workers=2))
    cluster.begin("a")
    cluster.step("a", 5.0)
    cluster.begin("b")
    cluster.step("b", 3.0)
    assert cluster.free == 0
    with pytest.raises(RuntimeError, match="no free worker"):
        cluster.begin("c")
    assert cluster.pop() == ("b", 3.0) and cluster.clock == 3.0
    cluster.step("b", 4.0)
    assert cluster.pop() == ("a", 5.0) and cluster.clock == 5.0
    cluster.end("a")
    assert cluster.free == 1 and cluster.pop() == ("b", 4.0) and cluster.clock == 7.0
    stats = cluster.close(7.0)
    assert stats.busy_s == pytest.approx(12.0) and stats.utilisation == pytest.approx(12.0 / 14.0)


def test_start_up_is_paid_at_each_start_and_a_dropped_step_never_ends() -> None:
    cluster = SimulatedCluster(ClusterModel(workers=1, startup_s=2.0))
    cluster.begin("a")
    cluster.step("a", 5.0)
    assert cluster.pop() == ("a", 5.0) and cluster.clock == 7.0  # start-up delays, is not charged
    cluster.step("a", 5.0)
    assert cluster.pop() == ("a", 5.0) and cluster.clock == 12.0
    cluster.end("a")
    cluster.begin("a")  # resumed: start-up again
    cluster.step("a", 1.0)
    assert cluster.pop() == ("a", 1.0) and cluster.clock == 15.0
    cluster.step("a", 1.0)
    cluster.end("a")  # stopped with a step in flight
    assert cluster.pop() is None and cluster.clock == 15.0
    stats = cluster.close(15.0)
    assert (stats.busy_s, stats.startup_s) == pytest.approx((11.0, 4.0))


def test_a_preempted_step_resumes_from_the_last_checkpoint() -> None:
    """Start-up 1 s, recovery 2 s; the first segment (1 + 10 s) is lost 4 s in: 3 s of training lost,
    the step runs again after 3 s of recovery and start-up, ends at 4 + 3 + 10 = 17; the next at 27."""
    cluster = ScriptedLosses(ClusterModel(workers=1, startup_s=1.0, recovery_s=2.0), [4.0])
    cluster.begin("a")
    cluster.step("a", 10.0)
    assert cluster.pop() == ("a", 10.0) and cluster.clock == 17.0
    cluster.step("a", 10.0)
    assert cluster.pop() == ("a", 10.0) and cluster.clock == 27.0
    stats = cluster.close(27.0)
    assert stats.preemptions == 1
    assert (stats.busy_s, stats.lost_s, stats.startup_s) == pytest.approx((23.0, 3.0, 4.0))


def test_without_checkpoints_a_preempted_run_starts_again() -> None:
    """The second step (from 11 s) is lost 5 s in: its 5 s and the finished first step's 10 s are lost;
    after 3 s of recovery and start-up both steps run again (20 s): the step ends at 16 + 23 = 39."""
    model = ClusterModel(workers=1, startup_s=1.0, recovery_s=2.0, checkpoints=False)
    cluster = ScriptedLosses(model, [float("inf"), 5.0])
    cluster.begin("a")
    cluster.step("a", 10.0)
    assert cluster.pop() == ("a", 10.0) and cluster.clock == 11.0
    cluster.step("a", 10.0)
    assert cluster.pop() == ("a", 10.0) and cluster.clock == 39.0
    stats = cluster.close(39.0)
    assert (stats.busy_s, stats.lost_s, stats.startup_s) == pytest.approx((35.0, 15.0, 4.0))


def test_stragglers_slow_steps_and_their_charge_says_so() -> None:
    cluster = SimulatedCluster(ClusterModel(straggler_p=1.0, straggler_slowdown=4.0))
    cluster.begin("a")
    cluster.step("a", 10.0)
    assert cluster.pop() == ("a", 40.0) and cluster.clock == 40.0
    jittered = SimulatedCluster(ClusterModel(jitter=0.5, seed=3))
    jittered.begin("a")
    charges = []
    for _ in range(2000):
        jittered.step("a", 1.0)
        charges.append(jittered.pop()[1])  # type: ignore[index]
    assert abs(np.mean(np.log(charges))) < 0.05 and np.std(np.log(charges)) == pytest.approx(0.5, rel=0.1)


@pytest.mark.parametrize(("field", "value"), [("workers", 0), ("workers", 2.5), ("startup_s", -1.0),
                                               ("straggler_p", 1.5), ("straggler_slowdown", 0.5),
                                               ("preemptions_per_hour", float("nan"))])
def test_bad_cluster_models_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"`{field}`"):
        ClusterModel(**{field: value})


# -- searches on N workers ------------------------------------------------------------------------------

def running_at_once(outcome: ReplayOutcome) -> int:
    """The most trials whose first and last reported steps overlap in time (each step lasts its charge)."""
    spans: dict[str, list[float]] = {}
    for step in outcome.log:
        span = spans.setdefault(step.trial_id, [step.clock - step.charge, step.clock])
        span[1] = step.clock
    edges = sorted([(a, 1) for a, _ in spans.values()] + [(b, -1) for _, b in spans.values()],
                   key=lambda e: (e[0] + (1e-9 if e[1] > 0 else 0.0)))
    level, most = 0, 0
    for _, change in edges:
        level += change
        most = max(most, level)
    return most


def test_fifo_on_two_workers_runs_two_trials_side_by_side() -> None:
    """Hand-checked: trials of 9 steps of 100/9 s, two at a time: pairs finish at 100, 200, 300 s; the
    seventh and eighth are 4 steps in at 344 s, and the seventh's fifth step (355.6 s) crosses 350 s."""
    source = BlackboxReplay(ToyBox(continuable=True), "a")
    searcher = OptunaSearcher(source.space(), metric="score", mode="max", sampler="random", seed=0)
    sim = ReplaySimulation(source, searcher, FIFOScheduler(), budget_s=350.0, cluster=ClusterModel(workers=2))
    outcome = sim.run()
    assert outcome.trials == 8 and outcome.epochs == 3 * 18 + 4 + 4 + 1
    assert sim.clock == pytest.approx(32 * STEP)
    assert outcome.times == sorted(outcome.times)
    first, second = outcome.log[0], outcome.log[1]
    assert (first.clock, second.clock) == pytest.approx((STEP, STEP)) and first.trial_id != second.trial_id
    assert running_at_once(outcome) == 2
    assert outcome.cluster.utilisation == pytest.approx(1.0)
    assert set(outcome.latencies) >= {"suggest", "choose_trial_to_run", "on_trial_result"}


def test_a_stepwise_method_on_three_workers_interleaves_and_ends_each_trial_once() -> None:
    method = Scripted(keep=3, trials=7)
    source = BlackboxReplay(ToyBox(continuable=True), "a")
    outcome = StepwiseReplay(source, method, budget_s=10_000.0, cluster=ClusterModel(workers=3)).run()
    assert outcome.trials == 7 and sorted(method.ended) == [(k, 3, False) for k in range(1, 8)]
    assert [s.trial_id for s in outcome.log[:3]] == ["s00000", "s00001", "s00002"]
    assert running_at_once(outcome) == 3
    assert outcome.times[-1] == pytest.approx(9 * STEP)  # 7 trials of 3 steps on 3 workers: 3 rounds


def searchers_and_schedulers(source: BlackboxReplay) -> dict[str, tuple[Any, Any]]:
    objective = {"metric": "score", "mode": "max"}
    quicktune = QuickTuneSearcher(source.space(), **objective, seed=0, time_attr="training_iteration")
    return {
        "asha": (OptunaSearcher(source.space(), **objective, sampler="random", seed=0),
                 RestorableASHA(seed=0, time_attr="training_iteration", max_t=9, grace_period=1,
                                reduction_factor=3, **objective)),
        "hyperband": (OptunaSearcher(source.space(), **objective, sampler="tpe", seed=0),
                      HyperBandScheduler(time_attr="training_iteration", max_t=9, reduction_factor=3,
                                         **objective)),
        "freeze_thaw": (quicktune, FreezeThawScheduler(searcher=quicktune, max_t=9,
                                                        time_attr="training_iteration")),
    }


def count_running(scheduler: Any) -> list[int]:
    """Make ``scheduler`` note how many trials are RUNNING at each result it is given."""
    seen: list[int] = []
    given = scheduler.on_trial_result

    def on_trial_result(controller: Any, trial: Any, result: dict[str, Any]) -> str:
        seen.append(sum(t.status == "RUNNING" for t in controller.get_trials()))
        return given(controller, trial, result)

    scheduler.on_trial_result = on_trial_result
    return seen


@pytest.mark.parametrize("pair", ["asha", "hyperband", "freeze_thaw"])
def test_ray_objects_on_four_noisy_workers_with_preemptions(pair: str) -> None:
    """Four workers with start-up, stragglers and preemptions: at most four trials train at once, every
    trial reports its steps in order and each once (paused trials resume where they stopped), the
    budget holds, and the same seed gives the same search."""
    model = ClusterModel(workers=4, startup_s=5.0, jitter=0.2, straggler_p=0.1, preemptions_per_hour=20.0,
                         recovery_s=10.0, seed=1)
    logs = []
    for _ in range(2):
        source = BlackboxReplay(ToyBox(continuable=True), "a")
        searcher, scheduler = searchers_and_schedulers(source)[pair]
        running = count_running(scheduler)
        budget = 300.0 if pair == "freeze_thaw" else 800.0  # its online surrogate refits on every result
        sim = ReplaySimulation(source, searcher, scheduler, budget_s=budget, cluster=model)
        outcome = sim.run()
        logs.append([(s.trial_id, s.step, s.value, s.clock) for s in outcome.log])
        assert outcome.trials >= 4 and sim.clock >= budget
        assert outcome.times == sorted(outcome.times)
        assert max(running) == 4
        for trial_id in {s.trial_id for s in outcome.log}:
            assert steps_of(outcome, trial_id) == list(range(1, len(steps_of(outcome, trial_id)) + 1))
        stats = outcome.cluster
        assert stats.preemptions > 0 and 0 < stats.lost_s < stats.busy_s
        assert stats.busy_s <= 4 * stats.makespan_s and 0.3 < stats.utilisation <= 1.0
    assert logs[0] == logs[1]
