"""EvolutionarySearcher beyond the contract: design, mutation, budgets, bins, quality, a real run."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume
from optuna.study._multi_objective import _fast_non_domination_rank
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from efficient_search.registry import make_searcher
from efficient_search.searchers import (
    EvolutionarySearcher,
    OptunaSearcher,
    crowding_distance,
    hypervolume_2d,
    non_dominated_sort,
)
from efficient_search.searchers.space import SearchSpace
from efficient_search.testing.searchers import SPACE, RandomSearchAdapter, assert_in_space, objective


def cost(config: dict[str, Any]) -> float:
    """A parameter-count-like cost of the contract space: 24 (smallest) .. 576 (largest)."""
    return float(config["c"] * config["d"] + config["nested"]["f"])


def run(searcher: Any, score: Callable[[dict[str, Any]], dict[str, float]], budget: int,
        prefix: str = "t") -> list[tuple[dict[str, Any], dict[str, float]]]:
    """Sequential suggest/complete; the (config, result) pairs."""
    done = []
    for i in range(budget):
        config = searcher.suggest(f"{prefix}{i}")
        result = score(config)
        searcher.on_trial_complete(f"{prefix}{i}", result)
        done.append((config, result))
    return done


def differing_axes(a: list[Any], b: list[Any]) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


# -- input errors ---------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"population_size": 1}, ValueError, "population_size"),
    ({"population_size": 4, "sample_size": 5}, ValueError, "sample_size <= population_size"),
    ({"metric": ["a", "b"], "mode": ["min"]}, ValueError, "same length"),
    ({"metric": "a", "mode": "best"}, ValueError, "'min' or 'max'"),
    ({"metric": ["a", "b"], "mode": ["min", "best"]}, ValueError, "'min' or 'max'"),
    ({"metric": "a", "mode": ["min"]}, TypeError, "list of metrics"),
    ({"metric": ["a", "b"], "mode": "min"}, TypeError, "one 'min'/'max' per metric"),
    ({"metric": ["a", "a"], "mode": ["min", "min"]}, ValueError, "distinct"),
    ({"max_cost": 10}, ValueError, "needs a `cost`"),
    ({"cost": cost, "min_cost": 10, "max_cost": 10}, ValueError, "min_cost < max_cost"),
    ({"cost": cost, "bins": [0, 100, 50]}, ValueError, "strictly increasing"),
    ({"cost": cost, "bins": [0]}, ValueError, "at least two"),
    ({"cost": cost, "bins": ["0", "1"]}, ValueError, "finite, strictly increasing"),
    ({"cost": "params"}, TypeError, "`cost` must be a function"),
    ({"cost": cost, "keep_bin": True}, ValueError, "needs cost `bins`"),
    ({"points_to_evaluate": {"a": 0.5}}, TypeError, "list of config dicts"),
    ({"points_to_evaluate": [{"a": 2.0}]}, ValueError, r"points_to_evaluate\[0\]: `a` must lie in"),
    ({"points_to_evaluate": [{"d": 17}]}, ValueError, r"`d` must be one of \[16, 32, 64\]"),
    ({"points_to_evaluate": [{"f": 8}]}, ValueError, "`f`, which is not in the search space"),
    ({"points_to_evaluate": [{"const": 8}]}, ValueError, "fixes it to 7"),
])
def test_bad_input_names_the_field_and_value(kwargs: dict[str, Any], error: type[Exception],
                                             match: str) -> None:
    with pytest.raises(error, match=match):
        EvolutionarySearcher(SPACE, **kwargs)


@pytest.mark.parametrize(("space", "error", "match"), [
    ({"x": tune.grid_search([1, 2])}, ValueError, "grid search"),
    ({"x": tune.sample_from(lambda _: 1)}, TypeError, "cannot be searched"),
    ({"x": tune.randn()}, TypeError, "Normal sampler"),
    ([1, 2], TypeError, "`space` must be"),
])
def test_unsupported_spaces_are_refused(space: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        EvolutionarySearcher(space, metric="score", mode="max")


def test_mode_alone_uses_rays_default_metric() -> None:
    assert EvolutionarySearcher(SPACE, mode="min").metric == "_metric"


# -- what is suggested ----------------------------------------------------------------------

def test_initial_design_order() -> None:
    point = {"a": 0.25, "e": "y"}  # partial: the rest is sampled
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", seed=0,
                                    points_to_evaluate=[point], population_size=8)
    configs = [searcher.suggest(f"t{i}") for i in range(8)]
    assert configs[0]["a"] == 0.25 and configs[0]["e"] == "y"  # type: ignore[index]
    assert configs[1:4] == [
        {"a": 1.0, "b": 0.1, "c": 8, "d": 64, "e": "y", "nested": {"f": 64}, "const": 7},  # largest
        {"a": 0.0, "b": 1e-4, "c": 1, "d": 16, "e": "x", "nested": {"f": 8}, "const": 7},  # smallest
        {"a": 0.5, "b": pytest.approx(math.sqrt(1e-4 * 1e-1)), "c": 4, "d": 32, "e": "x",
         "nested": {"f": 32}, "const": 7},  # middle: geometric for b, median choice for d
    ]
    for config in configs:
        assert_in_space(config)  # type: ignore[arg-type]
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 8


def test_largest_follows_numeric_value_not_list_order() -> None:
    space = {"d": tune.choice([64, 16, 32]), "e": tune.choice(["y", "x"])}
    searcher = EvolutionarySearcher(space, metric="score", mode="max", seed=0)
    assert [searcher.suggest(f"t{i}") for i in range(3)] == [
        {"d": 64, "e": "x"}, {"d": 16, "e": "y"}, {"d": 32, "e": "y"}]


def test_mutation_changes_exactly_one_axis() -> None:
    space = SearchSpace.from_ray({**SPACE, "g": tune.qloguniform(1e-3, 1.0, 1e-3),
                                  "h": tune.lograndint(1, 1000), "i": tune.choice([1])})
    rng = np.random.default_rng(0)
    for _ in range(500):
        genome = space.sample(rng)
        child = space.mutate(genome, rng)
        assert differing_axes(genome, child) == 1
        assert_in_space(space.decode(child), {**SPACE, "g": tune.qloguniform(1e-3, 1.0, 1e-3),
                                              "h": tune.lograndint(1, 1000),
                                              "i": tune.choice([1])})


def test_children_are_one_mutation_from_a_finished_config() -> None:
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", seed=1, population_size=6,
                                    sample_size=2)
    done = run(searcher, objective, 30)
    genomes = [list(searcher._space.encode_point(c, "")) for c, _ in done]  # type: ignore[union-attr]
    for i in range(6, 30):
        assert any(differing_axes(genomes[i], g) == 1 for g in genomes[:i]), i


def test_suggest_never_blocks_on_pending_trials() -> None:
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", seed=2, population_size=4)
    configs = [searcher.suggest(f"t{i}") for i in range(50)]
    assert all(c is not None for c in configs)
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 50
    assert searcher.suggest("t3") == configs[3]  # asked again: the same answer


def test_a_tiny_space_repeats_configs_once_exhausted() -> None:
    searcher = EvolutionarySearcher({"x": tune.choice([1, 2])}, metric="s", mode="max", seed=0,
                                    population_size=2, sample_size=1)
    done = run(searcher, lambda c: {"s": float(c["x"])}, 6)
    assert {c["x"] for c, _ in done} == {1, 2}


# -- budget and bins ------------------------------------------------------------------------

def test_budget_is_respected_by_every_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", seed=3, cost=cost,
                                    min_cost=50, max_cost=200, population_size=8, sample_size=3,
                                    points_to_evaluate=[{"c": 8, "d": 64}])  # costs >= 520
    with caplog.at_level(logging.WARNING):
        done = run(searcher, objective, 60)
    assert all(50 <= cost(c) <= 200 for c, _ in done)
    assert searcher.skipped_points == 3  # the point, the largest and the smallest config
    assert "skips a points_to_evaluate config" in caplog.text


def test_a_budget_that_excludes_the_space_says_so() -> None:
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", cost=cost, max_cost=10)
    with pytest.raises(RuntimeError, match="budget excludes"):
        searcher.suggest("t0")


def test_bins_stratify_the_random_initial_configs() -> None:
    bins = [0, 100, 200, 400, 600]
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", seed=4, cost=cost,
                                    bins=bins, population_size=11)
    configs = [searcher.suggest(f"t{i}") for i in range(11)]
    visited = [int(np.searchsorted(bins, cost(c), side="right")) - 1 for c in configs[3:]]
    assert visited == [0, 1, 2, 3, 0, 1, 2, 3]


def test_an_unreachable_bin_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    bins = [0, 10, 200, 600]  # nothing costs less than 24
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", seed=4, cost=cost,
                                    bins=bins, population_size=9, max_retries=200)
    with caplog.at_level(logging.WARNING):
        configs = [searcher.suggest(f"t{i}") for i in range(9)]
    visited = [int(np.searchsorted(bins, cost(c), side="right")) - 1 for c in configs[3:]]
    assert visited == [1, 2, 1, 2, 1, 2]
    assert "no config in cost bin [0.0, 10.0)" in caplog.text


def test_children_can_keep_their_parents_bin() -> None:
    bins = [0, 150, 600]
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", seed=5, cost=cost,
                                    bins=bins, keep_bin=True, population_size=6, sample_size=2)
    done = run(searcher, objective, 40)
    in_bin = [cost(c) < 150 for c, _ in done]
    space = searcher._space
    assert space is not None
    genomes = [space.encode_point(c, "") for c, _ in done]
    for i in range(6, 40):
        parents = [j for j in range(i) if differing_axes(genomes[i], genomes[j]) == 1]
        assert any(in_bin[j] == in_bin[i] for j in parents), i


def test_a_space_object_brings_its_cost_and_bins() -> None:
    class SubnetworkLikeSpace:
        param_space = SPACE
        bins = (0, 100, 200, 400, 600)

        @staticmethod
        def cost(config: dict[str, Any]) -> float:
            return cost(config)

    searcher = EvolutionarySearcher(SubnetworkLikeSpace(), metric="score", mode="max", seed=4,
                                    population_size=11, max_cost=500)
    configs = [searcher.suggest(f"t{i}") for i in range(11)]
    assert all(cost(c) <= 500 for c in configs)  # type: ignore[arg-type]
    visited = [int(np.searchsorted(SubnetworkLikeSpace.bins, cost(c), side="right")) - 1
               for c in configs[2:]]  # type: ignore[arg-type]
    assert visited == [0, 1, 2, 3, 0, 1, 2, 3, 0]


# -- results --------------------------------------------------------------------------------

def test_failed_trials_are_never_parents_nor_best() -> None:
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", seed=6, population_size=4,
                                    sample_size=4)
    bad = [searcher.suggest(f"bad{i}") for i in range(4)]
    searcher.on_trial_complete("bad0", {"score": 1e9}, error=True)  # errored, with a result
    searcher.on_trial_complete("bad1", {"score": math.nan})
    searcher.on_trial_complete("bad2", {"score": math.inf})
    searcher.on_trial_complete("bad3", {"score": True})  # not a number
    assert searcher.failed_trials == ["bad0", "bad1", "bad2", "bad3"]
    assert searcher.best() is None
    done = run(searcher, objective, 20)
    best = searcher.best()
    assert best is not None and best[1]["score"] == max(r["score"] for _, r in done)
    assert all(json.dumps(best[0]) != json.dumps(b) for b in bad)


def test_modes_min_and_max_mirror_each_other() -> None:
    as_max = run(EvolutionarySearcher(SPACE, metric="s", mode="max", seed=7, population_size=5),
                 lambda c: {"s": objective(c)["score"]}, 30)
    as_min = run(EvolutionarySearcher(SPACE, metric="s", mode="min", seed=7, population_size=5),
                 lambda c: {"s": -objective(c)["score"]}, 30)
    assert [c for c, _ in as_max] == [c for c, _ in as_min]


TARGET = [3, 11, 7, 14, 2, 9]
HARD_SPACE = {**{f"x{i}": tune.randint(0, 16) for i in range(6)}, "u": tune.uniform(0, 1),
              "w": tune.choice(["a", "b", "c", "d"])}


def hard_score(config: dict[str, Any]) -> dict[str, float]:
    distance = sum(abs(config[f"x{i}"] - t) for i, t in enumerate(TARGET))
    return {"score": -distance - 4 * abs(config["u"] - 0.62) - (config["w"] != "c")}


def test_evolution_beats_random_search_within_a_budget() -> None:
    def best(searcher: Any) -> float:
        return max(r["score"] for _, r in run(searcher, hard_score, 100))

    evolution = [best(EvolutionarySearcher(HARD_SPACE, metric="score", mode="max", seed=s,
                                           population_size=10, sample_size=3)) for s in range(5)]
    random = [best(RandomSearchAdapter(HARD_SPACE, seed=s)) for s in range(5)]
    # Measured: medians -6.4 (evolution) and -12.8 (random); the optimum is 0.
    assert np.median(evolution) > np.median(random) + 3


ZDT_SPACE = {f"x{i}": tune.uniform(0, 1) for i in range(5)}


def zdt1(config: dict[str, Any]) -> dict[str, float]:
    x = [config[f"x{i}"] for i in range(5)]
    g = 1 + 9 * sum(x[1:]) / 4
    return {"f1": x[0], "f2": g * (1 - math.sqrt(x[0] / g))}


def test_nsga2_front_is_non_dominated_and_beats_random_hypervolume() -> None:
    def hypervolume(done: list[tuple[dict[str, Any], dict[str, float]]]) -> float:
        values = np.array([[r["f1"], r["f2"]] for _, r in done])
        return hypervolume_2d(values[non_dominated_sort(values) == 0], (1.1, 11.0))

    evolution, random = [], []
    for seed in range(3):
        searcher = EvolutionarySearcher(ZDT_SPACE, metric=["f1", "f2"], mode=["min", "min"],
                                        seed=seed, population_size=20, sample_size=2)
        done = run(searcher, zdt1, 120)
        front = np.array([[r["f1"], r["f2"]] for _, r in searcher.pareto_front()])
        assert (non_dominated_sort(front) == 0).all()
        everything = np.array([[r["f1"], r["f2"]] for _, r in done])
        assert len(front) == (non_dominated_sort(everything) == 0).sum()
        evolution.append(hypervolume(done))
        random.append(hypervolume(run(RandomSearchAdapter(ZDT_SPACE, seed=seed), zdt1, 120)))
    # Measured: medians 11.6 (evolution) and 9.8 (random); the best possible is about 11.77.
    assert np.median(evolution) > np.median(random) + 1.0


def test_best_is_for_one_metric_only() -> None:
    searcher = EvolutionarySearcher(SPACE, metric=["score", "size"], mode=["max", "min"])
    with pytest.raises(ValueError, match="pareto_front"):
        searcher.best()


# -- Pareto helpers -------------------------------------------------------------------------

def test_pareto_helpers_match_optuna() -> None:
    rng = np.random.default_rng(0)
    for n, m in [(1, 2), (30, 2), (60, 3), (40, 2)]:
        values = rng.integers(0, 6, size=(n, m)).astype(float)  # ties on purpose
        assert (non_dominated_sort(values) == _fast_non_domination_rank(values)).all()
    points = rng.uniform(0, 1, size=(50, 2))
    front = points[non_dominated_sort(points) == 0]
    assert hypervolume_2d(points, (1.0, 1.0)) == pytest.approx(
        compute_hypervolume(front, np.array([1.0, 1.0])))


def test_crowding_distance_by_hand() -> None:
    losses = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0]])
    assert crowding_distance(losses).tolist() == [math.inf, 3 / 3 + 3 / 3, math.inf]
    assert hypervolume_2d([[1, 4], [2, 2], [3, 3], [4, 1]], (5, 5)) == 11.0


# -- state ----------------------------------------------------------------------------------

def _half(searcher: EvolutionarySearcher) -> None:
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        if i < 4:
            searcher.on_trial_complete(f"t{i}", objective(config))  # type: ignore[arg-type]


def _rest(searcher: EvolutionarySearcher) -> list[Any]:
    for i in (4, 5):
        searcher.on_trial_complete(f"t{i}", {"score": float(i)})
    return [c for c, _ in run(searcher, objective, 10, prefix="r")]


def test_state_restores_without_a_space_when_json_can_carry_it() -> None:
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max", seed=8, population_size=4)
    _half(searcher)
    fresh = EvolutionarySearcher(population_size=4)  # as Tuner.restore without param_space
    fresh.set_state(json.loads(json.dumps(searcher.get_state())))
    assert _rest(fresh) == _rest(searcher)


def test_state_with_tuple_categories_waits_for_the_space() -> None:
    space = {**SPACE, "shape": tune.choice([(1, 2), (3, 4)])}
    searcher = EvolutionarySearcher(space, metric="score", mode="max", seed=9, population_size=4)
    _half(searcher)
    state = json.loads(json.dumps(searcher.get_state()))
    fresh = EvolutionarySearcher(metric="score", mode="max", population_size=4)
    fresh.set_state(state)
    with pytest.raises(RuntimeError, match="no search space"):
        fresh.suggest("t99")
    with pytest.raises(ValueError, match="another search space"):
        EvolutionarySearcher(SPACE, metric="score", mode="max").set_state(state)
    assert fresh.set_search_properties(None, None, space) is True
    assert _rest(fresh) == _rest(searcher)
    assert all(isinstance(c["shape"], tuple) for c in _rest(fresh))


def test_state_refuses_another_metric() -> None:
    searcher = EvolutionarySearcher(SPACE, metric="score", mode="max")
    with pytest.raises(ValueError, match="metric='score'"):
        EvolutionarySearcher(SPACE, metric="loss", mode="max").set_state(searcher.get_state())


# -- speed ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("metric", "mode", "limit_ms"), [
    ("score", "max", 5.0), (["score", "size"], ["max", "min"], 20.0)])
def test_suggest_and_complete_stay_cheap_at_1000_observations(metric: Any, mode: Any,
                                                              limit_ms: float) -> None:
    searcher = EvolutionarySearcher(SPACE, metric=metric, mode=mode, seed=0)
    run(searcher, objective, 1000)
    start = time.perf_counter()
    for i in range(100):
        config = searcher.suggest(f"m{i}")
        searcher.on_trial_complete(f"m{i}", objective(config))  # type: ignore[arg-type]
    per_call_ms = (time.perf_counter() - start) * 10
    # Measured about 0.04 ms (one metric) and 0.2 ms (two); the limits only catch blow-ups.
    assert per_call_ms < limit_ms


# -- registry -------------------------------------------------------------------------------

def test_registry_builds_evolution_and_optuna() -> None:
    searcher = make_searcher("evolution", seed=3, options={
        "population_size": 8, "sample_size": 2, "cost": cost, "max_cost": 300,
        "bins": [0, 150, 300]})
    assert isinstance(searcher, EvolutionarySearcher)
    assert searcher.set_search_properties("score", "max", dict(SPACE)) is True
    assert all(cost(c) <= 300 for c, _ in run(searcher, objective, 12))
    for sampler in ("tpe", "nsga2", "random"):
        assert isinstance(make_searcher("optuna", seed=0, options={"sampler": sampler}),
                          OptunaSearcher)
    with pytest.raises(ValueError, match="Valid samplers: tpe, nsga2, random"):
        make_searcher("optuna", seed=0, options={"sampler": "cmaes"})


# -- a real Tune run ------------------------------------------------------------------------

def sleepy_trainable(config: dict[str, Any]) -> None:
    """Waits until four trials have started (a barrier), then sleeps a second and reports."""
    folder = config["barrier"]
    open(os.path.join(folder, f"{os.getpid()}-{time.time_ns()}"), "w").close()
    deadline = time.time() + 60
    while len(os.listdir(folder)) < 4 and time.time() < deadline:
        time.sleep(0.05)
    start = time.time()
    time.sleep(1.0)
    tune.report({**objective(config), "start": start, "end": time.time()})


def test_a_real_tune_run_runs_four_trials_at_once(ray_session: None, tmp_path: Any) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    searcher = EvolutionarySearcher(metric="score", mode="max", seed=0, population_size=4,
                                    sample_size=2)
    tuner = tune.Tuner(
        sleepy_trainable,
        param_space={**SPACE, "barrier": str(barrier)},
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, 4), num_samples=8,
                                    max_concurrent_trials=4, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), verbose=0),
    )
    results = tuner.fit()
    assert results.num_errors == 0 and len(results) == 8
    spans = [(r.metrics["start"], r.metrics["end"]) for r in results]
    overlap = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert overlap >= 4
    assert len(searcher.pareto_front()) >= 1 and len(searcher._history) == 8
