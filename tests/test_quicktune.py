"""QuickTuneSearcher + FreezeThawScheduler: contract suites, pairing, replayed curves, real Ray runs."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ray import tune
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

import efficient_search as es
from efficient_search.registry import make_scheduler, make_searcher
from efficient_search.schedulers import FreezeThawScheduler
from efficient_search.searchers import QuickTuneSearcher
from efficient_search.searchers.quicktune_observations import Observations
from efficient_search.surrogate import MetaDataset
from efficient_search.testing.faults import InterruptAfterResults
from efficient_search.testing.replay import CONFIG_KEY, ReplaySimulation, ReplayTable, replay_trainable
from efficient_search.testing.schedulers import (
    MAX_EPOCHS,
    METRIC,
    TIME_ATTR,
    SchedulerContract,
    WhitelistedController,
)
from efficient_search.testing.searchers import SearcherContract

pytestmark = pytest.mark.usefixtures("ray_session")

QUICKTUNE_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "quicktune-mtlbm-extended"


class TestQuickTuneSearcherContract(SearcherContract):
    @staticmethod
    def make(
        space: Any, metric: Any, mode: Any, seed: int, points_to_evaluate: list[dict[str, Any]] | None = None
    ) -> Searcher:
        return QuickTuneSearcher(
            space, metric=metric, mode=mode, seed=seed, points_to_evaluate=points_to_evaluate, pool_size=64
        )


class TestFreezeThawSchedulerContract(SchedulerContract):
    restores_state = True

    @staticmethod
    def make(mode: str) -> TrialScheduler:
        return FreezeThawScheduler(max_t=MAX_EPOCHS, time_attr=TIME_ATTR, metric=METRIC, mode=mode, seed=0)


# -- the pure parts -----------------------------------------------------------------------------------


def test_observations_turn_cumulative_cost_into_step_cost_and_ignore_repeats() -> None:
    seen = Observations()
    seen.register("a", {"lr": 0.1})
    assert seen.observe("a", 1, 0.5, cumulative=2.0) == 2.0
    assert seen.observe("a", 2, 0.6, cumulative=5.0) == 3.0
    assert seen.observe("a", 2, 0.9, cumulative=5.0) == 0.0  # Tune's repeated final result
    features, values, costs = seen.arrays(["a"], 3)
    assert features == [{"lr": 0.1}]
    assert values[0, :2].tolist() == [0.5, 0.6] and math.isnan(values[0, 2])
    assert costs[0, :2].tolist() == [2.0, 3.0] and seen.spent_s == 5.0
    restored = Observations()
    restored.set_state(json.loads(json.dumps(seen.to_state())))
    assert restored.to_state() == seen.to_state()


def test_observations_keep_points_and_best_per_step_as_values_arrive() -> None:
    seen = Observations()
    rng = np.random.default_rng(0)
    for i in range(30):
        seen.register(f"t{i}", {"lr": float(i)})
        for step in range(1, int(rng.integers(1, 5)) + 1):
            seen.observe(f"t{i}", step, float(rng.normal()), seconds=1.0)
    seen.register("failed", {"lr": -1.0})
    seen.observe("failed", 1, math.nan)
    _, values, _ = seen.arrays(seen.usable(), 5)
    assert seen.points == int(np.isfinite(values).sum())
    observed = np.isfinite(values).any(axis=0)
    expected_max, expected_min = np.full(5, np.nan), np.full(5, np.nan)
    expected_max[observed] = np.nanmax(values[:, observed], axis=0)
    expected_min[observed] = np.nanmin(values[:, observed], axis=0)
    np.testing.assert_array_equal(seen.best_per_step(5), expected_max)
    np.testing.assert_array_equal(seen.best_per_step(5, "min"), expected_min)
    restored = Observations()
    restored.set_state(json.loads(json.dumps(seen.to_state())))
    assert restored.points == seen.points and restored.to_state() == seen.to_state()
    np.testing.assert_array_equal(restored.best_per_step(3), expected_max[:3])


def test_bad_options_name_the_field() -> None:
    with pytest.raises(ValueError, match="`alpha`"):
        QuickTuneSearcher(alpha=-1)
    with pytest.raises(ValueError, match="`pool_size`"):
        QuickTuneSearcher(pool_size=0)
    with pytest.raises(ValueError, match="meta-dataset path"):
        QuickTuneSearcher(surrogate="/nonexistent/surrogate")
    with pytest.raises(ValueError, match="`max_t`"):
        FreezeThawScheduler(max_t=0)
    with pytest.raises(ValueError, match="`patience`"):
        FreezeThawScheduler(patience=0)
    with pytest.raises(TypeError, match="`searcher`"):
        FreezeThawScheduler(searcher="quicktune")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheduler_options.searcher"):
        make_scheduler("freeze_thaw", seed=0, options={"searcher": "x"})


def test_the_registry_builds_a_linked_pair() -> None:
    searcher = make_searcher("quicktune", seed=0, options={"pool_size": 32, "horizon": "final"},
                             max_concurrent=2)
    limited = ConcurrencyLimiter(searcher, max_concurrent=2)  # what Tune wraps it in
    scheduler = make_scheduler("freeze_thaw", seed=0, options={"max_t": 3, "patience": 2, "eta": 3},
                               searcher=limited)
    assert isinstance(scheduler, FreezeThawScheduler) and scheduler.linked
    assert searcher.model.horizon == "final" and searcher.model.eta == 3
    assert scheduler.model is searcher.model and searcher.model.paired and searcher.model.max_steps == 3
    alone = make_scheduler("freeze_thaw", seed=0, options={"max_t": 3})
    assert isinstance(alone, FreezeThawScheduler) and not alone.linked


def test_paused_trials_free_their_slot_under_the_concurrency_limiter() -> None:
    searcher = QuickTuneSearcher({"x": tune.uniform(0, 1)}, metric="score", mode="max", seed=0)
    limiter = ConcurrencyLimiter(searcher, max_concurrent=1)
    assert limiter.suggest("t0") is not None
    assert limiter.suggest("t1") is None  # t0 runs
    limiter.on_pause("t0")
    assert limiter.suggest("t1") is not None  # t0 paused: its slot is free
    limiter.on_unpause("t0")
    assert limiter.suggest("t2") is None


def _linked_pair(limit: int) -> tuple[QuickTuneSearcher, FreezeThawScheduler, WhitelistedController]:
    searcher = QuickTuneSearcher({"x": tune.uniform(0, 1)}, metric="score", mode="max", seed=0)
    ConcurrencyLimiter(searcher, max_concurrent=limit)  # hands the limit to the searcher
    scheduler = FreezeThawScheduler(searcher=searcher, max_t=3, metric="score", mode="max")
    controller = WhitelistedController()
    controller.scheduler = scheduler
    return searcher, scheduler, controller


def _add(scheduler: FreezeThawScheduler, controller: WhitelistedController, trial_id: str,
         config: dict[str, Any], status: str = Trial.PENDING) -> Trial:
    trial = Trial("fn", config=config, trial_id=trial_id, stub=True)
    trial.set_status(status)
    controller.trials.append(trial)
    scheduler.on_trial_add(controller, trial)  # type: ignore[arg-type]
    return trial


def test_freeze_thaw_trains_at_most_max_concurrent_trials_and_breaks_ties_by_age() -> None:
    searcher, scheduler, controller = _linked_pair(1)
    trials = []
    for name in ("a", "b"):
        config = searcher.suggest(name)
        assert config is not None
        trial = _add(scheduler, controller, name, config)
        trial.set_status(Trial.RUNNING)
        result = {"score": 0.5, "fidelity/epoch": 1, "training_iteration": 1}
        assert scheduler.on_trial_result(controller, trial, result) == TrialScheduler.PAUSE  # type: ignore[arg-type]
        searcher.on_trial_result(name, result)
        trial.set_status(Trial.PAUSED)
        trials.append(trial)
    controller.trials.reverse()  # Tune lists restored trials newest first
    trials[1].set_status(Trial.RUNNING)
    assert scheduler.choose_trial_to_run(controller) is None  # b trains: the one slot is taken  # type: ignore[arg-type]
    trials[1].set_status(Trial.PAUSED)
    assert scheduler.choose_trial_to_run(controller) is trials[0]  # type: ignore[arg-type]


def test_a_restored_trial_waits_if_it_had_reached_its_segment_end() -> None:
    """Tuner.restore makes every unfinished trial PENDING and Tune starts PENDING trials unasked.
    A trial that had reached its pause point (here: its pause checkpoint not saved yet) must wait
    for the scheduler again; one that was training goes on."""
    searcher, scheduler, controller = _linked_pair(1)
    configs = {name: searcher.suggest(name) for name in ("a",)}
    trial = _add(scheduler, controller, "a", dict(configs["a"] or {}))
    trial.set_status(Trial.RUNNING)
    result = {"score": 0.5, "fidelity/epoch": 1, "training_iteration": 1}
    assert scheduler.on_trial_result(controller, trial, result) == TrialScheduler.PAUSE  # type: ignore[arg-type]
    searcher.on_trial_result("a", result)
    config_b = searcher.suggest("b")  # a's slot is free while it pauses
    assert config_b is not None
    _add(scheduler, controller, "b", config_b).set_status(Trial.RUNNING)
    saved = json.loads(json.dumps({"searcher": searcher.get_state(), "scheduler": scheduler.get_state()}))

    searcher, scheduler, controller = _linked_pair(1)
    searcher.set_state(saved["searcher"])
    scheduler.set_state(saved["scheduler"])
    restored_b = _add(scheduler, controller, "b", {**config_b, "epochs": 1})
    restored_a = _add(scheduler, controller, "a", {**dict(configs["a"] or {}), "epochs": 1})
    assert restored_a.status == Trial.PAUSED and searcher.model.paused == {"a"}
    assert restored_b.status == Trial.PENDING and restored_b.config["epochs"] == 1
    assert scheduler.choose_trial_to_run(controller) is None  # type: ignore[arg-type]
    restored_b.set_status(Trial.RUNNING)
    assert scheduler.on_trial_result(controller, restored_b, result) == TrialScheduler.PAUSE  # type: ignore[arg-type]
    restored_b.set_status(Trial.PAUSED)
    assert scheduler.choose_trial_to_run(controller) is restored_a  # type: ignore[arg-type]
    assert restored_a.config["epochs"] == 2


# -- replayed Quick-Tune curves ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def quicktune_data() -> Any:
    if not QUICKTUNE_DATA.is_dir():
        pytest.skip(f"the Quick-Tune meta-dataset is not at {QUICKTUNE_DATA}")
    from efficient_search.surrogate import load_meta_dataset

    return load_meta_dataset(QUICKTUNE_DATA)


@pytest.fixture(scope="module")
def small_surrogate(quicktune_data: Any) -> Any:
    from efficient_search.surrogate import DeepKernelSurrogate, SurrogateSettings

    held_out = quicktune_data.dataset_names[0]
    settings = SurrogateSettings(meta_train_steps=100, cost_train_steps=100, max_train_points=4000)
    return DeepKernelSurrogate(settings=settings, seed=0).fit(quicktune_data.drop([held_out]))


def test_replay_pauses_continues_and_keeps_suggest_under_a_second(
    quicktune_data: Any, small_surrogate: Any
) -> None:
    table = ReplayTable.from_meta_dataset(quicktune_data, quicktune_data.dataset_names[0])
    searcher = QuickTuneSearcher(
        table.space(),
        metric="accuracy",
        mode="max",
        seed=0,
        surrogate=small_surrogate,
        meta_features=table.meta_features(),
        featurize=table.hyperparameters,
        alpha=1.0,  # cost-aware: within 1.5 full runs it tries several cheap configs, not one costly one
    )
    scheduler = FreezeThawScheduler(searcher=searcher, max_t=table.max_epochs, patience=10)
    full_run = float(np.nanmedian(np.nansum(table.data.costs, axis=1)))
    latencies: list[float] = []
    suggest = searcher.suggest

    def timed_suggest(trial_id: str) -> Any:
        started = time.perf_counter()
        try:
            return suggest(trial_id)
        finally:
            latencies.append(time.perf_counter() - started)

    searcher.suggest = timed_suggest  # type: ignore[method-assign]
    sim = ReplaySimulation(table, searcher, scheduler, budget_s=1.5 * full_run)
    outcome = sim.run()
    assert outcome.trials >= 3 and outcome.epochs > outcome.trials
    assert max(sim.progress.values()) <= table.max_epochs
    resumed = [t for t in sim.controller.trials if sim.progress.get(t.trial_id, 0) >= 2]
    assert resumed, "some trial was paused after its first epoch and continued"
    assert statistics.median(latencies) < 1.0, latencies
    regret = (table.best - outcome.incumbents[-1]) / (table.best - table.worst)
    assert 0 <= regret < 0.5


def test_a_new_result_repredicts_only_its_own_trial(quicktune_data: Any, small_surrogate: Any) -> None:
    """At scale every result asks the scheduler to weigh all paused trials again: predictions are kept
    until the surrogate changes, so one result costs one new prediction, and the scores still equal a
    fresh computation (expected improvement moves with the best value seen)."""
    table = ReplayTable.from_meta_dataset(quicktune_data, quicktune_data.dataset_names[0])
    searcher = QuickTuneSearcher(table.space(), metric="accuracy", mode="max", seed=0,
                                 surrogate=small_surrogate, meta_features=table.meta_features(),
                                 featurize=table.hyperparameters)
    model = searcher.model
    ids = [f"t{row}" for row in range(40)]
    for row, trial_id in enumerate(ids):
        model.register(trial_id, {CONFIG_KEY: row})
        model.observations.observe(trial_id, 1, table.value(row, 1), seconds=table.cost(row, 1))
    predicted_rows: list[int] = []
    predict = model._predict

    def counted(features: Any, *rest: Any) -> Any:
        predicted_rows.append(len(features))
        return predict(features, *rest)

    model._predict = counted  # type: ignore[method-assign]
    model.score_continue(ids, [2] * len(ids))
    assert predicted_rows == [len(ids)]
    best_row = int(np.argmax([table.value(row, 1) for row in range(40)]))
    record = table.best + 1.0  # a new best value at step 2
    model.observations.observe(ids[best_row], 2, record, seconds=table.cost(best_row, 2))
    targets = [3 if i == best_row else 2 for i in range(len(ids))]
    scores = model.score_continue(ids, targets)
    assert predicted_rows == [len(ids), 1], "only the trial with a new result is predicted again"
    features, curves, _ = model.observations.arrays(ids, model.steps())
    starts = [model.observations.trials[t].last_step for t in ids]
    fresh = model.acquisition(features, targets, starts, curves)  # float32 GP: batches round differently
    # Far tails (EI of 1e-100 and less) round apart most: compare them against the largest score.
    np.testing.assert_allclose(scores, fresh, rtol=1e-4, atol=1e-9 * float(np.max(fresh)))
    assert np.argmax(scores) == np.argmax(fresh)


# -- real Ray Tune runs -----------------------------------------------------------------------------


def digits_spec(tmp_path: Path, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "task": "digits",
        "search_space": {
            "depth": {"randint": [1, 3]},
            "width": 8,
            "lr": {"loguniform": [0.01, 0.5]},
            "batch_size": 64,
        },
        "searcher": "quicktune",
        "searcher_options": {"pool_size": 32, "initial_random": 2},
        "scheduler": "freeze_thaw",
        "scheduler_options": {"max_t": 3},
        "num_samples": 4,
        "max_concurrent_trials": 1,
        "resources": {"num_workers": 0},
        "store": str(tmp_path / "store"),
        "seed": 0,
        "verbose": 0,
        **fields,
    }


def reported(rows: Any) -> Any:
    return rows[rows["status"] == "RUNNING"].sort_values("timestamp" if "timestamp" in rows else "time")


class ResultOrder(Callback):
    """Records (trial id, epoch) of every result, in the order Tune saw them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: Any, **info: Any
    ) -> None:
        self.seen.append((trial.trial_id, int(result["fidelity/epoch"])))


