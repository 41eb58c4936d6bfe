"""The default search space of the pretraining task: AdamW and distillation settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune


def pretrain_space(task_options: Mapping[str, Any]) -> dict[str, Any]:
    """Peak learning rate and weight decay; the distillation weights when a teacher teaches."""
    space: dict[str, Any] = {"lr": tune.loguniform(1e-3, 1e-2), "weight_decay": tune.choice([0.0, 0.05, 0.1])}
    if task_options.get("distill", "none") != "none":
        space["alpha"] = tune.uniform(0.1, 0.7)
        space["temperature"] = tune.choice([1.0, 2.0, 5.0, 10.0])
    return space
