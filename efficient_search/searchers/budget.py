"""Which configs a cost budget allows, and which cost bin each one falls into."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from efficient_search.validate import check_number

Cost = Callable[[dict[str, Any]], float]


class CostBudget:
    """``cost(config)`` with optional bounds and bin edges; without a cost every config is allowed.

    >>> budget = CostBudget(lambda c: c["width"] ** 2, max_cost=100, bins=[0, 10, 100])
    >>> budget.allows(81.0), budget.bin_of(81.0)
    (True, 1)
    """

    def __init__(self, cost: Cost | None = None, *, min_cost: float | None = None,
                 max_cost: float | None = None, bins: Sequence[float] | None = None,
                 keep_bin: bool = False):
        self.edges = _check_budget(cost, max_cost, min_cost, bins, keep_bin)
        self.cost = cost
        self.min_cost = min_cost
        self.max_cost = max_cost
        self.keep_bin = keep_bin

    @property
    def num_bins(self) -> int:
        return max(len(self.edges) - 1, 0)

    def cost_of(self, config: dict[str, Any]) -> float | None:
        return None if self.cost is None else float(self.cost(config))

    def allows(self, cost: float | None) -> bool:
        if cost is None:
            return True
        return (math.isfinite(cost) and (self.min_cost is None or cost >= self.min_cost)
                and (self.max_cost is None or cost <= self.max_cost))

    def bin_of(self, cost: float | None) -> int | None:
        """Bin ``i`` holds costs in ``[edges[i], edges[i + 1])``, the last one its upper edge too."""
        if not self.edges or cost is None or not self.edges[0] <= cost <= self.edges[-1]:
            return None
        return min(int(np.searchsorted(self.edges, cost, side="right")) - 1, self.num_bins - 1)

    def excluded(self, costs: list[float], draws: int) -> str:
        """The error message when ``draws`` random configs all broke the budget."""
        seen = f"; the draws cost between {min(costs):.4g} and {max(costs):.4g}" if costs else ""
        return (f"No config within the cost budget (min_cost={self.min_cost}, "
                f"max_cost={self.max_cost}) in {draws} random draws{seen}: the budget excludes "
                "(almost) all of the search space. Fix: widen `max_cost`/`min_cost`, or raise "
                "`max_retries`.")


def _check_budget(cost: Any, max_cost: Any, min_cost: Any, bins: Any, keep_bin: bool) -> list[float]:
    """Validate the cost options; return the bin edges (empty without bins)."""
    if cost is not None and not callable(cost):
        raise TypeError(f"`cost` must be a function config -> float, but got {cost!r}.")
    for name, value in (("max_cost", max_cost), ("min_cost", min_cost), ("bins", bins)):
        if value is not None and cost is None:
            raise ValueError(f"`{name}` needs a `cost`: pass cost=<function config -> float> "
                             "(or a space that has a `cost` method).")
        if name != "bins":
            check_number(name, value, optional=True, expected="a finite number")
    if max_cost is not None and min_cost is not None and not min_cost < max_cost:
        raise ValueError(f"`min_cost < max_cost` must hold, but got (min_cost={min_cost}, "
                         f"max_cost={max_cost}).")
    if keep_bin and bins is None:
        raise ValueError("`keep_bin=True` needs cost `bins`. Fix: pass bins=[edge, edge, ...].")
    if bins is None:
        return []
    values = np.asarray([] if isinstance(bins, (str, bytes)) else bins)
    numbers = values.ndim == 1 and np.issubdtype(values.dtype, np.number)
    edges = [float(b) for b in values] if numbers else []  # also numpy arrays and tuples
    if len(edges) < 2 or not all(math.isfinite(b) for b in edges) or any(
            low >= high for low, high in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"`bins` must be at least two finite, strictly increasing cost edges, "
                         f"but got {bins!r}. Fix: e.g. bins=[0, 1e6, 1e7, 1e8].")
    return edges
