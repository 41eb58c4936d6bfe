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
    FIFOScheduler,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, SearchAlgorithm, Searcher

from efficient_search.validate import check_int, check_name, check_number

Factory = Callable[..., Any]

SEARCHERS: dict[str, Factory] = {}
OWNS_SPACE = "_efficient_search_owns_space"
#: Searcher options the spec gives through its own fields (option -> spec field).
SPEC_OWNED = {"metric": "metric", "mode": "mode", "space": "search_space"}
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


def takes_objectives(spec: Any) -> bool:
    """Whether searcher ``spec`` (a name or a Ray object) can optimise several metrics at once."""
    if isinstance(spec, Searcher):
        return isinstance(getattr(spec, "metric", None), list)
    if isinstance(spec, str) and spec in SEARCHERS:
        return "metric" in inspect.signature(SEARCHERS[spec]).parameters
    return False


def owns_space(searcher: Any) -> bool:
    """Whether ``make_searcher`` handed ``searcher`` the search space (Tune must then give none)."""
    return bool(getattr(searcher, OWNS_SPACE, False))


def make_searcher(spec: Any, *, seed: int, options: Mapping[str, Any],
                  max_concurrent: int | None = None, space: Any = None,
                  metric: str | list[str] | None = None,
                  mode: str | list[str] | None = None) -> Searcher | SearchAlgorithm:
    """A search algorithm from a registered name or a Ray object.

    Tune limits concurrency of ``Searcher`` objects itself; Ray's random/grid generator takes
    the limit in its constructor, so it is passed there. A space object (one with
    ``param_space``, e.g. a sub-network space with its parameter count as ``cost``) goes to
    factories that take ``space``, together with the objective(s); plain dict spaces and
    single objectives reach the searcher through Tune as usual.
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
    factory = _lookup("searcher", SEARCHERS, spec)
    for key, field in SPEC_OWNED.items():
        if key in options:
            raise ValueError(f"`searcher_options.{key}` cannot be set: the spec's `{field}` gives it to "
                             f"searcher {spec!r}. Fix: remove it from searcher_options and set `{field}`.")
    takes = inspect.signature(factory).parameters
    given: dict[str, Any] = {}
    # Several objectives reach a searcher only through its constructor (Tune passes one metric),
    # so such a searcher takes the space too; space objects always go to those that take them.
    if "space" in takes and (hasattr(space, "param_space") or isinstance(metric, list) and space):
        given["space"] = space
    if (given or isinstance(metric, list)) and "metric" in takes and "mode" in takes:
        given.update(metric=metric, mode=mode)
    searcher = _call("searcher", spec, factory, seed, {**options, **given})
    if "space" in given:
        setattr(searcher, OWNS_SPACE, True)
    return searcher


def make_scheduler(spec: Any, *, seed: int, options: Mapping[str, Any],
                   searcher: Any = None) -> TrialScheduler:
    """A trial scheduler from a registered name or a Ray object.

    A factory with a ``searcher`` parameter (``freeze_thaw``) gets the search algorithm built for the
    same spec, so that a pair sharing state (``quicktune`` + ``freeze_thaw``) is linked from the start.
    """
    if isinstance(spec, TrialScheduler):
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"`scheduler` must be a registered name or a Ray TrialScheduler, but got {spec!r} "
            f"({type(spec).__name__}). Valid names: {', '.join(sorted(SCHEDULERS))}."
        )
    factory = _lookup("scheduler", SCHEDULERS, spec)
    if "searcher" in inspect.signature(factory).parameters:
        if "searcher" in options:
            raise ValueError(f"`scheduler_options.searcher` cannot be set: scheduler {spec!r} takes the "
                             "spec's `searcher`. Fix: remove it from scheduler_options.")
        if searcher is not None:
            options = {**options, "searcher": searcher}
    return _call("scheduler", spec, factory, seed, options)


def _random(*, seed: int, max_concurrent: int = 0) -> SearchAlgorithm:
    check_int("searcher_options.max_concurrent", max_concurrent, min=0,
              fix="leave it out and set the spec's max_concurrent_trials.")
    return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent)


def _evolution(*, seed: int, space: Any = None, metric: str | list[str] | None = None,
               mode: str | list[str] | None = None, population_size: int = 20,
               sample_size: int | None = None, max_cost: float | None = None, min_cost: float | None = None,
               bins: list[float] | None = None, cost: Callable[[dict[str, Any]], float] | None = None,
               keep_bin: bool = False,
               points_to_evaluate: list[dict[str, Any]] | None = None) -> Searcher:
    from efficient_search.searchers import EvolutionarySearcher

    return EvolutionarySearcher(
        space, metric=metric, mode=mode, seed=seed, population_size=population_size,
        sample_size=sample_size, max_cost=max_cost, min_cost=min_cost, bins=bins, cost=cost,
        keep_bin=keep_bin, points_to_evaluate=points_to_evaluate,
    )


def _optuna(*, seed: int, sampler: str = "tpe", space: Any = None,
            metric: str | list[str] | None = None, mode: str | list[str] | None = None,
            population_size: int | None = None,
            points_to_evaluate: list[dict[str, Any]] | None = None) -> Searcher:
    """Optuna's TPE, NSGA-II or random sampler; its state is Optuna's journal, never a pickle.

    ``space`` (Ray domains, or an object with ``param_space``) is converted to Optuna's form;
    points are nested configs or flat dicts (``{"head/hidden": 32}``).
    """
    from efficient_search.searchers import OptunaSearcher

    try:
        return OptunaSearcher(getattr(space, "param_space", space), metric=metric, mode=mode,
                              sampler=sampler, population_size=population_size,
                              points_to_evaluate=points_to_evaluate, seed=seed)
    except (ValueError, TypeError) as error:
        raise type(error)(f"searcher 'optuna', `searcher_options`: {error}") from error


TIME_ATTR = "a non-empty string (the reported counter, e.g. training_iteration)"


def _check_budget(*, max_t: Any, reduction_factor: Any, time_attr: Any) -> None:
    """Options Ray's ASHA and HyperBand would only ``assert`` (or fail on much later)."""
    check_number("scheduler_options.max_t", max_t, above=0, fix="e.g. max_t: 4 (epochs).")
    check_number("scheduler_options.reduction_factor", reduction_factor, above=1,
                 fix="e.g. reduction_factor: 3.")
    check_name("scheduler_options.time_attr", time_attr, expected=TIME_ATTR)


