"""Replaying a blackbox: the simulated clock advances only by charged step costs, the budget stops the
search, incumbents follow the metric's mode, a non-continuable fidelity restarts, and the HPO suite's
quick path runs end to end on LCBench (skipped where the YAHPO data or yahpo-gym is missing)."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from efficient_search.blackbox.base import COST_KEY, Blackbox, Fidelity
from efficient_search.blackbox.sampling import fidelity_steps, metric_mode, sample_configs
from efficient_search.schedulers import FreezeThawScheduler, LayerFreezingScheduler, RestorableASHA
from efficient_search.searchers import OptunaSearcher, QuickTuneSearcher
from efficient_search.testing.replay import ReplayOutcome, ReplaySimulation
from efficient_search.testing.replay_blackbox import BlackboxReplay

ROOT = Path(__file__).resolve().parents[1]
YAHPO_DATA = Path(os.environ.get("EFFICIENT_SEARCH_YAHPO_DATA") or ROOT.parent / "shared" / "data" / "yahpo")
needs_lcbench = pytest.mark.skipif(
    not (YAHPO_DATA / "lcbench").is_dir(), reason=f"YAHPO lcbench data not found at {YAHPO_DATA / 'lcbench'} "
    "(by default the shared data folder beside the repository; $EFFICIENT_SEARCH_YAHPO_DATA names another)")


class ToyBox(Blackbox):
    """One hyperparameter ``x``; the score grows with the fidelity and peaks at x = 0.3; a run up to
    fidelity f costs ``100 * f`` seconds. ``continuable`` picks epochs (1-9) or a trainsize (0.1-1)."""

    def __init__(self, *, continuable: bool, mode: str = "max"):
        self.continuable = continuable
        self._mode = mode
        self._fidelity = (Fidelity("epoch", 1, 9, continuable=True) if continuable
                          else Fidelity("trainsize", 0.1, 1.0, continuable=False, integer=False))

    instances = ["a", "b"]  # type: ignore[assignment]
    metric_names = ["score"]  # type: ignore[assignment]
    metric = "score"  # type: ignore[assignment]

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def fidelity(self) -> Fidelity:
        return self._fidelity

    def space(self) -> dict[str, Any]:
        return {"x": tune.uniform(0.0, 1.0)}

    def evaluate(self, config: Mapping[str, Any], instance: str, fidelity: float) -> dict[str, Any]:
        share = fidelity / self._fidelity.max
        score = (1.0 - (config["x"] - 0.3) ** 2) * share
        return {"score": score if self._mode == "max" else -score, COST_KEY: 100.0 * share,
                self._fidelity.key: fidelity}


def steps_of(outcome: ReplayOutcome, trial_id: str) -> list[int]:
    return [s.step for s in outcome.log if s.trial_id == trial_id]


def check_clock(sim: ReplaySimulation, outcome: ReplayOutcome) -> None:
    """The clock is the sum of the charges, stops at the first step past the budget, and the
    incumbent after each step is the best value so far in the source's mode."""
    charges = [s.charge for s in outcome.log]
    assert all(c >= 0 for c in charges)
    assert np.allclose(outcome.times, np.cumsum(charges))
    assert sim.clock == pytest.approx(sum(charges))
    assert [s.clock for s in outcome.log] == outcome.times
    if sim.clock >= sim.budget_s:  # stopped by the budget: the last step crossed it
        assert sim.clock - charges[-1] < sim.budget_s
    best = max if outcome.mode == "max" else min
    values = [s.value for s in outcome.log]
    assert outcome.incumbents == [best(values[: i + 1]) for i in range(len(values))]


# -- the clock and the mode on a toy blackbox ---------------------------------------------------------

def test_fidelity_steps_cover_the_range() -> None:
    assert fidelity_steps(Fidelity("epoch", 1, 52, continuable=True)) == list(range(1, 53))
    grid = fidelity_steps(Fidelity("trainsize", 0.03, 1.0, continuable=False, integer=False), points=5)
    assert grid == pytest.approx([0.03, 0.2725, 0.515, 0.7575, 1.0])
    assert fidelity_steps(Fidelity("tokens", 1, 10_000, continuable=True), points=3) == [1, 5000, 10000]


