"""A ConfigSpace (1.x) search space as Ray Tune domains, and configs checked back against it.

Conversion (:func:`ray_space`):

- Uniform float → ``tune.uniform`` / ``tune.loguniform`` (``log=True``), same bounds;
- Uniform integer → ``tune.randint`` / ``tune.lograndint`` with ``upper + 1`` (Ray's upper is
  exclusive, ConfigSpace's inclusive);
- Categorical → ``tune.choice`` over its choices; Ordinal → ``tune.choice`` over its sequence (Ray has
  no ordered choice, so the order is not shown to the searcher);
- Constant → the plain value.

Ray Tune has no conditions, so a *conditional* hyperparameter is in the space like any other and
every searcher proposes a value for it; :func:`active_values` drops the ones that are inactive given
their parents' values (ConfigSpace's own rule) before a config is evaluated. Configs may also leave
inactive hyperparameters out. Forbidden combinations are refused with a ValueError.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    OrdinalHyperparameter,
    UniformFloatHyperparameter,
    UniformIntegerHyperparameter,
)
from ConfigSpace.util import deactivate_inactive_hyperparameters
from ray import tune

from efficient_search.validate import is_int, is_number

#: A float this close to a bound (relative to the range) is clipped to it: log-uniform sampling can
#: overshoot a bound by rounding.
BOUND_TOLERANCE = 1e-9


def ray_domain(hp: Any) -> Any:
    """The Ray Tune domain (or constant) for one ConfigSpace hyperparameter."""
    if isinstance(hp, UniformFloatHyperparameter):
        low, high = float(hp.lower), float(hp.upper)
        return tune.loguniform(low, high) if hp.log else tune.uniform(low, high)
    if isinstance(hp, UniformIntegerHyperparameter):
        low, high = int(hp.lower), int(hp.upper) + 1
        return tune.lograndint(low, high) if hp.log else tune.randint(low, high)
    if isinstance(hp, CategoricalHyperparameter):
        return tune.choice(list(hp.choices))
    if isinstance(hp, OrdinalHyperparameter):
        return tune.choice(list(hp.sequence))
    if isinstance(hp, Constant):
        return hp.value
    raise TypeError(f"hyperparameter {hp.name!r} is a {type(hp).__name__}, which has no Ray Tune "
                    f"equivalent here. Supported: uniform float/int (log or not), categorical, ordinal, "
                    f"constant.")


def ray_space(space: ConfigurationSpace, exclude: Collection[str] = ()) -> dict[str, Any]:
    """``{name: domain}`` for every hyperparameter of ``space`` except those in ``exclude``."""
    return {name: ray_domain(hp) for name, hp in space.items() if name not in exclude}


def _number(name: str, hp: Any, value: Any) -> float | int:
    if not is_number(value, numpy=True, finite=True):
        raise TypeError(f"`config.{name}` must be a finite number, but got {value!r} "
                        f"({type(value).__name__}).")
    low, high = hp.lower, hp.upper
    slack = BOUND_TOLERANCE * (high - low)
    if not low - slack <= value <= high + slack:
        raise ValueError(f"`config.{name}` must be in [{low}, {high}], but got {value!r}. Fix: sample it "
                         f"from space().")
    if isinstance(hp, UniformIntegerHyperparameter):
        if not (is_int(value, numpy=True) or float(value).is_integer()):
            raise ValueError(f"`config.{name}` must be a whole number, but got {value!r}.")
        return min(max(int(round(float(value))), int(low)), int(high))
    return min(max(float(value), float(low)), float(high))


def checked_value(name: str, hp: Any, value: Any) -> Any:
    """``value`` as ConfigSpace accepts it for ``hp`` (plain Python types, clipped within rounding)."""
    if isinstance(hp, (UniformFloatHyperparameter, UniformIntegerHyperparameter)):
        return _number(name, hp, value)
    options = (list(hp.choices) if isinstance(hp, CategoricalHyperparameter)
               else list(hp.sequence) if isinstance(hp, OrdinalHyperparameter)
               else [hp.value] if isinstance(hp, Constant) else None)
    if options is None:
        raise TypeError(f"hyperparameter {name!r} is a {type(hp).__name__}, which is not supported.")
    for option in options:  # True == 1 in Python, but not here
        if option == value and isinstance(option, (bool, np.bool_)) == isinstance(value, (bool, np.bool_)):
            return option
    raise ValueError(f"`config.{name}` must be one of {options}, but got {value!r}.")


def active_values(space: ConfigurationSpace, values: Mapping[str, Any]) -> dict[str, Any]:
    """The checked values of the hyperparameters that are active given ``values``; the others are dropped.

    Every active hyperparameter needs a value; unknown keys are ignored.
    """
    filled, given = {}, set()
    for name, hp in space.items():
        if name in values and values[name] is not None:
            filled[name] = checked_value(name, hp, values[name])
            given.add(name)
        else:  # stand-in so that ConfigSpace can tell whether it is active at all
            filled[name] = hp.default_value
    active = dict(deactivate_inactive_hyperparameters(filled, space))
    missing = [name for name in active if name not in given]
    if missing:
        raise ValueError(f"`config` lacks hyperparameters {missing}, which are active given the others. "
                         f"Fix: pass every key of space().")
    for clause in space.forbidden_clauses:
        if clause.is_forbidden_value(active):
            raise ValueError(f"`config` is a forbidden combination of this search space ({clause}). Fix: "
                             f"propose another config.")
    return {name: _plain(value) for name, value in active.items()}


def _plain(value: Any) -> Any:
    """NumPy scalars as Python ones (yahpo's encoding looks values up in JSON-made dicts)."""
    return value.item() if isinstance(value, np.generic) else value