def _asha(*, seed: int, max_t: int = 4, grace_period: int = 1, reduction_factor: float = 2,
          brackets: int = 1, time_attr: str = "training_iteration") -> TrialScheduler:
    """Ray's ASHA, seeded, with rungs that survive ``Tuner.restore``."""
    from efficient_search.schedulers import RestorableASHA

    _check_budget(max_t=max_t, reduction_factor=reduction_factor, time_attr=time_attr)
    check_number("scheduler_options.grace_period", grace_period, above=0,
                 max=max_t, fix="e.g. grace_period: 1 (at most max_t).")
    check_int("scheduler_options.brackets", brackets, min=1)

    return RestorableASHA(seed=seed, time_attr=time_attr, max_t=max_t, grace_period=grace_period,
                          reduction_factor=reduction_factor, brackets=brackets)


def _hyperband(*, seed: int, max_t: int = 4, reduction_factor: float = 3,
               time_attr: str = "training_iteration") -> TrialScheduler:
    from efficient_search.schedulers import RestorableHyperBand

    check_number("scheduler_options.max_t", max_t, min=1, fix="e.g. max_t: 9 (epochs).")
    _check_budget(max_t=max_t, reduction_factor=reduction_factor, time_attr=time_attr)

    return RestorableHyperBand(time_attr=time_attr, max_t=max_t, reduction_factor=reduction_factor)