def test_continuable_steps_charge_the_cost_increase_and_min_mode_tracks_the_minimum() -> None:
    box = ToyBox(continuable=True, mode="min")
    source = BlackboxReplay(box, "a")
    assert (source.metric, source.mode, source.max_steps, source.continuable) == ("score", "min", 9, True)
    searcher = OptunaSearcher(source.space(), metric="score", mode="min", sampler="random", seed=0)
    scheduler = RestorableASHA(seed=0, time_attr="training_iteration", max_t=9, grace_period=1,
                               reduction_factor=3, metric="score", mode="min")
    sim = ReplaySimulation(source, searcher, scheduler, budget_s=500.0)
    outcome = sim.run()
    check_clock(sim, outcome)
    assert sim.clock >= 500.0 and outcome.trials > 2
    for trial_id in {s.trial_id for s in outcome.log}:
        assert steps_of(outcome, trial_id) == list(range(1, len(steps_of(outcome, trial_id)) + 1))
    # Each epoch of the toy costs 100/9 s: a continued run pays the increase, never the whole run.
    assert all(s.charge == pytest.approx(100 / 9) for s in outcome.log)
    assert outcome.incumbents[-1] == min(s.value for s in outcome.log) < 0
    result = sim.controller.trials[0].run_metadata.last_result
    assert result["training_iteration"] == result["fidelity/epoch"] and "score" in result
    # Normalised regret in min mode: 0 at the best, 1 at the worst, capped at 1.
    last = outcome.times[-1]
    assert outcome.regret_at(last, best=outcome.incumbents[-1], worst=0.0) == pytest.approx(0.0)
    assert outcome.regret_at(last, best=outcome.incumbents[-1] - 1.0, worst=outcome.incumbents[-1]) == 1.0
    assert outcome.regret_at(-1.0, best=-1.0, worst=0.0) == 1.0  # before the first result


def test_a_non_monotone_cumulative_cost_is_charged_its_increases_only() -> None:
    class Wobbly(ToyBox):
        def evaluate(self, config: Mapping[str, Any], instance: str, fidelity: float) -> dict[str, Any]:
            out = super().evaluate(config, instance, fidelity)
            out[COST_KEY] = [5.0, 4.0, 9.0, 9.5, 3.0, 20.0, 21.0, 22.0, 23.0][int(fidelity) - 1]
            return out

    source = BlackboxReplay(Wobbly(continuable=True), "a")
    searcher = OptunaSearcher(source.space(), metric="score", mode="max", sampler="random", seed=0)
    sim = ReplaySimulation(source, searcher, FIFOScheduler(), budget_s=100.0)
    outcome = sim.run()
    check_clock(sim, outcome)
    expected = [5.0, 0.0, 5.0, 0.5, 0.0, 17.0, 1.0, 1.0, 1.0]
    assert [s.charge for s in outcome.log[:9]] == pytest.approx(expected)


# -- restart semantics on a non-continuable fidelity ------------------------------------------------

def test_a_non_continuable_fidelity_restarts_every_step_under_asha() -> None:
    source = BlackboxReplay(ToyBox(continuable=False), "a", points=10)
    assert not source.continuable and source.grid == pytest.approx([0.1 * k for k in range(1, 11)])
    searcher = OptunaSearcher(source.space(), metric="score", mode="max", sampler="random", seed=1)
    scheduler = RestorableASHA(seed=0, time_attr="training_iteration", max_t=10, grace_period=1,
                               reduction_factor=3, metric="score", mode="max")
    sim = ReplaySimulation(source, searcher, scheduler, budget_s=2000.0)
    outcome = sim.run()
    check_clock(sim, outcome)
    # Stepping up without a fidelity asked for: each step is a fresh run paying its full cost.
    assert all(s.charge == pytest.approx(10.0 * s.step) for s in outcome.log)
    assert max(len(steps_of(outcome, t)) for t in {s.trial_id for s in outcome.log}) >= 3


