"""Validation of the searcher's options: errors that state the rule, the values and the fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.result import DEFAULT_METRIC

from efficient_search.validate import is_int

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