def _median(*, seed: int, grace_period: float = 1, min_samples_required: int = 3,
            time_attr: str = "training_iteration") -> TrialScheduler:
    from efficient_search.schedulers import RestorableMedian

    check_number("scheduler_options.grace_period", grace_period, min=0)
    check_int("scheduler_options.min_samples_required", min_samples_required, min=1)
    check_name("scheduler_options.time_attr", time_attr, expected=TIME_ATTR)

    return RestorableMedian(time_attr=time_attr, grace_period=grace_period,
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


def _quicktune(*, seed: int, space: Any = None, metric: str | None = None, mode: str | None = None,
               surrogate: str | None = None, meta_train_options: dict[str, Any] | None = None,
               meta_features: dict[str, float] | None = None, alpha: float = 0.0, horizon: str = "next",
               pool_size: int = 256,
               max_t: int | None = None, time_attr: str | None = None, cost_attr: str = "cost/seconds",
               cumulative_cost: bool = True, initial_random: int = 3, online_steps: int = 40,
               points_to_evaluate: list[dict[str, Any]] | None = None) -> Searcher:
    """Quick-Tune's searcher; ``surrogate`` is a ``meta_train`` folder or a meta-dataset path."""
    from efficient_search.searchers import QuickTuneSearcher

    return QuickTuneSearcher(
        space, metric=metric, mode=mode, seed=seed, surrogate=surrogate,
        meta_train_options=meta_train_options, meta_features=meta_features, alpha=alpha, horizon=horizon,
        pool_size=pool_size, max_t=max_t, time_attr=time_attr, cost_attr=cost_attr,
        cumulative_cost=cumulative_cost, initial_random=initial_random, online_steps=online_steps,
        points_to_evaluate=points_to_evaluate,
    )


def _freeze_thaw(*, seed: int, searcher: Any = None, max_t: int = 4, budget_step: int = 1,
                 time_attr: str | None = None, cost_attr: str = "cost/seconds", cumulative_cost: bool = True,
                 patience: int | None = None, eta: int | None = None, cost_budget_s: float | None = None,
                 surrogate: str | None = None, meta_features: dict[str, float] | None = None,
                 alpha: float = 0.0) -> TrialScheduler:
    """Freeze-thaw scheduling; shares the surrogate of a ``quicktune`` searcher of the same spec (passed
    here by ``make_scheduler``, else found inside Tune), or fits its own."""
    from efficient_search.schedulers import FreezeThawScheduler
    from efficient_search.schedulers.freeze_thaw import find_quicktune

    paired = find_quicktune(searcher)
    if paired is not None:
        if surrogate is not None or meta_features is not None:
            raise ValueError("`scheduler_options.surrogate`/`meta_features` apply to freeze_thaw alone; with "
                             "searcher quicktune they belong to searcher_options. Fix: move them there.")
        return FreezeThawScheduler(searcher=paired, max_t=max_t, budget_step=budget_step,
                                   time_attr=time_attr, cost_attr=cost_attr, cumulative_cost=cumulative_cost,
                                   patience=patience, eta=eta, cost_budget_s=cost_budget_s)
    return FreezeThawScheduler(max_t=max_t, budget_step=budget_step, time_attr=time_attr,
                               cost_attr=cost_attr, cumulative_cost=cumulative_cost, patience=patience,
                               eta=eta, cost_budget_s=cost_budget_s, surrogate=surrogate,
                               meta_features=meta_features, alpha=alpha, seed=seed)


register_searcher("random", _random)
register_searcher("evolution", _evolution)
register_searcher("optuna", _optuna)
register_searcher("quicktune", _quicktune)
register_scheduler("fifo", lambda *, seed: FIFOScheduler())
register_scheduler("asha", _asha)
register_scheduler("hyperband", _hyperband)
register_scheduler("median", _median)
register_scheduler("layer_freezing", _layer_freezing)
register_scheduler("freeze_thaw", _freeze_thaw)