def test_freeze_thaw_on_a_non_continuable_fidelity_pays_each_resumed_step_from_scratch() -> None:
    source = BlackboxReplay(ToyBox(continuable=False), "a", points=10)
    searcher = QuickTuneSearcher(source.space(), metric="score", mode="max", seed=0, pool_size=32,
                                 initial_random=2, time_attr="training_iteration")
    scheduler = FreezeThawScheduler(searcher=searcher, max_t=10, time_attr="training_iteration")
    sim = ReplaySimulation(source, searcher, scheduler, budget_s=250.0)
    outcome = sim.run()
    check_clock(sim, outcome)
    resumed = [t for t in sim.progress if sim.progress[t] >= 2]
    assert resumed, "freeze-thaw resumed some trial to a higher fidelity"
    for trial_id in resumed:
        assert steps_of(outcome, trial_id) == list(range(1, sim.progress[trial_id] + 1))
    # A trial resumed to step k trains at fidelity k from scratch: it pays the whole 10 k seconds.
    assert all(s.charge == pytest.approx(10.0 * s.step) for s in outcome.log)
    assert sim.seconds[resumed[0]] == pytest.approx(sum(10.0 * k for k in steps_of(outcome, resumed[0])))


@pytest.mark.parametrize("continuable", [False, True])
def test_restart_promotion_trains_the_new_rung_from_scratch(continuable: bool) -> None:
    source = BlackboxReplay(ToyBox(continuable=continuable), "a", points=10)
    steps = source.max_steps  # 9 epochs, or trainsize 0.1, 0.2, ..., 1.0
    searcher = OptunaSearcher(source.space(), metric="score", mode="max", sampler="random", seed=0)
    scheduler = LayerFreezingScheduler(max_trainable_layers=9, min_trainable_layers=1, reduction_factor=3,
                                       epochs=steps, min_epochs=1, promotion="restart",
                                       time_attr="training_iteration", metric="score", mode="max")
    sim = ReplaySimulation(source, searcher, scheduler, budget_s=1500.0)
    outcome = sim.run()
    check_clock(sim, outcome)
    promoted = [t for t in {s.trial_id for s in outcome.log} if max(steps_of(outcome, t)) > 1]
    assert promoted
    for trial_id in promoted:
        seen = steps_of(outcome, trial_id)
        charges = [s.charge for s in outcome.log if s.trial_id == trial_id]
        if continuable:  # the next rung's epochs again from epoch 1, each paying its increase
            assert seen[:4] == [1, 1, 2, 3] and charges == pytest.approx([100 / 9] * len(seen))
        else:  # one fresh run at the rung's fidelity, paying it whole
            assert seen == [1, 3, 10][: len(seen)]
            assert charges == pytest.approx([10.0 * k for k in seen])


def test_a_recorded_run_that_stopped_early_ends_there() -> None:
    """A table holds a short run at its last step: the replay ends the trial there (no free epochs)."""
    import pandas as pd

    from efficient_search.blackbox.tables import TableBenchmark
    from efficient_search.surrogate import MetaDataset

    data = MetaDataset(configs=pd.DataFrame({"lr": [1e-4, 1e-2]}),
                       curves=np.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, np.nan]]),
                       costs=np.asarray([[1.0, 1.0, 1.0], [2.0, 2.0, np.nan]]),
                       datasets=np.asarray(["A", "A"]), budgets=np.arange(1, 4), metric="accuracy",
                       mode="max")
    source = BlackboxReplay(TableBenchmark(data), "A")
    assert (source.steps({"lr": 1e-2}), source.steps({"lr": 1e-4})) == (2, 3)
    searcher = OptunaSearcher(source.space(), metric="accuracy", mode="max", sampler="random", seed=0,
                              points_to_evaluate=[{"lr": 1e-2}, {"lr": 1e-4}])
    sim = ReplaySimulation(source, searcher, FIFOScheduler(), budget_s=7.0)
    outcome = sim.run()
    check_clock(sim, outcome)
    assert [(s.trial_id, s.step, s.charge) for s in outcome.log] == [
        ("r00000", 1, 2.0), ("r00000", 2, 2.0), ("r00001", 1, 1.0), ("r00001", 2, 1.0), ("r00001", 3, 1.0)]
    assert sim.controller.trials[0].status == "TERMINATED"


def test_objective_errors_name_the_field_value_and_fix() -> None:
    box = ToyBox(continuable=True)
    with pytest.raises(ValueError, match=r"`metric` 'loss' is not an output.*Fix: pass one of \['score'\]"):
        BlackboxReplay(box, "a", metric="loss")
    with pytest.raises(ValueError, match=r"`mode` 'min' contradicts.*Fix: pass mode='max'"):
        metric_mode(box, "score", "min")
    with pytest.raises(ValueError, match=r"`instance` 'z' is not an instance.*Fix"):
        BlackboxReplay(box, "z")
    with pytest.raises(ValueError, match=r"`fidelities` must hold one value per config"):
        box.evaluate_many([{"x": 0.1}], "a", [1, 2])
    configs = sample_configs(box.space(), 3, seed=0)
    assert configs == sample_configs(box.space(), 3, seed=0) and all(0 <= c["x"] <= 1 for c in configs)


