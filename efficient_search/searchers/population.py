"""Who may become a parent: aging (regularized) evolution and steady-state NSGA-II.

Both keep indices into the searcher's history and losses to minimise; both choose a parent by a
tournament among ``sample_size`` random members. Plain Python and numpy, no Ray.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from efficient_search.searchers.pareto import crowding_distance, non_dominated_sort


class AgingPopulation:
    """Regularized evolution (Real et al. 2019): the last ``size`` finished members, oldest out first.

    >>> population = AgingPopulation(size=2)
    >>> for index, loss in enumerate([3.0, 1.0, 2.0]):
    ...     population.add(index, [loss])
    >>> population.members  # member 0 aged out
    [1, 2]
    """

    def __init__(self, size: int):
        self.size = size
        self._members: deque[tuple[int, float]] = deque(maxlen=size)

    @property
    def members(self) -> list[int]:
        return [index for index, _ in self._members]

    def __len__(self) -> int:
        return len(self._members)

    def add(self, index: int, losses: Sequence[float]) -> None:
        self._members.append((index, float(losses[0])))

    def select_parent(self, rng: np.random.Generator, sample_size: int) -> int:
        """The best of ``sample_size`` members drawn without replacement."""
        drawn = rng.choice(len(self._members), size=min(sample_size, len(self._members)),
                           replace=False)
        best = min(drawn, key=lambda i: (self._members[i][1], i))
        return self._members[int(best)][0]


class ParetoPopulation:
    """Steady-state NSGA-II: after each arrival keep the ``size`` best by front, then crowding.

    Sorting only ``size + 1`` points per arrival keeps the cost independent of the history length.
    """

    def __init__(self, size: int):
        self.size = size
        self._indices: list[int] = []
        self._losses = np.empty((0, 0))
        self._rank = np.empty(0, dtype=int)
        self._crowding = np.empty(0)

    @property
    def members(self) -> list[int]:
        return list(self._indices)

    def __len__(self) -> int:
        return len(self._indices)

    def add(self, index: int, losses: Sequence[float]) -> None:
        row = np.asarray(losses, dtype=float)[None, :]
        values = row if not self._indices else np.vstack([self._losses, row])
        indices = [*self._indices, index]
        rank, crowding = _rank_and_crowding(values)
        if len(indices) > self.size:
            # Worst last: higher front, then smaller crowding, then older.
            order = np.lexsort((np.arange(len(indices)), -crowding, rank))
            keep = np.sort(order[: self.size])
            values, indices = values[keep], [indices[i] for i in keep]
            rank, crowding = _rank_and_crowding(values)
        self._indices, self._losses, self._rank, self._crowding = indices, values, rank, crowding

    def select_parent(self, rng: np.random.Generator, sample_size: int) -> int:
        """Tournament: lowest front wins, ties go to the less crowded member."""
        drawn = rng.choice(len(self._indices), size=min(sample_size, len(self._indices)),
                           replace=False)
        best = min(drawn, key=lambda i: (self._rank[i], -self._crowding[i], i))
        return self._indices[int(best)]


def _rank_and_crowding(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rank = non_dominated_sort(values)
    crowding = np.zeros(len(values))
    for front in np.unique(rank):
        members = np.flatnonzero(rank == front)
        crowding[members] = crowding_distance(values[members])
    return rank, crowding
