"""What every searcher checks: its options (errors that state the rule, the values and the fix),
Tune's objectives, readiness to suggest, and the objective values of a result."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ray.tune.result import DEFAULT_METRIC
from ray.tune.search import UNDEFINED_METRIC_MODE, UNDEFINED_SEARCH_SPACE, Searcher

from efficient_search.validate import is_int, is_number

logger = logging.getLogger(__name__)
SpaceT = TypeVar("SpaceT")

MODES = ("min", "max")


def check_objectives(metric: Any, mode: Any) -> tuple[Any, Any]:
    """Ray's rules for metric/mode, as errors that name the values and the fix."""
    if metric is None or isinstance(metric, str):
        if mode is not None and not isinstance(mode, str):
            raise TypeError(f"`mode` must be 'min' or 'max' for a single `metric`, but got "
                            f"mode={mode!r} for metric={metric!r}. Fix: pass a list of metrics "
                            "for several objectives.")
        if mode is not None and mode not in MODES:
            raise ValueError(f"`mode` must be 'min' or 'max', but got {mode!r}.")
        return (DEFAULT_METRIC if metric is None and mode else metric), mode
    if not isinstance(metric, Sequence) or not metric or not all(isinstance(m, str) for m in metric):
        raise TypeError(f"`metric` must be a string or a non-empty list of strings, but got "
                        f"{metric!r}.")
    metrics = list(metric)
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"`metric` names must be distinct, but got {metrics}.")
    if mode is None:
        return metrics, None
    if isinstance(mode, str) or not isinstance(mode, Sequence):
        raise TypeError(f"`mode` must be a list like `metric`, but got mode={mode!r} for "
                        f"metric={metrics}. Fix: one 'min'/'max' per metric.")
    modes = list(mode)
    if len(modes) != len(metrics):
        raise ValueError(f"`metric` and `mode` must have the same length, but got "
                         f"{len(metrics)} metrics {metrics} and {len(modes)} modes {modes}.")
    if any(m not in MODES for m in modes):
        raise ValueError(f"Every `mode` must be 'min' or 'max', but got {modes}.")
    return metrics, modes


def check_sizes(population_size: Any, sample_size: Any, max_retries: Any) -> None:
    """Population, tournament and retry counts."""
    if not is_int(population_size) or population_size < 2:
        raise ValueError(f"`population_size` must be an integer >= 2, but got "
                         f"{population_size!r}. Fix: e.g. population_size=20.")
    if not is_int(sample_size) or not 1 <= sample_size <= population_size:
        raise ValueError(f"`1 <= sample_size <= population_size` must hold, but got "
                         f"(sample_size={sample_size!r}, population_size={population_size}). "
                         f"Fix: e.g. sample_size={max(1, population_size // 4)}.")
    if not is_int(max_retries) or max_retries < 1:
        raise ValueError(f"`max_retries` must be an integer >= 1, but got {max_retries!r}.")


def check_points(points: Any) -> list[Mapping[str, Any]]:
    """A list of config dicts (checked against the space once the space is known)."""
    if points is None:
        return []
    if isinstance(points, Mapping) or not isinstance(points, Sequence) or not all(
            isinstance(p, Mapping) for p in points):
        raise TypeError(f"`points_to_evaluate` must be a list of config dicts, but got {points!r}.")
    return [dict(p) for p in points]


def tune_objectives(own_metric: Any, own_mode: Any, metric: Any, mode: Any) -> tuple[Any, Any]:
    """The objectives ``set_search_properties`` settles on: Tune's metric/mode fill what the
    searcher lacks; several objectives come only through the constructor (Tune knows one)."""
    if isinstance(own_metric, list):
        metric, mode = own_metric, own_mode
    return check_objectives(metric or own_metric, mode or own_mode)


def check_ready(searcher: Searcher, space: SpaceT | None) -> SpaceT:
    """The searcher's space, or Ray's own errors for ``suggest`` before a space, or before metric
    and mode, are set."""
    name = type(searcher).__name__
    if space is None:
        raise RuntimeError(UNDEFINED_SEARCH_SPACE.format(cls=name, space="space"))
    if not searcher.metric or not searcher.mode:
        raise RuntimeError(UNDEFINED_METRIC_MODE.format(cls=name, metric=searcher.metric,
                                                        mode=searcher.mode))
    return space


def objective_values(metrics: Sequence[str], result: Mapping[str, Any] | None) -> list[float] | None:
    """The objectives' values in ``result``, or None when one is missing, not a number or not finite."""
    values = []
    for name in metrics:
        value = (result or {}).get(name)
        if not is_number(value, numpy=True, finite=True):
            return None
        values.append(float(value))
    return values


def log_ignored_result(searcher: Searcher, trial_id: str, finished: bool) -> None:
    """A late result (the trial finished already) or one for a trial never suggested: ignored."""
    if finished:
        logger.warning("%s: trial %s finished already; its later result is ignored.",
                       type(searcher).__name__, trial_id)
    else:
        logger.debug("%s: result for unknown trial %s ignored.", type(searcher).__name__, trial_id)