# -- LCBench -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lcbench() -> Any:
    pytest.importorskip("yahpo_gym", reason="yahpo-gym is not installed")
    if not (YAHPO_DATA / "lcbench").is_dir():
        pytest.skip(f"YAHPO lcbench data not found at {YAHPO_DATA / 'lcbench'}")
    from efficient_search.blackbox import YahpoBenchmark

    return YahpoBenchmark("lcbench", data_path=YAHPO_DATA)


@needs_lcbench
def test_lcbench_batched_evaluation_matches_single_calls(lcbench: Any) -> None:
    configs = sample_configs(lcbench.space(), 4, seed=3)
    many = lcbench.evaluate_many([c for c in configs for _ in (1, 26, 52)], "3945", [1, 26, 52] * 4)
    singles = [lcbench.evaluate(c, "3945", e) for c in configs for e in (1, 26, 52)]
    for got, want in zip(many, singles, strict=True):
        assert got.keys() == want.keys()
        for name, value in want.items():
            assert math.isclose(got[name], value, rel_tol=1e-3, abs_tol=1e-4), name


@needs_lcbench
def test_lcbench_replay_with_evolution_and_asha(lcbench: Any) -> None:
    from efficient_search.searchers import EvolutionarySearcher

    source = BlackboxReplay(lcbench, "3945")
    ref = source.reference(samples=500)
    assert ref is source.reference(samples=500)  # cached in memory
    assert ref.best > ref.worst and ref.full_run_s > 0
    searcher = EvolutionarySearcher(source.space(), metric="val_accuracy", mode="max", seed=0)
    scheduler = RestorableASHA(seed=0, time_attr="training_iteration", max_t=52, grace_period=1,
                               reduction_factor=3, metric="val_accuracy", mode="max")
    budget = 10 * ref.full_run_s  # evolution starts with the largest config: ~8 median runs on 3945
    sim = ReplaySimulation(source, searcher, scheduler, budget_s=budget)
    outcome = sim.run()
    check_clock(sim, outcome)
    assert sim.clock >= budget and outcome.trials >= 2
    # Every charge is the surrogate's cost increase at that epoch (never negative).
    for step in outcome.log[:30]:
        trial = next(t for t in sim.controller.trials if t.trial_id == step.trial_id)
        config = {k: trial.config[k] for k in lcbench.space()}
        now = lcbench.evaluate(config, "3945", step.step)
        before = lcbench.evaluate(config, "3945", step.step - 1)[COST_KEY] if step.step > 1 else 0.0
        # (batched and single surrogate calls round differently: a few ms of seconds apart)
        assert step.charge == pytest.approx(max(now[COST_KEY] - before, 0.0), rel=1e-3, abs=0.05)
        assert step.value == pytest.approx(now["val_accuracy"], rel=1e-4)
    assert 0.0 <= outcome.regret_at(budget, best=ref.best, worst=ref.worst) <= 1.0


@needs_lcbench
def test_lcbench_cross_entropy_is_minimised(lcbench: Any) -> None:
    source = BlackboxReplay(lcbench, "3945", metric="val_cross_entropy")
    assert source.mode == "min"
    ref = source.reference(samples=300)
    assert ref.best < ref.worst
    searcher = OptunaSearcher(source.space(), metric="val_cross_entropy", mode="min", sampler="tpe", seed=0)
    sim = ReplaySimulation(source, searcher, FIFOScheduler(), budget_s=2 * ref.full_run_s)
    outcome = sim.run()
    check_clock(sim, outcome)
    assert outcome.incumbents[-1] == min(s.value for s in outcome.log)


# -- the suite's quick path ---------------------------------------------------------------------------

