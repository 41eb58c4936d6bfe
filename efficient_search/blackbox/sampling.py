"""Seeded samples from a :class:`Blackbox`: random configs, the fidelity as budget steps, reference
values of an instance, and a meta-dataset of sampled learning curves (the Quick-Tune protocol).

- :func:`fidelity_steps`: the fidelity values budget step ``1..n`` stands for: every whole value of an
  integer fidelity (``epoch`` 1-52: step k is epoch k), else ``points`` evenly spaced values from the
  minimum to the maximum (``trainsize`` 0.03-1.0 in 20 steps);
- :func:`reference_values`: best, worst and median full-run cost of ``samples`` random configs at
  the maximum fidelity (2,000 by default), cached per blackbox, instance and metric in memory. For a
  surrogate this *estimates* the best and worst values of the instance: a search may beat the
  sample's best (negative normalised regret);
- :func:`sample_meta_dataset`: random configs' curves and costs on some instances as a
  :class:`~efficient_search.surrogate.MetaDataset`, what the Quick-Tune surrogate meta-trains on.

Example::

    bench = YahpoBenchmark("lcbench")
    ref = reference_values(bench, "3945")            # ReferenceValues(best=..., worst=..., ...)
    data = sample_meta_dataset(bench, ["7593", "34539"], configs_per_instance=64, seed=0)
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from ray.tune.search.sample import Domain

from efficient_search.blackbox.base import COST_KEY, Blackbox, Fidelity
from efficient_search.surrogate.meta_dataset import MetaDataset, per_step_costs
from efficient_search.validate import check_int

#: Budget steps of a fidelity that is not a small range of whole numbers.
GRID_POINTS = 20
#: Whole-number fidelities with more values than this are gridded too.
MAX_INTEGER_STEPS = 200
REFERENCE_SAMPLES = 2000

_references: weakref.WeakKeyDictionary[Blackbox, dict[tuple[Any, ...], ReferenceValues]] = (
    weakref.WeakKeyDictionary())


def metric_mode(blackbox: Blackbox, metric: str | None = None, mode: str | None = None) -> tuple[str, str]:
    """``(metric, mode)``: the blackbox's default objective, or ``metric`` with the mode the blackbox
    knows for it (``modes``, e.g. YAHPO's ``y_minimize``); ``mode`` must agree where it is known."""
    metric = metric or blackbox.metric
    if metric not in blackbox.metric_names:
        raise ValueError(f"`metric` {metric!r} is not an output of {blackbox!r}. Fix: pass one of "
                         f"{blackbox.metric_names}.")
    known = blackbox.mode if metric == blackbox.metric else getattr(blackbox, "modes", {}).get(metric)
    if mode is not None and mode not in ("max", "min"):
        raise ValueError(f"`mode` must be 'max' or 'min', but got {mode!r}.")
    if known is not None and mode is not None and mode != known:
        raise ValueError(f"`mode` {mode!r} contradicts the blackbox: {metric!r} is to be "
                         f"{known}imised. Fix: pass mode={known!r} or leave it out.")
    if known is None and mode is None:
        raise ValueError(f"the blackbox does not say whether {metric!r} is to be maximised or "
                         f"minimised. Fix: pass mode='max' or mode='min'.")
    return metric, str(known or mode)


def fidelity_steps(fidelity: Fidelity, points: int = GRID_POINTS) -> list[float]:
    """The fidelity value of each budget step (step k is element k-1), increasing."""
    check_int("points", points, min=2)
    low, high = fidelity.min, fidelity.max
    if fidelity.integer and high - low + 1 <= MAX_INTEGER_STEPS:
        return [int(v) for v in range(int(low), int(high) + 1)]
    values = np.linspace(low, high, points)
    if fidelity.integer:
        return sorted({int(round(v)) for v in values})
    return [float(v) for v in values]


def sample_configs(space: Mapping[str, Any], n: int, seed: int | Sequence[int]) -> list[dict[str, Any]]:
    """``n`` configs drawn from a flat Ray Tune ``space`` with a generator seeded by ``seed``."""
    check_int("n", n, min=0)
    rng = np.random.default_rng(seed)
    configs = []
    for _ in range(n):
        config = {}
        for name, domain in space.items():
            value = domain.sample(random_state=rng) if isinstance(domain, Domain) else domain
            config[name] = value.item() if isinstance(value, np.generic) else value
        configs.append(config)
    return configs


def _seed(seed: int, instance: str) -> list[int]:
    """A generator seed per (seed, instance): the same instance gets the same sample in every run."""
    return [int(seed), *instance.encode()]


@dataclass(frozen=True)
class ReferenceValues:
    """An instance's best and worst metric value and median full-run seconds, from random configs."""

    best: float
    worst: float
    full_run_s: float
    samples: int


def reference_values(blackbox: Blackbox, instance: str, *, metric: str | None = None,
                     mode: str | None = None, samples: int = REFERENCE_SAMPLES,
                     seed: int = 0) -> ReferenceValues:
    """Best/worst of ``metric`` and the median ``cost/seconds`` of ``samples`` random configs at the
    maximum fidelity (an estimate for a surrogate; see the module docstring). Cached in memory."""
    metric, mode = metric_mode(blackbox, metric, mode)
    key = (str(instance), metric, mode, samples, seed)
    cache = _references.setdefault(blackbox, {})
    if key not in cache:
        configs = sample_configs(blackbox.space(), samples, _seed(seed, str(instance)))
        outs = blackbox.evaluate_many(configs, instance, [blackbox.fidelity.max] * len(configs))
        values = np.asarray([out[metric] for out in outs], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(f"no finite {metric!r} among {samples} random configs of instance "
                             f"{instance!r}. Fix: pick another metric or instance.")
        best, worst = (values.max(), values.min()) if mode == "max" else (values.min(), values.max())
        seconds = float(np.median([out[COST_KEY] for out in outs]))
        cache[key] = ReferenceValues(float(best), float(worst), seconds, samples)
    return cache[key]


def sample_curves(blackbox: Blackbox, instance: str, configs: Sequence[Mapping[str, Any]],
                  steps: Sequence[float], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, T)`` metric values and cumulative seconds of ``configs`` at every fidelity in ``steps``."""
    pairs = [(c, f) for c in configs for f in steps]
    outs = blackbox.evaluate_many([c for c, _ in pairs], instance, [f for _, f in pairs])
    shape = (len(configs), len(steps))
    values = np.asarray([out[metric] for out in outs], dtype=np.float64).reshape(shape)
    seconds = np.asarray([out[COST_KEY] for out in outs], dtype=np.float64).reshape(shape)
    return values, seconds


def sample_meta_dataset(blackbox: Blackbox, instances: Sequence[str], *, configs_per_instance: int,
                        seed: int, metric: str | None = None, mode: str | None = None,
                        points: int = GRID_POINTS) -> MetaDataset:
    """Curves of ``configs_per_instance`` random configs on each of ``instances`` at every budget step
    (:func:`fidelity_steps`), as a MetaDataset: budgets are the fidelity values where they are all
    positive (else the step numbers), costs per step (a non-monotone cumulative cost is clipped)."""
    check_int("configs_per_instance", configs_per_instance, min=1)
    metric, mode = metric_mode(blackbox, metric, mode)
    steps = fidelity_steps(blackbox.fidelity, points)
    configs: list[dict[str, Any]] = []
    curves: list[np.ndarray] = []
    costs: list[np.ndarray] = []
    names: list[str] = []
    for instance in instances:
        sampled = sample_configs(blackbox.space(), configs_per_instance, _seed(seed, str(instance)))
        values, seconds = sample_curves(blackbox, instance, sampled, steps, metric)
        values[~np.isfinite(values)] = np.nan
        keep = np.isfinite(values).any(axis=1)
        configs.extend(c for c, k in zip(sampled, keep, strict=True) if k)
        curves.append(values[keep])
        costs.append(per_step_costs(seconds[keep]))
        names.extend([str(instance)] * int(keep.sum()))
    budgets = np.asarray(steps, dtype=np.float64)
    if budgets[0] <= 0:
        budgets = np.arange(1, len(steps) + 1, dtype=np.float64)
    return MetaDataset(configs=pd.DataFrame(configs), curves=np.vstack(curves), costs=np.vstack(costs),
                       datasets=np.asarray(names), budgets=budgets, metric=metric,
                       mode=mode, budget_name=blackbox.fidelity.name)
