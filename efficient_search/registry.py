"""Searchers and schedulers by name.

Each entry is a factory ``(seed, **options) -> object``; names are what specs and the CLI use.
Any Ray ``Searcher``/``SearchAlgorithm``/``TrialScheduler`` object is accepted from Python too.
Later modules add their own entries with :func:`register_searcher`/:func:`register_scheduler`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.schedulers import (
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, SearchAlgorithm, Searcher

Factory = Callable[..., Any]

SEARCHERS: dict[str, Factory] = {}
SCHEDULERS: dict[str, Factory] = {}


def register_searcher(name: str, factory: Factory) -> None:
    """Make ``factory(seed=..., **options)`` available as searcher ``name``."""
    SEARCHERS[name] = factory


def register_scheduler(name: str, factory: Factory) -> None:
    """Make ``factory(seed=..., **options)`` available as scheduler ``name``."""
    SCHEDULERS[name] = factory


def _lookup(kind: str, registry: Mapping[str, Factory], name: str) -> Factory:
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"Unknown `{kind}` {name!r}. {hint}Valid {kind}s: {', '.join(sorted(registry))}; "
            f"or pass a Ray {kind} object from Python."
        )
    return registry[name]


def _call(kind: str, name: str, factory: Factory, seed: int, options: Mapping[str, Any]) -> Any:
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    missing = [p.name for p in parameters.values()
               if p.default is p.empty and p.kind is p.KEYWORD_ONLY and p.name != "seed"
               and p.name not in options]
    if missing:
        raise ValueError(
            f"{kind} {name!r} needs `{kind}_options.{missing[0]}`. "
            f"Fix: e.g. {kind}_options: {{{', '.join(f'{m}: ...' for m in missing)}}}."
        )
    for key in options:
        if not takes_any and key not in parameters or key == "seed":
            valid = [p for p in parameters if p != "seed"]
            raise ValueError(
                f"Unknown `{kind}_options.{key}` for {kind} {name!r}. "
                f"Valid options: {', '.join(valid) or 'none'}."
            )
    return factory(seed=seed, **options)


def make_searcher(spec: Any, *, seed: int, options: Mapping[str, Any],
                  max_concurrent: int | None = None) -> Searcher | SearchAlgorithm:
    """A search algorithm from a registered name or a Ray object.

    Tune limits concurrency of ``Searcher`` objects itself; Ray's random/grid generator takes
    the limit in its constructor, so it is passed there.
    """
    if isinstance(spec, (Searcher, SearchAlgorithm)):
        return spec
    if spec == "random" and max_concurrent:
        options = {**options, "max_concurrent": max_concurrent}
    if not isinstance(spec, str):
        raise TypeError(
            f"`searcher` must be a registered name or a Ray Searcher, but got {spec!r} "
            f"({type(spec).__name__}). Valid names: {', '.join(sorted(SEARCHERS))}."
        )
    return _call("searcher", spec, _lookup("searcher", SEARCHERS, spec), seed, options)


def make_scheduler(spec: Any, *, seed: int, options: Mapping[str, Any]) -> TrialScheduler:
    """A trial scheduler from a registered name or a Ray object."""
    if isinstance(spec, TrialScheduler):
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"`scheduler` must be a registered name or a Ray TrialScheduler, but got {spec!r} "
            f"({type(spec).__name__}). Valid names: {', '.join(sorted(SCHEDULERS))}."
        )
    return _call("scheduler", spec, _lookup("scheduler", SCHEDULERS, spec), seed, options)


def _random(*, seed: int, max_concurrent: int = 0) -> SearchAlgorithm:
    return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent)


def _asha(*, seed: int, max_t: int = 4, grace_period: int = 1, reduction_factor: float = 2,
          time_attr: str = "training_iteration") -> TrialScheduler:
    return AsyncHyperBandScheduler(time_attr=time_attr, max_t=max_t, grace_period=grace_period,
                                   reduction_factor=reduction_factor)


def _hyperband(*, seed: int, max_t: int = 4, reduction_factor: float = 3,
               time_attr: str = "training_iteration") -> TrialScheduler:
    return HyperBandScheduler(time_attr=time_attr, max_t=max_t, reduction_factor=reduction_factor)


def _median(*, seed: int, grace_period: float = 1, min_samples_required: int = 3,
            time_attr: str = "training_iteration") -> TrialScheduler:
    return MedianStoppingRule(time_attr=time_attr, grace_period=grace_period,
                              min_samples_required=min_samples_required)


def _layer_freezing(*, seed: int, max_trainable_layers: int, epochs: int,
                    min_trainable_layers: int = 1, reduction_factor: float = 3,
                    promotion: str = "continue", min_epochs: int | None = None) -> TrialScheduler:
    from efficient_search.schedulers import LayerFreezingScheduler

    return LayerFreezingScheduler(
        max_trainable_layers=max_trainable_layers, epochs=epochs,
        min_trainable_layers=min_trainable_layers, reduction_factor=reduction_factor,
        promotion=promotion, min_epochs=min_epochs,
    )


register_searcher("random", _random)
register_scheduler("fifo", lambda *, seed: FIFOScheduler())
register_scheduler("asha", _asha)
register_scheduler("hyperband", _hyperband)
register_scheduler("median", _median)
register_scheduler("layer_freezing", _layer_freezing)
