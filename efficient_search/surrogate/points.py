"""Training and query points of the surrogate: (run, budget step, visible prefix) triples as tensors.

A point asks "what is run ``i``'s metric after step ``t``, given its values at the first ``k`` steps?"
(``k <= t``). Meta-training samples ``k`` at random, so the model learns both to predict from the
config alone (``k = 0``) and to extrapolate a partial curve; a task's own observations use ``k = t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Points:
    """Model inputs of ``P`` points (see :mod:`efficient_search.surrogate.networks`) and their targets."""

    config: torch.Tensor  # (P, C)
    budget: torch.Tensor  # (P,)
    curve: torch.Tensor  # (P, T)
    mask: torch.Tensor  # (P, T)
    meta: torch.Tensor  # (P, M)
    target: torch.Tensor  # (P,), NaN for queries

    def __len__(self) -> int:
        return int(self.budget.shape[0])

    def take(self, index: np.ndarray | torch.Tensor) -> Points:
        i = torch.as_tensor(index, dtype=torch.long)
        return Points(self.config[i], self.budget[i], self.curve[i], self.mask[i], self.meta[i],
                      self.target[i])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"config": self.config, "budget": self.budget, "curve": self.curve, "mask": self.mask,
                "meta": self.meta, "target": self.target}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "") -> Points:
        return cls(*(tensors[f"{prefix}{name}"] for name in ("config", "budget", "curve", "mask", "meta",
                                                             "target")))


def sample_meta_points(curves: np.ndarray, max_points: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, steps, prefix_lengths)`` of at most ``max_points`` observed points, prefixes at random."""
    rows, steps = np.nonzero(np.isfinite(curves))
    if rows.size > max_points:
        keep = np.sort(rng.choice(rows.size, size=max_points, replace=False))
        rows, steps = rows[keep], steps[keep]
    prefix = rng.integers(0, steps + 1)  # k in [0, t]: the first k steps are visible
    return rows, steps, prefix


def task_points(curves: np.ndarray, max_points: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A task's observed points, each twice: with its whole earlier curve visible (what a paused run is
    asked with) and with none (what a new config is asked with), so both kinds of query find their match.

    Capped at ``max_points``; each run's latest step is kept first (it says most about where the run is
    heading).
    """
    observed = np.isfinite(curves)
    rows, steps = np.nonzero(observed)
    pairs = max_points // 2
    if rows.size > pairs:
        last = curves.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)
        is_last = steps == last[rows]
        latest, others = np.flatnonzero(is_last), np.flatnonzero(~is_last)
        if latest.size >= pairs:
            keep = rng.choice(latest, size=pairs, replace=False)
        else:
            keep = np.concatenate([latest, rng.choice(others, size=pairs - latest.size, replace=False)])
        keep = np.sort(keep)
        rows, steps = rows[keep], steps[keep]
    return (np.concatenate([rows, rows]), np.concatenate([steps, steps]),
            np.concatenate([steps, np.zeros_like(steps)]))


def build_points(
    config: np.ndarray,
    curves: np.ndarray,
    meta: np.ndarray,
    budgets: np.ndarray,
    rows: np.ndarray,
    steps: np.ndarray,
    prefix: np.ndarray,
) -> Points:
    """Tensors for points ``(rows[p], steps[p], prefix[p])``.

    ``config`` ``(N, C)`` and ``meta`` ``(N, M)`` are per run, ``curves`` ``(N, T)`` normalised values
    (NaN unobserved), ``budgets`` ``(T,)`` normalised budgets of the steps.
    """
    visible = np.arange(curves.shape[1])[None, :] < prefix[:, None]  # (P, T)
    values = curves[rows]
    mask = visible & np.isfinite(values)
    return Points(
        config=torch.as_tensor(config[rows], dtype=torch.float32),
        budget=torch.as_tensor(budgets[steps], dtype=torch.float32),
        curve=torch.as_tensor(np.where(mask, values, 0.0), dtype=torch.float32),
        mask=torch.as_tensor(mask, dtype=torch.float32),
        meta=torch.as_tensor(meta[rows], dtype=torch.float32),
        target=torch.as_tensor(values[np.arange(rows.size), steps], dtype=torch.float32),
    )
