"""One axis of a search space per Ray Tune domain: sample it, find its ends and middle, mutate it.

A *gene* is what a genome stores for an axis: the value itself for numeric axes (``int`` or
``float``) and the category index for choices, so that a searcher's state is plain JSON even when
the categories are tuples or objects.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized, Uniform

from efficient_search.validate import is_int, is_number

Gene = int | float
Genome = list[Gene]
Path = tuple[Any, ...]

#: Probability that a numeric mutation resamples the axis instead of taking a local step.
RESAMPLE_PROBABILITY = 0.5
#: Width of a local step, as a fraction of the axis (in log space for log axes).
STEP_SCALE = 0.15


def path_name(path: Path) -> str:
    return "/".join(str(p) for p in path)


def _grid_index(bound: float, q: float, round_fn: Any) -> int:
    # As Ray's Quantized: a bound within float error of the grid is on it.
    scaled = bound / q
    nearest = round(scaled)
    return int(nearest if math.isclose(scaled, nearest) else round_fn(scaled))


@dataclass(frozen=True)
class FloatAxis:
    """``uniform``/``loguniform`` (optionally quantized by ``q``) between ``lower`` and ``upper``."""

    path: Path
    lower: float
    upper: float
    log: bool = False
    q: float | None = None

    @property
    def fixed(self) -> bool:
        return self.from_unit(0.0) == self.from_unit(1.0)

    def _ends(self) -> tuple[float, float]:
        if self.q is None:
            return self.lower, self.upper
        return (_grid_index(self.lower, self.q, math.ceil) * self.q,
                _grid_index(self.upper, self.q, math.floor) * self.q)

    def from_unit(self, u: float) -> float:
        low, high = self._ends()
        if u <= 0.0 or u >= 1.0:  # the ends exactly, free of log/exp rounding
            value = low if u <= 0.0 else high
        elif self.log:
            value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            value = low + u * (high - low)
        if self.q is not None:
            value = round(value / self.q) * self.q
        return float(min(max(value, self.lower), self.upper))

    def to_unit(self, value: float) -> float:
        low, high = self._ends()
        if high == low:
            return 0.5
        if self.log:
            u = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        else:
            u = (value - low) / (high - low)
        return min(max(u, 0.0), 1.0)

    def sample(self, rng: np.random.Generator) -> float:
        return self.from_unit(float(rng.random()))

    def low(self) -> float:
        return self.from_unit(0.0)

    def high(self) -> float:
        return self.from_unit(1.0)

    def middle(self) -> float:
        return self.from_unit(0.5)

    def mutate(self, gene: Gene, rng: np.random.Generator) -> float:
        new = _numeric_mutation(self, gene, rng)
        if new == gene:  # a coarse grid: take the far end
            new = self.high() if gene == self.low() else self.low()
        return float(new)

    def encode(self, value: Any) -> float:
        if not is_number(value, numpy=True):
            raise TypeError(f"`{path_name(self.path)}` must be a number, but got {value!r}.")
        if not self.lower <= value <= self.upper:
            raise ValueError(f"`{path_name(self.path)}` must lie in [{self.lower}, {self.upper}], "
                             f"but got {value!r}.")
        return float(value)

    def decode(self, gene: Gene) -> float:
        return float(gene)

    def describe(self) -> dict[str, Any]:
        return {"path": list(self.path), "type": "float", "lower": self.lower, "upper": self.upper,
                "log": self.log, "q": self.q}


@dataclass(frozen=True)
class IntAxis:
    """Integers ``index * q`` for ``index`` in ``[low_index, high_index]`` (both inclusive)."""

    path: Path
    low_index: int
    high_index: int
    log: bool = False
    q: int = 1

    @property
    def fixed(self) -> bool:
        return self.low_index == self.high_index

    def from_unit(self, u: float) -> int:
        a, b = self.low_index, self.high_index
        if self.log:  # Ray's scheme: floor of a log-uniform draw over [a, b + 1)
            index = math.floor(math.exp(math.log(a) + u * (math.log(b + 1) - math.log(a))))
        else:
            index = a + math.floor(u * (b - a + 1))
        return int(min(max(index, a), b)) * self.q

    def to_unit(self, value: int) -> float:
        a, b, index = self.low_index, self.high_index, value // self.q
        if self.log:
            u = (math.log(index + 0.5) - math.log(a)) / (math.log(b + 1) - math.log(a))
        else:
            u = (index - a + 0.5) / (b - a + 1)
        return min(max(u, 0.0), 1.0)

    def sample(self, rng: np.random.Generator) -> int:
        return self.from_unit(float(rng.random()))

    def low(self) -> int:
        return self.low_index * self.q

    def high(self) -> int:
        return self.high_index * self.q

    def mutate(self, gene: Gene, rng: np.random.Generator) -> int:
        new = _numeric_mutation(self, gene, rng)
        if new == gene:
            new = self.step(int(gene), 1 if rng.random() < 0.5 else -1)
        return int(new)

    def middle(self) -> int:
        a, b = self.low_index, self.high_index
        index = round(math.sqrt(a * b)) if self.log else (a + b) // 2
        return int(min(max(index, a), b)) * self.q

    def step(self, value: int, direction: int) -> int:
        """The neighbour one grid step towards ``direction``, bouncing off the bounds."""
        index = value // self.q + direction
        if not self.low_index <= index <= self.high_index:
            index = value // self.q - direction
        return index * self.q

    def encode(self, value: Any) -> int:
        name = path_name(self.path)
        if not is_int(value, numpy=True):
            raise TypeError(f"`{name}` must be an integer, but got {value!r}.")
        value = int(value)
        low, high = self.low_index * self.q, self.high_index * self.q
        if not low <= value <= high or value % self.q:
            raise ValueError(f"`{name}` must be a multiple of {self.q} in [{low}, {high}], "
                             f"but got {value!r}.")
        return value

    def decode(self, gene: Gene) -> int:
        return int(gene)

    def describe(self) -> dict[str, Any]:
        return {"path": list(self.path), "type": "int", "low_index": self.low_index,
                "high_index": self.high_index, "log": self.log, "q": self.q}


@dataclass(frozen=True)
class ChoiceAxis:
    """``choice(categories)``; numeric categories are ordered by value for low/high/middle."""

    path: Path
    categories: tuple[Any, ...]

    @property
    def fixed(self) -> bool:
        return len(self.categories) == 1

    @functools.cached_property
    def numeric(self) -> bool:
        """Whether the categories are numbers, which have an order to step along."""
        return all(is_number(c) for c in self.categories)

    @functools.cached_property
    def order(self) -> list[int]:
        indices = list(range(len(self.categories)))
        return sorted(indices, key=lambda i: self.categories[i]) if self.numeric else indices

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(len(self.categories)))

    def low(self) -> int:
        return self.order[0]

    def high(self) -> int:
        return self.order[-1]

    def middle(self) -> int:
        return self.order[(len(self.categories) - 1) // 2]

    def mutate(self, gene: Gene, rng: np.random.Generator) -> int:
        """Numbers: a local step along their order or a resample; other categories: a resample."""
        count = len(self.categories)
        if self.numeric and count > 2 and rng.random() >= RESAMPLE_PROBABILITY:
            position = self.order.index(int(gene))
            width = max(1, round(abs(float(rng.normal(0.0, STEP_SCALE * (count - 1))))))
            direction = 1 if rng.random() < 0.5 else -1
            target = position + direction * width
            if not 0 <= target < count:  # bounce off the end
                target = position - direction * width
            target = min(max(target, 0), count - 1)
            if target == position:  # both ways out of range: one step inwards
                target = position + (1 if position == 0 else -1)
            return self.order[target]
        other = int(rng.integers(count - 1))
        return other + 1 if other >= gene else other

    def encode(self, value: Any) -> int:
        for i, category in enumerate(self.categories):
            if type(category) is type(value) and category == value:
                return i
        raise ValueError(f"`{path_name(self.path)}` must be one of {list(self.categories)}, "
                         f"but got {value!r}.")

    def decode(self, gene: Gene) -> Any:
        return copy.deepcopy(self.categories[int(gene)])

    def describe(self) -> dict[str, Any]:
        exact = survives_json(list(self.categories))
        return {"path": list(self.path), "type": "choice", "exact": exact,
                "categories": list(self.categories) if exact else [repr(c) for c in self.categories]}


Axis = FloatAxis | IntAxis | ChoiceAxis


def _numeric_mutation(axis: FloatAxis | IntAxis, gene: Gene, rng: np.random.Generator) -> Gene:
    """A local step (in log space for log axes) or a resample; a few tries to move at all."""
    new: Gene = gene
    for _ in range(8):
        if rng.random() < RESAMPLE_PROBABILITY:
            u = float(rng.random())
        else:
            u = min(max(axis.to_unit(gene) + float(rng.normal(0.0, STEP_SCALE)), 0.0), 1.0)  # type: ignore[arg-type]
        new = axis.from_unit(u)
        if new != gene:
            break
    return new


def axis_from_domain(path: Path, domain: Domain) -> Axis:
    """Our axis for one Ray domain; refuses what has no bounded, samplable form."""
    name = path_name(path)
    if not isinstance(domain, (Categorical, Float, Integer)):
        raise TypeError(
            f"Search space entry `{name}` is a {type(domain).__name__} (e.g. tune.sample_from), "
            "which cannot be searched. Fix: use tune.uniform/loguniform/randint/choice."
        )
    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, Quantized):
        q, sampler = sampler.q, sampler.get_sampler()
    log = isinstance(sampler, LogUniform)
    if not isinstance(sampler, (Uniform, LogUniform)):
        raise TypeError(
            f"Search space entry `{name}` uses a {type(sampler).__name__} sampler, which has no "
            "bounds to search in. Fix: use tune.uniform/loguniform/randint/choice."
        )
    if isinstance(domain, Categorical):
        if not domain.categories:
            raise ValueError(f"Search space entry `{name}` is a choice with no categories.")
        return ChoiceAxis(path, tuple(domain.categories))
    if isinstance(domain, Float):
        if not (math.isfinite(domain.lower) and math.isfinite(domain.upper)):
            raise ValueError(f"Search space entry `{name}` needs finite bounds, but got "
                             f"({domain.lower}, {domain.upper}).")
        return FloatAxis(path, float(domain.lower), float(domain.upper), log, q)
    step = int(q or 1)
    if step == 1:  # Ray: upper exclusive unless quantized with q > 1
        low, high = int(domain.lower), int(domain.upper) - 1
    else:
        low = _grid_index(domain.lower, step, math.ceil)
        high = _grid_index(domain.upper, step, math.floor)
    if high < low or (log and low < 1):
        raise ValueError(f"Search space entry `{name}` holds no integer to sample: "
                         f"(lower={domain.lower}, upper={domain.upper}, q={step}).")
    return IntAxis(path, low, high, log, step)


def survives_json(value: Any) -> bool:
    """True when a JSON round trip gives the value back, types included (no tuples, no NaN)."""
    try:
        return repr(json.loads(json.dumps(value, allow_nan=False))) == repr(value)
    except (TypeError, ValueError):
        return False
