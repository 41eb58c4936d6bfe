"""The default search space of the digits image-classification task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune


def digits_space(task_options: Mapping[str, Any]) -> dict[str, Any]:
    """Depth and width of the residual CNN, and the optimiser's settings."""
    return {
        "depth": tune.randint(1, 5),
        "width": tune.choice([8, 16, 32]),
        "lr": tune.loguniform(1e-3, 3e-1),
        "weight_decay": tune.loguniform(1e-6, 1e-2),
        "batch_size": tune.choice([32, 64]),
    }
