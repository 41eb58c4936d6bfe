"""Sizes and training settings of the surrogate, saved beside its weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from efficient_search.validate import is_int, is_number


@dataclass(frozen=True)
class SurrogateSettings:
    """Network sizes and optimisation settings; the defaults meta-train on Quick-Tune in about a minute
    on 2 CPU cores and predict 500 candidates in a few milliseconds."""

    #: Width of the feature extractor's hidden layers.
    hidden: int = 64
    #: Number of deep-kernel features the GP works on.
    features: int = 16
    #: Channels of the learning-curve encoder's convolutions.
    curve_channels: int = 8
    #: Width of the cost model's hidden layers.
    cost_hidden: int = 32
    #: Gradient steps of meta-training (performance model; each step is one data set's batch).
    meta_train_steps: int = 1000
    #: Points per meta-training batch (all from one data set).
    batch_size: int = 128
    #: Adam learning rate of meta-training.
    learning_rate: float = 3e-3
    #: Cap on the (run, budget, prefix) points sampled from the meta-dataset for training.
    max_train_points: int = 20_000
    #: Weight of the squared error of the GP's mean function, beside the marginal likelihood: the mean
    #: is the prediction for a task with no observations yet.
    mean_weight: float = 1.0
    #: Gradient steps of the cost model's meta-training.
    cost_train_steps: int = 800
    #: Gradient steps when fine-tuning on a task's observations (0: only condition the GP on them).
    #: Off by default: measured on held-out Quick-Tune data sets with 15 runs seen up to epoch 10,
    #: 30 steps fit the seen runs better but worsen predictions for unseen configs at epoch 50.
    fine_tune_steps: int = 0
    #: Adam learning rate of fine-tuning.
    fine_tune_learning_rate: float = 1e-3
    #: Cap on the task observations the GP conditions on (the latest step of each run is kept first).
    max_observations: int = 500

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if not is_int(value):
                    raise TypeError(f"`{f.name}` must be an integer, but got {value!r}.")
                minimum = 0 if f.name == "fine_tune_steps" else 1
                if value < minimum:
                    raise ValueError(f"`{f.name}` must be >= {minimum}, but got {value}.")
            else:
                if not is_number(value):
                    raise TypeError(f"`{f.name}` must be a number, but got {value!r}.")
                if value < 0 or (value == 0 and "learning_rate" in f.name):
                    raise ValueError(f"`{f.name}` must be {'> 0' if 'learning_rate' in f.name else '>= 0'}, "
                                     f"but got {value}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> SurrogateSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ValueError(f"unknown surrogate settings {unknown}. Known: {sorted(known)}.")
        return cls(**dict(state))