def toy_table() -> ReplayTable:
    """Six recorded 3-epoch curves: the higher ``lr``, the better and the slower."""
    lr = np.array([0.001, 0.003, 0.01, 0.03, 0.1, 0.3])
    curves = np.outer(np.log10(lr) + 4, [0.5, 0.8, 1.0])
    costs = np.outer(1 + np.arange(6), [1.0, 1.0, 1.0])
    data = MetaDataset(
        configs=pd.DataFrame({"lr": lr}),
        curves=curves,
        costs=costs,
        datasets=["toy"] * 6,
        budgets=np.array([1, 2, 3]),
        metric="accuracy",
        mode="max",
    )
    return ReplayTable.from_meta_dataset(data, "toy")


def test_tune_pauses_and_continues_replayed_trials(tmp_path: Path) -> None:
    table = toy_table()
    searcher = QuickTuneSearcher(
        metric="accuracy", mode="max", seed=0, featurize=table.hyperparameters, initial_random=2
    )
    scheduler = FreezeThawScheduler(max_t=3)  # finds the searcher through Tune's search_alg
    order = ResultOrder()
    grid = tune.Tuner(
        replay_trainable(table),
        param_space=table.space(),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=4,
            max_concurrent_trials=1,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="replay",
            storage_path=str(tmp_path),
            verbose=0,
            callbacks=[order, scheduler.state_callback()],
        ),
    ).fit()
    assert grid.num_errors == 0 and len(grid) == 4
    assert scheduler.linked and scheduler.model is searcher.model
    for trial_id in {t for t, _ in order.seen}:
        epochs = [e for t, e in order.seen if t == trial_id]
        assert epochs == list(range(1, len(epochs) + 1)), (trial_id, epochs)  # continued, never restarted
    assert max(e for _, e in order.seen) == 3
    ids = [t for t, _ in order.seen]
    assert any(ids[i] != ids[i + 1] and ids[i] in ids[i + 2 :] for i in range(len(ids) - 2)), order.seen