@pytest.fixture
def suite(lcbench: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setenv("EFFICIENT_SEARCH_YAHPO_DATA", str(YAHPO_DATA))
    import _common
    import hpo_suite

    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(hpo_suite, "RESULTS_DIR", tmp_path / "results")
    yield hpo_suite
    sys.modules.pop("hpo_suite", None)


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    return ["--instances", "3945", "--budget-runs", "0.5", "--meta-configs", "4", "--meta-steps", "20",
            "--methods", "quicktune+freeze_thaw,random+sh,random", "--store", str(tmp_path / "store"), *extra]


@needs_lcbench
def test_suite_quick_path_prints_a_quick_result(suite: Any, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    figures = suite.run(suite.parse_args(["--quick", *tiny(tmp_path)]))
    out = capsys.readouterr().out
    assert "mode=quick" in out.splitlines()[0]
    result = [line for line in out.splitlines() if line.startswith("RESULT hpo_suite ")]
    assert len(result) == 1 and "scenario=lcbench mode=quick" in result[0]
    for name in ("regret_10=", "regret_50=", "regret_100=", "best_peer=", "best_peer_regret_50=", "rank_50=",
                 "win_rate_vs_best_peer="):
        assert name in result[0]
    assert figures["best_peer"] == "random" and 0.0 <= figures["win_rate_vs_best_peer"] <= 1.0
    assert (tmp_path / "results" / "hpo_suite_lcbench-quick.png").is_file()
    assert not (tmp_path / "results" / "hpo_suite_lcbench.csv").exists()  # summaries are full-mode only


@needs_lcbench
def test_suite_full_mode_writes_summaries(suite: Any, tmp_path: Path) -> None:
    import pandas as pd

    suite.run(suite.parse_args([*tiny(tmp_path), "--seeds", "2"]))
    runs = pd.read_csv(tmp_path / "results" / "hpo_suite_lcbench.csv")
    assert len(runs) == 2 * 3 and set(runs["method"]) == {"quicktune+freeze_thaw", "random+sh", "random"}
    assert {"regret_10", "regret_25", "regret_50", "regret_100"} <= set(runs.columns)
    summary = pd.read_csv(tmp_path / "results" / "hpo_suite_lcbench_summary.csv", index_col="method")
    assert {"regret_50_mean", "regret_50_se", "rank_50", "overhead_share"} <= set(summary.columns)


@needs_lcbench
def test_suite_in_two_worker_processes_gives_the_figures_of_one(suite: Any, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    runs = []
    for jobs in ("1", "2"):
        args = [*tiny(tmp_path), "--instances", "3945,7593", "--seeds", "1", "--jobs", jobs]
        suite.run(suite.parse_args(args))
        runs.append(pd.read_csv(tmp_path / "results" / "hpo_suite_lcbench.csv"))
    assert "in 2 worker processes" in capsys.readouterr().out
    columns = ["instance", "seed", "method", "regret_10", "regret_25", "regret_50", "regret_100", "trials",
               "steps"]
    assert len(runs[0]) == 2 * 3
    pd.testing.assert_frame_equal(runs[0][columns], runs[1][columns])
    # The worker that ran the first instance saved its allocation plot where the parent saves plots.
    assert (tmp_path / "results" / "hpo_suite_lcbench_allocation.png").is_file()


@needs_lcbench
def test_suite_resumes_a_crashed_full_run_from_its_finished_instances(
        suite: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import _hpo_run
    import pandas as pd

    args = [*tiny(tmp_path), "--instances", "3945,7593", "--seeds", "1", "--jobs", "1"]
    real = _hpo_run.instance_runs

    def crash_on_the_second(run_suite: Any, instance: str) -> Any:
        if instance == "7593":
            raise RuntimeError("killed")
        return real(run_suite, instance)

    monkeypatch.setattr(_hpo_run, "instance_runs", crash_on_the_second)
    with pytest.raises(RuntimeError, match="killed"):
        suite.run(suite.parse_args(args))
    folder = _hpo_run.partial_folder(suite.parse_args(args), "hpo_suite_lcbench")
    assert [p.name for p in folder.iterdir()] == ["3945.json"]
    calls: list[str] = []

    def counted(run_suite: Any, instance: str) -> Any:
        calls.append(instance)
        return real(run_suite, instance)

    monkeypatch.setattr(_hpo_run, "instance_runs", counted)
    suite.run(suite.parse_args(args))
    assert calls == ["7593"] and "resuming: 1 of 2 instances already done" in capsys.readouterr().out
    assert not folder.exists()  # gone once the report is written
    resumed = pd.read_csv(tmp_path / "results" / "hpo_suite_lcbench.csv")
    suite.run(suite.parse_args(args))  # uninterrupted
    pd.testing.assert_frame_equal(resumed.drop(columns="overhead_share"),
                                  pd.read_csv(tmp_path / "results" / "hpo_suite_lcbench.csv")
                                  .drop(columns="overhead_share"))


@needs_lcbench
def test_suite_meta_trains_without_the_tuned_instance(suite: Any) -> None:
    import pandas as pd

    from efficient_search.surrogate import MetaDataset

    data = MetaDataset(configs=pd.DataFrame({"x": [1.0, 2.0, 3.0]}), curves=np.ones((3, 2)),
                       costs=np.ones((3, 2)), datasets=np.asarray(["a", "b", "c"]), budgets=np.arange(1, 3),
                       metric="m", mode="max")
    assert suite.leave_one_out(data, "b").dataset_names == ["a", "c"]


@needs_lcbench
@pytest.mark.parametrize(("extra", "words"), [
    (["--instances", "3945,nope"], ["`--instances` names ['nope']", "Fix: pass some of"]),
    (["--metric", "accuracy"], ["`metric` 'accuracy' is not an output", "Fix: pass one of"]),
    (["--metric", "val_cross_entropy", "--mode", "max"],
     ["`mode` 'max' contradicts", "Fix: pass mode='min'"]),
    (["--methods", "random,random+asha"], ["`--methods` must name 'quicktune+freeze_thaw'", "Fix"]),
    (["--seeds", "-1"], ["`--seeds` must be > 0", "Fix"]),
])
def test_suite_bad_input_names_field_value_and_fix(suite: Any, tmp_path: Path, extra: list[str],
                                                   words: list[str]) -> None:
    args = suite.parse_args(["--quick", "--store", str(tmp_path / "store"), *extra])
    with pytest.raises(ValueError) as caught:
        suite.run(args)
    for word in words:
        assert word in str(caught.value)


@needs_lcbench  # the suite fixture opens lcbench
def test_suite_runs_another_scenario_with_a_restarting_fidelity(suite: Any, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """yahpo's own rbv2_glmnet configuration over a synthetic data folder (tests/test_blackbox.py's
    linear model): its budget is ``trainsize``, which restarts."""
    pytest.importorskip("onnx", reason="onnx builds the synthetic scenario's model")
    from test_blackbox import write_glmnet_scenario

    write_glmnet_scenario(tmp_path / "yahpo")
    figures = suite.run(suite.parse_args([
        "--quick", "--scenario", "rbv2_glmnet", "--data-path", str(tmp_path / "yahpo"), "--metric", "logloss",
        "--instances", "31", "--budget-runs", "2", "--meta-configs", "4", "--meta-steps", "20",
        "--methods", "quicktune+freeze_thaw,random+sh,random+asha", "--store", str(tmp_path / "store")]))
    out = capsys.readouterr().out
    assert "31: 20 steps (restarts)" in out and "metric logloss (min)" in out
    assert "RESULT hpo_suite scenario=rbv2_glmnet mode=quick" in out
    assert figures["best_peer"] == "random+asha"


QUICKTUNE_DATA = ROOT.parent / "shared" / "data" / "quicktune-mtlbm-extended"


@pytest.mark.skipif(not QUICKTUNE_DATA.is_dir(),
                    reason=f"Quick-Tune meta-dataset not found at {QUICKTUNE_DATA}")
def test_quicktune_replay_searches_the_real_hyperparameters(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _common
    import quicktune_replay

    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path / "results")
    figures = quicktune_replay.run(quicktune_replay.parse_args([
        "--quick", "--meta-dataset", str(QUICKTUNE_DATA), "--datasets", "APL", "--budget-runs", "0.3",
        "--methods", "quicktune+freeze_thaw,random+asha", "--store", str(tmp_path / "store")]))
    out = capsys.readouterr().out
    assert out.startswith("mode=quick") and "32 searched hyperparameters" in out
    assert "RESULT quicktune_replay scenario=quicktune-mtlbm-extended mode=quick" in out
    assert figures["best_peer"] == "random+asha"
    with pytest.raises(ValueError, match=r"`--datasets` names \['nope'\].*Fix"):
        quicktune_replay.run(quicktune_replay.parse_args(["--quick", "--meta-dataset", str(QUICKTUNE_DATA),
                                                          "--datasets", "nope"]))
