"""Recorded learning curves (the Quick-Tune meta-dataset, QTT-SEG-layout CSVs, any
:class:`~efficient_search.surrogate.MetaDataset`) as a :class:`Blackbox` over the real hyperparameters.

**Space.** Derived from the values recorded over all instances: a string or bool column is a
``tune.choice`` of its values; a numeric column is a range over its recorded minimum and maximum
(``tune.randint``/``lograndint`` for integer columns, ``tune.uniform``/``loguniform`` otherwise),
log-scaled where its values are all positive and span at least ``LOG_RATIO`` (20x, as in the
surrogate's encoder); a column with one value is a constant. With ``choices_up_to=k``, a numeric
column with at most ``k`` distinct values is a ``tune.choice`` of them instead (grids such as
Quick-Tune's weight decay {0, 1e-5, ..., 0.1}, where a linear range rarely reaches the small values).

**Lookup.** A proposed config is answered by the recorded run of that instance *nearest* to it, the
same lookup for every method. Each numeric value is log-transformed where its axis is log-scaled and
normalised by the recorded range to [0, 1]; the squared distance to a row is the sum of squared
differences over numeric hyperparameters plus 1 per categorical hyperparameter that differs (a
recorded NaN counts as 1). Rows within 1e-12 of the smallest distance are ties, broken by a numpy
Generator seeded with ``(seed, hash of instance and config)``: the same config always gets the same
row under one seed, and different seeds may break ties differently.

**Outputs.** The row's metric at the requested budget step; a run recorded for fewer steps is held at
its last one (``fidelity/<name>`` says which step the value stands for). ``cost/seconds`` is the
recorded seconds of that run summed up to that step.

Example::

    bench = TableBenchmark.from_path("../shared/data/quicktune-mtlbm-extended", choices_up_to=8)
    config = {name: domain.sample() if hasattr(domain, "sample") else domain
              for name, domain in bench.space().items()}
    bench.evaluate(config, "FLW", 10)   # {"accuracy": ..., "cost/seconds": ..., "fidelity/epoch": 10}
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from ray import tune

from efficient_search.blackbox.base import (
    COST_KEY,
    Blackbox,
    Fidelity,
    check_config,
    check_instance,
    check_lengths,
    check_mode,
    is_continuable,
)
from efficient_search.surrogate.encoding import LOG_RATIO
from efficient_search.surrogate.meta_dataset import MetaDataset
from efficient_search.validate import is_number

TIE_TOLERANCE = 1e-12
#: Proposals this close to a bound (relative to the range) are within it: log sampling overshoots.
BOUND_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Axis:
    """One hyperparameter of the table: how it is searched and how distance is measured on it."""

    name: str
    numeric: bool
    choices: tuple[Any, ...] = ()  # categorical values, or the numeric grid if searched as a choice
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False

    def domain(self) -> Any:
        if self.choices:
            return tune.choice(list(self.choices))
        if self.integer:
            low, high = int(self.low), int(self.high) + 1
            return tune.lograndint(low, high) if self.log else tune.randint(low, high)
        return tune.loguniform(self.low, self.high) if self.log else tune.uniform(self.low, self.high)

    def scale(self, values: np.ndarray) -> np.ndarray:
        """Numeric values on the distance scale: log where log-scaled, then the range mapped to [0, 1]."""
        low, high = self.low, self.high
        if self.log:
            values, low, high = np.log(values), math.log(low), math.log(high)
        return (values - low) / (high - low)

    def check(self, value: Any) -> Any:
        """``value`` as recorded (plain Python type), or a TypeError/ValueError naming the fix."""
        if not self.numeric:
            for choice in self.choices:
                if choice == value and isinstance(choice, bool) == isinstance(value, (bool, np.bool_)):
                    return choice
            raise ValueError(f"`config.{self.name}` must be one of {list(self.choices)}, but got {value!r}.")
        if not is_number(value, numpy=True, finite=True):
            raise TypeError(f"`config.{self.name}` must be a finite number, but got {value!r} "
                            f"({type(value).__name__}).")
        slack = BOUND_TOLERANCE * (self.high - self.low)
        if not self.low - slack <= value <= self.high + slack:
            raise ValueError(f"`config.{self.name}` must be in [{self.low}, {self.high}] (the recorded "
                             f"range), but got {value!r}. Fix: sample it from space().")
        return min(max(float(value), self.low), self.high)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def derive_axes(configs: pd.DataFrame, choices_up_to: int = 0) -> tuple[list[Axis], dict[str, Any]]:
    """The searched axes and the constants (columns with a single recorded value) of ``configs``."""
    axes, constants = [], {}
    for name in configs.columns:
        column = configs[name]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        values = column.dropna().unique().tolist()
        values = sorted((_plain(v) for v in values), key=lambda v: (v if numeric else str(v)))
        if len(values) <= 1:
            constants[str(name)] = values[0] if values else None
            continue
        if not numeric:
            axes.append(Axis(str(name), False, tuple(values)))
            continue
        low, high = float(values[0]), float(values[-1])
        log = low > 0 and high / low >= LOG_RATIO
        grid = tuple(values) if len(values) <= choices_up_to else ()
        axes.append(Axis(str(name), True, grid, low, high, log, pd.api.types.is_integer_dtype(column)))
    return axes, constants


class TableBenchmark(Blackbox):
    """A :class:`MetaDataset` as a blackbox; see the module docstring for the space and the lookup."""

    def __init__(self, data: MetaDataset, *, seed: int = 0, choices_up_to: int = 0):
        if not isinstance(data, MetaDataset):
            raise TypeError(f"`data` must be a MetaDataset, but got {type(data).__name__}. Fix: "
                            f"TableBenchmark.from_path(path) loads one.")
        self.data, self.seed = data, int(seed)
        self.axes, self.constants = derive_axes(data.configs, choices_up_to)
        self._numeric = [a for a in self.axes if a.numeric]
        self._categorical = [a for a in self.axes if not a.numeric]
        budgets = data.budgets
        integer = bool(np.all(budgets == np.round(budgets)))
        kind = int if integer else float
        low, high = kind(budgets[0]), kind(budgets[-1])
        self._fidelity = Fidelity(data.budget_name, low, high, continuable=is_continuable(data.budget_name),
                                  integer=integer)
        self._cumulative = data.cumulative_costs()
        self._lengths = data.observed_steps()  # curves have no gaps: the last observed step + 1
        self._rows = {name: np.flatnonzero(data.datasets == name) for name in data.dataset_names}
        scaled = [a.scale(data.configs[a.name].to_numpy(np.float64)) for a in self._numeric]
        self._scaled = np.column_stack(scaled) if scaled else np.zeros((data.n_rows, 0))
        self._labels = data.configs[[a.name for a in self._categorical]].astype(str).to_numpy(dtype=object)
        check_mode(data.mode)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, seed: int = 0, choices_up_to: int = 0,
                  **options: Any) -> TableBenchmark:
        """The meta-dataset at ``path`` in any format :func:`load_meta_dataset` reads (``options`` go
        to it, e.g. ``metric="iou"`` for a QTT-SEG CSV)."""
        from efficient_search.surrogate.loading import load_meta_dataset

        return cls(load_meta_dataset(path, **options), seed=seed, choices_up_to=choices_up_to)

    # -- Blackbox ------------------------------------------------------------------------
    @property
    def instances(self) -> list[str]:
        return self.data.dataset_names

    def space(self) -> dict[str, Any]:
        return {**{a.name: a.domain() for a in self.axes}, **self.constants}

    @property
    def fidelity(self) -> Fidelity:
        return self._fidelity

    @property
    def metric_names(self) -> list[str]:
        return [self.data.metric]

    @property
    def metric(self) -> str:
        return self.data.metric

    @property
    def mode(self) -> str:
        return self.data.mode

    def evaluate(self, config: Mapping[str, Any], instance: str, fidelity: float) -> dict[str, Any]:
        """The nearest recorded run's metric at ``fidelity`` and its seconds up to there."""
        return self._at(self.nearest_row(config, instance), fidelity)

    def evaluate_many(self, configs: Sequence[Mapping[str, Any]], instance: str,
                      fidelities: Sequence[float]) -> list[dict[str, Any]]:
        """:meth:`evaluate` for each (config, fidelity) pair; a config repeated over a curve is looked
        up once."""
        check_lengths(configs, fidelities)
        rows: dict[int, int] = {}
        for config in configs:
            if id(config) not in rows:
                rows[id(config)] = self.nearest_row(config, instance)
        return [self._at(rows[id(c)], f) for c, f in zip(configs, fidelities, strict=True)]

    def _at(self, row: int, fidelity: float) -> dict[str, Any]:
        value = self._fidelity.check(fidelity)
        steps = np.flatnonzero(np.isclose(self.data.budgets, value))
        if steps.size == 0:
            raise ValueError(f"`fidelity` ({self._fidelity.name}) must be a recorded budget "
                             f"{self.data.budgets.tolist()}, but got {fidelity!r}.")
        step = min(int(steps[0]), int(self._lengths[row]) - 1)
        budget = self.data.budgets[step].item()
        return {self.data.metric: float(self.data.curves[row, step]),
                COST_KEY: float(self._cumulative[row, step]),
                self._fidelity.key: int(budget) if self._fidelity.integer else budget}

    # -- lookup --------------------------------------------------------------------------
    def nearest_row(self, config: Mapping[str, Any], instance: str) -> int:
        """The index (into ``data``'s rows) of the run of ``instance`` nearest to ``config``."""
        name = check_instance(instance, self._rows)
        check_config(config, [a.name for a in self.axes])
        numbers = [a.check(config[a.name]) for a in self._numeric]
        labels = [a.check(config[a.name]) for a in self._categorical]
        rows = self._rows[name]
        point = np.asarray([a.scale(np.asarray(v, dtype=np.float64))
                            for a, v in zip(self._numeric, numbers, strict=True)])
        squares = np.nan_to_num((self._scaled[rows] - point) ** 2, nan=1.0).sum(axis=1)
        squares += (self._labels[rows] != np.asarray([str(v) for v in labels], dtype=object)).sum(axis=1)
        ties = np.flatnonzero(squares <= squares.min() + TIE_TOLERANCE)
        if ties.size == 1:
            return int(rows[ties[0]])
        key = repr((name, numbers, labels)).encode()
        digest = int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
        return int(rows[np.random.default_rng([self.seed, digest]).choice(ties)])

    def recorded_config(self, row: int) -> dict[str, Any]:
        """The hyperparameters recorded for ``row`` (a config that :meth:`nearest_row` maps back to it)."""
        return {str(k): _plain(v) for k, v in self.data.configs.iloc[int(row)].items()}

    def __repr__(self) -> str:
        return (f"TableBenchmark({self.data.n_rows} runs, {len(self.instances)} instances, "
                f"{len(self.axes)} searched hyperparameters, fidelity {self._fidelity.name} "
                f"[{self._fidelity.min}, {self._fidelity.max}], metric {self.metric!r} ({self.mode}))")