def check_paused_and_continued(rows: Any) -> None:
    """Every trial's epochs count on (continued, not restarted); some trial reported, paused while
    another one ran, then went on; someone reached max_t = 3."""
    assert rows["fidelity.epoch"].max() <= 3
    order = rows["trial_id"].tolist()
    for trial_id, own in rows.groupby("trial_id"):
        epochs = own["fidelity.epoch"].astype(int).tolist()
        assert epochs == list(range(1, len(epochs) + 1)), (trial_id, epochs)
    interleaved = [
        t for t in set(order) if (len(order) - order[::-1].index(t)) - order.index(t) > order.count(t)
    ]
    assert interleaved, order
    assert rows.groupby("trial_id")["fidelity.epoch"].max().max() == 3


@pytest.mark.slow
def test_resume_keeps_surrogate_and_scheduler_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    marker = tmp_path / "interrupt"
    marker.touch()
    spec = digits_spec(tmp_path, "qt-resume")
    with pytest.raises(RuntimeError, match="interrupted on purpose"):
        es.run(spec, callbacks=[InterruptAfterResults(str(marker), 4)])
    experiment = tmp_path / "store" / "_ray" / "qt-resume"
    saved = sorted(experiment.glob("searcher-state-*.pkl"))
    assert saved and (experiment / "quicktune-surrogate" / "surrogate.safetensors").is_file()
    before = json.loads(saved[-1].read_text())["model"]["observations"]["trials"]
    assert sum(len(c["values"]) for _, c in before) >= 3
    result = es.resume(str(tmp_path / "store"), "qt-resume")
    assert not result.grid.errors
    check_paused_and_continued(reported(result.results()))  # digits trials, across the interruption
    after = json.loads(sorted(experiment.glob("searcher-state-*.pkl"))[-1].read_text())
    known = {t for t, _ in after["model"]["observations"]["trials"]}
    assert {t for t, _ in before} <= known  # the restored surrogate kept what it had seen


def test_freeze_thaw_pauses_at_each_step_and_stops_at_max_t() -> None:
    scheduler = FreezeThawScheduler(max_t=2, metric="score", mode="max", time_attr="fidelity/epoch")
    from efficient_search.testing.schedulers import Simulation

    sim = Simulation(scheduler, [{"x": 0.2}, {"x": 0.9}], lambda c, e: c["x"] * e).run()
    decisions = [(t, e, d) for t, e, d in sim.log]
    assert ("t000", 1, TrialScheduler.PAUSE) in decisions and ("t001", 1, TrialScheduler.PAUSE) in decisions
    assert all(e <= 2 for _, e, _ in decisions)
    assert set(sim.statuses().values()) == {Trial.TERMINATED}
