"""Searchers: what to try next. Each is a Ray Tune ``Searcher`` that passes the contract suite
in :mod:`efficient_search.testing.searchers`."""

from efficient_search.searchers.evolution import EvolutionarySearcher
from efficient_search.searchers.optuna_study import OptunaSearcher
from efficient_search.searchers.pareto import crowding_distance, hypervolume_2d, non_dominated_sort
from efficient_search.searchers.quicktune import QuickTuneSearcher

__all__ = ["EvolutionarySearcher", "OptunaSearcher", "QuickTuneSearcher", "crowding_distance",
           "hypervolume_2d", "non_dominated_sort"]
