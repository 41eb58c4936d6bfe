"""Search spaces: named definitions and the YAML form of Ray Tune domains.

A YAML/JSON space maps each hyperparameter to a constant or to a one-key mapping::

    lr: {loguniform: [0.0001, 0.1]}
    depth: {randint: [1, 5]}          # upper bound exclusive, as in Ray Tune
    width: {choice: [8, 16, 32]}
    optimizer: {grid: [sgd, adam]}
    dropout: {uniform: [0.0, 0.5]}
    batch_size: 64                    # a constant
    head: {hidden: {choice: [32, 64]}}  # nested mappings stay nested

Ray Tune domain objects (``tune.uniform(...)``) are accepted unchanged.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

from ray import tune

from efficient_search.search_spaces.digits import digits_space
from efficient_search.search_spaces.frozen_layers import frozen_layers_space
from efficient_search.search_spaces.pretrain import pretrain_space
from efficient_search.search_spaces.sam import sam_space
from efficient_search.search_spaces.shakespeare import shakespeare_space
from efficient_search.search_spaces.subnetwork import subnetwork_fine_space, subnetwork_space
from efficient_search.validate import is_int, is_number

#: Named search spaces: name -> function(task_options) -> a Ray Tune dict or a space object
#: (one with ``param_space``, e.g. :class:`~.subnetwork.SubnetworkSpace`).
SPACES: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "digits": digits_space,
    "shakespeare": shakespeare_space,
    "frozen_layers": frozen_layers_space,
    "subnetwork": subnetwork_space,
    "subnetwork_fine": subnetwork_fine_space,
    "pretrain": pretrain_space,
    "sam": sam_space,
}


def _bounds(path: str, kind: str, value: Any, integer: bool) -> tuple[Any, Any]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(
            f"`search_space.{path}` {kind} needs [low, high], but got {value!r}. "
            f"Fix: {path}: {{{kind}: [1, 10]}}."
        )
    low, high = value
    for bound in (low, high):
        if not (is_int(bound) if integer else is_number(bound)):
            expected = "integers" if integer else "numbers"
            raise TypeError(f"`search_space.{path}` {kind} bounds must be {expected}, got {value!r}.")
        if not math.isfinite(bound):
            raise ValueError(f"`search_space.{path}` {kind} bounds must be finite, but got {value!r}. "
                             f"Fix: {path}: {{{kind}: [1, 10]}}.")
    if not low < high:
        raise ValueError(
            f"`search_space.{path}`: `low < high` must hold for {kind}, but got "
            f"(low={low}, high={high})."
        )
    if kind.startswith("log") and low <= 0:
        raise ValueError(f"`search_space.{path}`: {kind} needs low > 0, but got low={low}.")
    return low, high


def _choices(path: str, kind: str, value: Any) -> list[Any]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(
            f"`search_space.{path}` {kind} needs a non-empty list, but got {value!r}. "
            f"Fix: {path}: {{{kind}: [a, b]}}."
        )
    return list(value)


DOMAINS: dict[str, Callable[[str, Any], Any]] = {
    "uniform": lambda p, v: tune.uniform(*_bounds(p, "uniform", v, False)),
    "loguniform": lambda p, v: tune.loguniform(*_bounds(p, "loguniform", v, False)),
    "randint": lambda p, v: tune.randint(*_bounds(p, "randint", v, True)),
    "lograndint": lambda p, v: tune.lograndint(*_bounds(p, "lograndint", v, True)),
    "choice": lambda p, v: tune.choice(_choices(p, "choice", v)),
    "grid": lambda p, v: tune.grid_search(_choices(p, "grid", v)),
}


#: Distribution names of Ray Tune, Optuna and NumPy that the YAML form does not have.
FOREIGN_DOMAINS = ("quniform", "qloguniform", "qrandint", "qlograndint", "randn", "qrandn", "normal",
                   "lognormal", "categorical", "int", "float", "sample_from", "log_uniform",
                   "discrete_uniform")


def _is_domain(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in DOMAINS


def parse_search_space(space: Mapping[str, Any], _path: str = "") -> dict[str, Any]:
    """Turn the YAML form into Ray Tune domains (see the module docstring)."""
    if not isinstance(space, Mapping):
        raise TypeError(
            f"`search_space{'.' + _path if _path else ''}` must be a mapping, but got {space!r}."
        )
    parsed: dict[str, Any] = {}
    for key, value in space.items():
        path = f"{_path}.{key}" if _path else str(key)
        if key in DOMAINS:
            raise ValueError(
                f"`search_space.{path}`: domain {key!r} stands where a parameter name belongs (a domain "
                "is the only key of its parameter's mapping). Fix: e.g. lr: {uniform: [0.1, 1.0]}."
            )
        if isinstance(value, (list, tuple)) and any(_is_domain(v) for v in value):
            raise ValueError(
                f"`search_space.{path}` is a list holding a domain {value!r}; a list is a constant. "
                f"Fix: {path}: {{uniform: [0.1, 1.0]}} (no brackets), or {{choice: [...]}} for options."
            )
        if isinstance(value, Mapping) and len(value) == 1:
            (kind, argument), = value.items()
            if kind in DOMAINS:
                parsed[key] = DOMAINS[kind](path, argument)
                continue
            if kind in ("grid_search",):  # Ray's own serialised form
                parsed[key] = value
                continue
            close = difflib.get_close_matches(str(kind), DOMAINS, n=1)
            if close:
                raise ValueError(
                    f"`search_space.{path}` uses unknown domain {kind!r}. Did you mean "
                    f"{close[0]!r}? Domains: {', '.join(DOMAINS)}."
                )
            if kind in FOREIGN_DOMAINS:
                raise ValueError(
                    f"`search_space.{path}` uses domain {kind!r}, which the YAML form does not have. "
                    f"Fix: one of {', '.join(DOMAINS)}, or pass Ray Tune domain objects from Python."
                )
        parsed[key] = parse_search_space(value, path) if isinstance(value, Mapping) else value
    return parsed


def resolve_search_space(space: Any, task_options: Mapping[str, Any], default: str) -> Any:
    """A spec's ``search_space``: a Ray Tune ``param_space`` dict, or a named space object."""
    if space is None:
        space = default
    if isinstance(space, str):
        if space not in SPACES:
            raise ValueError(
                f"Unknown `search_space` {space!r}. Valid names: {', '.join(sorted(SPACES))}; "
                "or give a mapping of parameters."
            )
        return SPACES[space](task_options)
    return parse_search_space(space)


__all__ = ["DOMAINS", "SPACES", "parse_search_space", "resolve_search_space"]
