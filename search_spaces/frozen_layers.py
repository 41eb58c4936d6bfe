"""The training-hyperparameter space of layer-freezing HPO: the architecture stays fixed.

The Frozen Layers study tunes how a fixed network is trained: learning rate, weight decay, Adam
betas, optimiser and batch size. ``FROZEN_LAYERS_GRID`` holds the values as a grid (what the
benchmark trains at every fidelity); ``frozen_layers_space`` samples the same ranges.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from ray import tune

FROZEN_LAYERS_GRID: dict[str, list[Any]] = {
    "optimizer": ["adamw", "sgd"],
    "lr": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "weight_decay": [0.0, 1e-2],
    "beta1": [0.9],
    "beta2": [0.95, 0.999],
    "batch_size": [32, 64],
}


def frozen_layers_space(task_options: Mapping[str, Any]) -> dict[str, Any]:
    """Random-search form of the grid, over the same ranges."""
    grid = FROZEN_LAYERS_GRID
    return {
        "optimizer": tune.choice(grid["optimizer"]),
        "lr": tune.loguniform(min(grid["lr"]), max(grid["lr"])),
        "weight_decay": tune.choice(grid["weight_decay"]),
        "beta1": tune.uniform(0.85, 0.95),
        "beta2": tune.choice(grid["beta2"]),
        "batch_size": tune.choice(grid["batch_size"]),
    }


def grid_configs(grid: Mapping[str, list[Any]] = FROZEN_LAYERS_GRID) -> Iterator[dict[str, Any]]:
    """Every combination of the grid, in a fixed order."""
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))
