"""Pareto fronts for minimisation: non-dominated sorting, crowding distance, 2-D hypervolume.

Plain numpy on an ``(n, m)`` array of losses (n points, m objectives, all minimised)::

    losses = np.array([[1, 4], [2, 2], [3, 3], [4, 1]])
    non_dominated_sort(losses)         # array([0, 0, 1, 0])
    crowding_distance(losses[[0, 1, 3]])  # array([inf, 2., inf])
    hypervolume_2d(losses, reference=(5, 5))  # 11.0

Tested for parity with Optuna's private implementations; written here because those are private
and pymoo/botorch would be heavy dependencies for forty lines of numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def _as_losses(losses: ArrayLike) -> np.ndarray:
    values = np.asarray(losses, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"`losses` must be a 2-D array (points, objectives), but got shape "
                         f"{values.shape}.")
    return values


def dominance_matrix(losses: ArrayLike) -> np.ndarray:
    """``d[i, j]`` is True when point i dominates point j (no worse anywhere, better somewhere)."""
    values = _as_losses(losses)
    n = len(values)
    no_worse = np.ones((n, n), dtype=bool)
    better = np.zeros((n, n), dtype=bool)
    for column in values.T:  # one objective at a time: far faster than reducing an (n, n, m) array
        no_worse &= column[:, None] <= column[None, :]
        better |= column[:, None] < column[None, :]
    return no_worse & better


def non_dominated_sort(losses: ArrayLike) -> np.ndarray:
    """Front index of every point: 0 for the non-dominated ones, 1 for those next, and so on."""
    dominates = dominance_matrix(losses)
    n = len(dominates)
    ranks = np.full(n, -1, dtype=int)
    dominated_by = dominates.sum(axis=0)  # (n,) how many points dominate each one
    front = np.flatnonzero(dominated_by == 0)
    rank = 0
    while front.size:
        ranks[front] = rank
        dominated_by = dominated_by - dominates[front].sum(axis=0)
        dominated_by[ranks >= 0] = -1  # placed already
        front = np.flatnonzero(dominated_by == 0)
        rank += 1
    return ranks


def crowding_distance(losses: ArrayLike) -> np.ndarray:
    """NSGA-II crowding distance within one front: boundary points get ``inf``."""
    values = _as_losses(losses)
    n, m = values.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(values[:, k], kind="stable")
        column = values[order, k]
        span = column[-1] - column[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def hypervolume_2d(losses: ArrayLike, reference: Sequence[float]) -> float:
    """Area dominated by the points and bounded by ``reference`` (both objectives minimised)."""
    values = _as_losses(losses)
    if values.shape[1] != 2 or len(reference) != 2:
        raise ValueError(f"hypervolume_2d needs 2 objectives, but got losses of shape "
                         f"{values.shape} and reference {tuple(reference)}.")
    ref_x, ref_y = float(reference[0]), float(reference[1])
    inside = values[(values[:, 0] < ref_x) & (values[:, 1] < ref_y)]
    order = np.lexsort((inside[:, 1], inside[:, 0]))  # by x, then y
    area, lowest_y = 0.0, ref_y
    for x, y in inside[order]:
        if y < lowest_y:  # a new horizontal strip from x to the reference
            area += (ref_x - x) * (lowest_y - y)
            lowest_y = y
    return float(area)
