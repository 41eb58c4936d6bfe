"""One interface over tabular and surrogate benchmarks: a *blackbox* answers "what would training this
config on this instance up to this fidelity give, and what would it cost?" without training.

A blackbox has

- ``instances``: the tasks (data sets) it knows, by name;
- ``space()``: a Ray Tune param space over the *real* hyperparameters (no instance, no fidelity);
- ``fidelity``: the budget axis (name, range, and whether a run can be *continued* to a higher value,
  as with epochs, or must be restarted, as with a training-set fraction);
- ``evaluate(config, instance, fidelity)``: the blackbox's own outputs (``metric_names``) plus
  ``cost/seconds``, the simulated seconds of training that config from scratch up to that fidelity
  (cumulative over epochs for a continuable fidelity; a surrogate's prediction of it need not be
  monotone in the epoch, so a simulator charges ``max(0, difference)`` per step), and
  ``fidelity/<name>``, the fidelity the outputs stand for;
- ``metric`` and ``mode``: the default objective.

Example::

    bench = YahpoBenchmark("lcbench")
    config = {"batch_size": 64, "learning_rate": 1e-3, "max_dropout": 0.2, "max_units": 256,
              "momentum": 0.9, "num_layers": 3, "weight_decay": 1e-4}
    bench.evaluate(config, "3945", 10)
    # {"time": 41.61, "val_accuracy": 92.44, ..., "cost/seconds": 41.61, "fidelity/epoch": 10}
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from efficient_search.validate import is_number

COST_KEY = "cost/seconds"
FIDELITY_PREFIX = "fidelity/"
MODES = ("max", "min")
#: Fidelity names whose runs continue from where they stopped (a checkpoint after each step).
CONTINUABLE_FIDELITIES = ("epoch", "epochs")


@dataclass(frozen=True)
class Fidelity:
    """The budget axis of a blackbox."""

    #: The name the blackbox knows it by, e.g. ``"epoch"`` or ``"trainsize"``.
    name: str
    #: Smallest and largest value ``evaluate`` accepts.
    min: float
    max: float
    #: True if a run at a higher value continues the run at a lower one (epochs); False if it must
    #: restart from scratch (e.g. a training-set fraction), so freeze-thaw falls back to restarting.
    continuable: bool
    #: True if only whole numbers are valid values.
    integer: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min) and math.isfinite(self.max) and self.min <= self.max):
            raise ValueError(f"fidelity {self.name!r}: `min <= max` must hold with finite values, but got "
                             f"(min={self.min}, max={self.max}).")

    @property
    def key(self) -> str:
        """The result key, e.g. ``fidelity/epoch``."""
        return FIDELITY_PREFIX + self.name

    def check(self, value: Any) -> float | int:
        """``value`` if it is a valid fidelity (as int for an integer fidelity), else a ValueError."""
        if not is_number(value, numpy=True, finite=True):
            raise TypeError(f"`fidelity` ({self.name}) must be a finite number, but got {value!r} "
                            f"({type(value).__name__}).")
        if self.integer and float(value) != int(value):
            raise ValueError(f"`fidelity` ({self.name}) must be a whole number, but got {value!r}. Fix: "
                             f"round it, e.g. {round(float(value))}.")
        if not self.min <= value <= self.max:
            raise ValueError(f"`fidelity` ({self.name}) must be in [{self.min}, {self.max}], but got "
                             f"{value!r}.")
        return int(value) if self.integer else float(value)


def is_continuable(name: str) -> bool:
    """Whether a fidelity called ``name`` continues a run (epochs) rather than restarting it."""
    return name.lower() in CONTINUABLE_FIDELITIES


def check_instance(instance: Any, instances: Collection[str]) -> str:
    """``instance`` as one of ``instances`` (matched as text, so ``3945`` finds ``"3945"``)."""
    text = str(instance)
    if text not in instances:
        shown = ", ".join(list(instances)[:10]) + (", ..." if len(instances) > 10 else "")
        raise ValueError(f"`instance` {instance!r} is not an instance of this blackbox. Fix: pass one of "
                         f"`instances` ({len(instances)}: {shown}).")
    return text


def check_config(config: Any, names: Sequence[str]) -> None:
    """``config`` must be a mapping holding every hyperparameter in ``names``."""
    if not isinstance(config, Mapping):
        raise TypeError(f"`config` must be a dict of hyperparameters, but got {type(config).__name__}.")
    missing = [n for n in names if n not in config]
    if missing:
        raise ValueError(f"`config` lacks hyperparameters {missing}. Fix: pass every key of space(): "
                         f"{list(names)}.")


def check_lengths(configs: Sequence[Any], fidelities: Sequence[Any]) -> None:
    """``evaluate_many`` takes one fidelity per config."""
    if len(configs) != len(fidelities):
        raise ValueError(f"`fidelities` must hold one value per config, but got {len(fidelities)} "
                         f"fidelities for {len(configs)} configs. Fix: pass [fidelity] * len(configs).")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"`mode` must be 'max' or 'min', but got {mode!r}.")
    return mode


class Blackbox(ABC):
    """A tabular or surrogate benchmark; see the module docstring."""

    @property
    @abstractmethod
    def instances(self) -> list[str]:
        """The instances (tasks) ``evaluate`` accepts."""

    @abstractmethod
    def space(self) -> dict[str, Any]:
        """A Ray Tune param space over the real hyperparameters."""

    @property
    @abstractmethod
    def fidelity(self) -> Fidelity:
        """The budget axis."""

    @property
    @abstractmethod
    def metric_names(self) -> list[str]:
        """The outputs ``evaluate`` returns besides ``cost/seconds`` and ``fidelity/<name>``."""

    @property
    @abstractmethod
    def metric(self) -> str:
        """The default objective, one of ``metric_names``."""

    @property
    @abstractmethod
    def mode(self) -> str:
        """``"max"`` or ``"min"`` for :attr:`metric`."""

    @abstractmethod
    def evaluate(self, config: Mapping[str, Any], instance: str, fidelity: float) -> dict[str, Any]:
        """The outputs of ``config`` on ``instance`` at ``fidelity``, plus ``cost/seconds``."""

    def evaluate_many(self, configs: Sequence[Mapping[str, Any]], instance: str,
                      fidelities: Sequence[float]) -> list[dict[str, Any]]:
        """``[evaluate(c, instance, f) for c, f in zip(configs, fidelities)]``; a blackbox may answer
        the whole batch at once (a surrogate in one inference call)."""
        check_lengths(configs, fidelities)
        return [self.evaluate(c, instance, f) for c, f in zip(configs, fidelities, strict=True)]
