"""The searcher contract suite over our searcher and Ray's references (what each skips and why:
see the docstring of ``efficient_search.testing.searchers``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.utils.util import flatten_dict, unflatten_dict

from efficient_search.ray_compat import optuna_search_study
from efficient_search.searchers import EvolutionarySearcher, OptunaSearcher
from efficient_search.testing.searchers import (
    SCORE,
    SIZE,
    RandomSearchAdapter,
    SearcherContract,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TestEvolution(SearcherContract):
    @staticmethod
    def make(space: Mapping[str, Any] | None, metric: Any, mode: Any, seed: int,
             points_to_evaluate: list[dict[str, Any]] | None = None) -> Searcher:
        # A small population, so that children appear within the suite's few trials.
        return EvolutionarySearcher(space, metric=metric, mode=mode, seed=seed,
                                    points_to_evaluate=points_to_evaluate, population_size=4,
                                    sample_size=2)

    @staticmethod
    def best_configs(searcher: Searcher) -> list[dict[str, Any]] | None:
        assert isinstance(searcher, EvolutionarySearcher)
        return [config for config, _ in searcher.pareto_front()]


class TestEvolutionTwoObjectives(TestEvolution):
    metric = [SCORE, SIZE]
    mode = ["max", "min"]
    works_under_repeater = False


def _optuna(space: Mapping[str, Any] | None, metric: Any, mode: Any, seed: int,
            points: list[dict[str, Any]] | None, sampler: optuna.samplers.BaseSampler | None
            ) -> Searcher:
    # OptunaSearch wants flat points ("nested/f") holding only the sampled values.
    flat = [{k: v for k, v in flatten_dict(p, delimiter="/").items() if k != "const"}
            for p in points or []]
    searcher = OptunaSearch(metric=metric, mode=mode, points_to_evaluate=flat or None,
                            sampler=sampler, seed=None if sampler else seed)
    if space is not None:
        searcher.set_search_properties(None, None, dict(space))
    return searcher


def _optuna_best(searcher: Searcher) -> list[dict[str, Any]]:
    assert isinstance(searcher, OptunaSearch)
    return [unflatten_dict(t.params) for t in optuna_search_study(searcher).best_trials]


class TestRayOptunaTPE(SearcherContract):
    ignores_unknown_trials = False
    rejects_infinite = False
    state_is_plain_data = False
    returns_full_configs = False

    @staticmethod
    def make(space: Mapping[str, Any] | None, metric: Any, mode: Any, seed: int,
             points_to_evaluate: list[dict[str, Any]] | None = None) -> Searcher:
        return _optuna(space, metric, mode, seed, points_to_evaluate, None)

    @staticmethod
    def best_configs(searcher: Searcher) -> list[dict[str, Any]] | None:
        return _optuna_best(searcher)


class TestOptunaTPE(SearcherContract):
    """Our Optuna searcher: the whole contract, its state being Optuna's journal."""

    sampler = "tpe"

    @classmethod
    def make(cls, space: Mapping[str, Any] | None, metric: Any, mode: Any, seed: int,
             points_to_evaluate: list[dict[str, Any]] | None = None) -> Searcher:
        # Constants are not sampled: Tune merges them back, as for Ray's OptunaSearch.
        points = [{k: v for k, v in p.items() if k != "const"} for p in points_to_evaluate or []]
        options = {"population_size": 4} if cls.sampler == "nsga2" else {}
        return OptunaSearcher(space, metric=metric, mode=mode, seed=seed, sampler=cls.sampler,
                              points_to_evaluate=points or None, **options)

    returns_full_configs = False

    @staticmethod
    def best_configs(searcher: Searcher) -> list[dict[str, Any]] | None:
        assert isinstance(searcher, OptunaSearcher)
        return searcher.best_configs()


class TestOptunaNSGA2(TestOptunaTPE):
    """NSGA-II on two objectives: Optuna 5.1's sampler cannot be pickled, its journal can."""

    sampler = "nsga2"
    metric = [SCORE, SIZE]
    mode = ["max", "min"]
    works_under_repeater = False


class TestOptunaRandom(TestOptunaTPE):
    sampler = "random"


class TestRayRandom(SearcherContract):
    needs_metric_and_space = False
    refuses_second_space = False
    learns_from_results = False
    restores_state = False
    state_is_plain_data = False
    works_under_concurrency_limiter = False
    works_under_repeater = False
    survives_tuner_restore = False

    @staticmethod
    def make(space: Mapping[str, Any] | None, metric: Any, mode: Any, seed: int,
             points_to_evaluate: list[dict[str, Any]] | None = None) -> Searcher:
        return RandomSearchAdapter(space, points_to_evaluate=points_to_evaluate, seed=seed)
