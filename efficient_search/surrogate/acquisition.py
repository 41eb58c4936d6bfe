"""Cost-aware expected improvement, as pure numpy functions.

Quick-Tune scores each candidate (a new config at the first budget, or a paused run at its next
budget) by the expected improvement of its metric at that budget over the best value any run has
reached at that budget, divided by the predicted cost of getting there to the power ``alpha``.

>>> import numpy as np
>>> ei = expected_improvement(np.array([0.8, 0.6]), np.array([0.01, 0.01]), best=np.array([0.7, 0.7]))
>>> bool(ei[0] > ei[1])
True
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

MODES = ("max", "min")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"`mode` must be 'max' or 'min', but got {mode!r}.")


def expected_improvement(mean: np.ndarray, variance: np.ndarray, best: np.ndarray | float, *,
                         mode: str = "max") -> np.ndarray:
    """``E[max(f - best, 0)]`` for ``f ~ N(mean, variance)`` (``best - f`` when ``mode="min"``).

    Where ``best`` is NaN (nothing observed at that budget yet), the worst candidate's mean stands in
    for it, so every candidate is scored against the same stand-in.
    """
    _check_mode(mode)
    mean = np.asarray(mean, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    if mean.shape != variance.shape:
        raise ValueError(f"`mean` and `variance` must have the same shape, but got {mean.shape} and "
                         f"{variance.shape}.")
    if (variance < 0).any() or not np.isfinite(mean).all() or not np.isfinite(variance).all():
        raise ValueError("`mean` must be finite and `variance` finite and >= 0.")
    sign = 1.0 if mode == "max" else -1.0
    gain_mean = sign * mean  # maximise in both modes
    best = sign * np.broadcast_to(np.asarray(best, dtype=np.float64), mean.shape)
    if mean.size:
        best = np.where(np.isnan(best), gain_mean.min(), best)
    std = np.sqrt(variance)
    improvement = gain_mean - best
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std > 0, improvement / std, 0.0)
    ei = np.where(std > 0, improvement * norm.cdf(z) + std * norm.pdf(z), np.maximum(improvement, 0.0))
    return np.maximum(ei, 0.0)


def cost_aware_expected_improvement(mean: np.ndarray, variance: np.ndarray, best: np.ndarray | float,
                                    cost: np.ndarray, *, alpha: float = 1.0, mode: str = "max",
                                    min_cost: float = 1e-6) -> np.ndarray:
    """:func:`expected_improvement` divided by ``cost ** alpha`` (``alpha = 0``: plain EI)."""
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"`alpha` must be a finite number >= 0, but got {alpha!r}.")
    cost = np.asarray(cost, dtype=np.float64)
    if np.isnan(cost).any() or (cost < 0).any():
        raise ValueError("`cost` must hold seconds >= 0 (no NaN).")
    ei = expected_improvement(mean, variance, best, mode=mode)
    return ei / np.maximum(np.broadcast_to(cost, ei.shape), min_cost) ** alpha


def best_at_budgets(curves: np.ndarray, steps: np.ndarray, *, mode: str = "max") -> np.ndarray:
    """The best value observed in column ``steps[i]`` of ``curves`` (all runs), for each ``i``.

    ``curves`` is ``(N, T)`` with NaN unobserved; a column nobody reached falls back to the best value
    at the closest lower column with data (a lower bound when curves improve with budget), else NaN.
    """
    _check_mode(mode)
    curves = np.asarray(curves, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    if curves.ndim != 2:
        raise ValueError(f"`curves` must be 2-D (runs, budget steps), but got shape {curves.shape}.")
    if steps.size and (steps.min() < 0 or steps.max() >= curves.shape[1]):
        raise ValueError(f"`steps` must be column indices in [0, {curves.shape[1] - 1}], but got "
                         f"{steps.min()}..{steps.max()}.")
    columns = np.full(curves.shape[1], np.nan)
    observed = np.isfinite(curves).any(axis=0)
    if curves.shape[0]:
        reduce = np.nanmax if mode == "max" else np.nanmin
        columns[observed] = reduce(curves[:, observed], axis=0)
    filled = columns.copy()
    for j in range(1, filled.size):  # carry the last column with data forward
        if np.isnan(filled[j]):
            filled[j] = filled[j - 1]
    return filled[steps]
