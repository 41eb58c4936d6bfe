"""The default search space of the SAM fine-tuning task, after QTT-SEG's.

Optimiser (AdamW learning rate and weight decay, log scale), LoRA on the image encoder (on/off,
rank, dropout), augmentation flags (horizontal/vertical flips, 90-degree rotations) and the
learning-rate scheduler with its parameters. The space is flat: a scheduler's parameters and the
LoRA settings are sampled always and ignored where inactive (``min_lr_ratio`` only acts with
``cosine``, ``step_epochs``/``gamma`` with ``step``, ``lora_*`` with ``lora: true``), which every
searcher handles and a surrogate can still learn from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune

SAM_SCHEDULERS = ["cosine", "step", "constant"]


def sam_space(task_options: Mapping[str, Any]) -> dict[str, Any]:
    """QTT-SEG's hyperparameters; ``step_epochs`` never exceeds the task's ``epochs``."""
    epochs = int(task_options.get("epochs", 4))
    return {
        "lr": tune.loguniform(1e-5, 1e-2),
        "weight_decay": tune.loguniform(1e-6, 1e-1),
        "lora": tune.choice([True, False]),
        "lora_rank": tune.choice([2, 4, 8, 16, 32]),
        "lora_dropout": tune.uniform(0.0, 0.3),
        "hflip": tune.choice([True, False]),
        "vflip": tune.choice([True, False]),
        "rot90": tune.choice([True, False]),
        "scheduler": tune.choice(SAM_SCHEDULERS),
        "warmup_fraction": tune.choice([0.0, 0.05, 0.1]),
        "min_lr_ratio": tune.choice([0.0, 0.01, 0.1]),
        "step_epochs": tune.randint(1, max(epochs, 1) + 1),
        "gamma": tune.uniform(0.1, 0.9),
    }
