"""A hand-chosen sub-network shape of a given size: the baseline a searched shape must beat.

The rule a person would pick without searching, in two steps:

1. every width axis (embedding, MLP, head size) at the same step ``k/8`` of the super-network's
   (the search space's grid), every attention head and key/value group kept;
2. the depth whose parameter count (embeddings included) is nearest ``target``.

Of the steps ``k`` whose depth lands in ``[low, high]``, the one closest to the super-network's
depth-to-width ratio (depth nearest ``k/8`` of its layers) wins.
"""

from __future__ import annotations

import math
from typing import Any

from efficient_search.search_spaces.subnetwork import head_size_grid, subnetwork_from_config, width_grid
from efficient_search.subnetwork import SuperDims, count_parameters

#: Values per width axis, as the searched space has them (``SubnetworkSpace.steps``).
STEPS = 8


def widths_at(dims: SuperDims, step: int) -> dict[str, Any]:
    """Embedding, MLP width and head size at grid step ``step`` of ``STEPS``."""
    def at(grid: list[int]) -> int:
        return grid[max(0, round(step / STEPS * len(grid)) - 1)]

    shape = {"intermediate_size": at(width_grid(dims.intermediate_size, STEPS)),
             "head_size": at(head_size_grid(dims, STEPS))}
    if dims.arch == "llama":
        shape["n_embd"] = at(width_grid(dims.n_embd, STEPS))
    return shape


def parameters(dims: SuperDims, shape: dict[str, Any]) -> int:
    return count_parameters(dims, subnetwork_from_config(shape, dims))


def proportional_shape(dims: SuperDims, target: float, low: float, high: float) -> dict[str, Any]:
    """The hand-chosen shape (module docstring) with parameters nearest ``target`` in ``[low, high]``.

    Raises ``ValueError`` naming the range when no shape lands in it.
    """
    best: tuple[float, dict[str, Any]] | None = None
    for step in range(1, STEPS + 1):
        shapes = [{"n_layer": depth, **widths_at(dims, step)} for depth in range(1, dims.n_layer + 1)]
        fitting = [s for s in shapes if low <= parameters(dims, s) <= high]
        if not fitting:
            continue
        shape = min(fitting, key=lambda s: abs(parameters(dims, s) - target))
        distortion = abs(math.log(shape["n_layer"] / max(step / STEPS * dims.n_layer, 1.0)))
        if best is None or distortion < best[0]:
            best = (distortion, shape)
    if best is None:
        raise ValueError(f"No hand-chosen shape of this super-network has {low:,.0f}-{high:,.0f} parameters. "
                         "Fix: a wider range.")
    return best[1]
