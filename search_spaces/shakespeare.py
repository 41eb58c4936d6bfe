"""The default search space of the Shakespeare character-level language-modelling task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune


def shakespeare_space(task_options: Mapping[str, Any]) -> dict[str, Any]:
    """Model shape and AdamW settings of the small GPT-2."""
    return {
        "n_layer": tune.choice([2, 4]),
        "n_embd": tune.choice([32, 64]),
        "n_head": 4,
        "lr": tune.loguniform(3e-4, 1e-2),
        "weight_decay": tune.loguniform(1e-4, 1e-1),
        "batch_size": tune.choice([16, 32]),
    }
