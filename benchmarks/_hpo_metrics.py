"""What `hpo_suite.py` reports from its runs (one row per instance x seed x method, columns
``regret_<percent>``): mean and standard error of normalised regret, average rank, the best peer and
the win rate against it, and the regret/rank plot."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
#: Points of the budget (as fractions) the regret curves are sampled at for the plot.
CURVE = np.linspace(0.02, 1.0, 50)
CELL = ["instance", "seed"]


def key(fraction: float) -> str:
    return f"regret_{round(fraction * 100)}"


KEYS = [key(f) for f in FRACTIONS]


def standard_error(values: pd.Series) -> float:
    """Standard error of the mean (NaN with fewer than two values)."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def ranks(frame: pd.DataFrame) -> pd.DataFrame:
    """Each row's rank among the methods of its (instance, seed) cell, per budget fraction (1 = lowest
    regret; ties share their average rank)."""
    out = frame[CELL + ["method"]].copy()
    for column in KEYS:
        out[column] = frame.groupby(CELL)[column].transform(lambda v: pd.Series(rankdata(v), index=v.index))
    return out


def table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean and standard error of regret and the average rank at each fraction, overhead."""
    ranked = ranks(frame)
    rows = []
    for method, part in frame.groupby("method", sort=False):
        row: dict[str, Any] = {"method": method}
        for column in KEYS:
            row[f"{column}_mean"] = float(part[column].mean())
            row[f"{column}_se"] = standard_error(part[column])
            row[f"rank_{column.split('_')[1]}"] = float(ranked.loc[part.index, column].mean())
        row["overhead_share"] = float(part["overhead_share"].mean())
        row["runs"] = len(part)
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def best_peer(summary: pd.DataFrame, peers: list[str]) -> str:
    """The peer with the lowest mean regret at 50 % of the budget."""
    return str(summary.loc[peers, "regret_50_mean"].idxmin())


def win_rate(frame: pd.DataFrame, ours: str, other: str) -> float:
    """Share of (instance, seed, fraction) cells where ``ours`` has lower regret than ``other`` (ties
    count half)."""
    mine = frame[frame["method"] == ours].set_index(CELL)[KEYS]
    theirs = frame[frame["method"] == other].set_index(CELL)[KEYS].loc[mine.index]
    a, b = mine.to_numpy(), theirs.to_numpy()
    return float(((a < b) + 0.5 * (a == b)).mean())


def plot(curves: dict[str, list[np.ndarray]], frame: pd.DataFrame, ours: str, title: str) -> Any:
    """Left: mean normalised regret over simulated time with standard-error bands; right: average rank
    per budget fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 4.2))
    ranked = ranks(frame)
    for method, runs in curves.items():
        if not runs:
            continue
        stacked = np.vstack(runs)
        mean = stacked.mean(axis=0)
        se = stacked.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else np.zeros_like(mean)
        width = 2.5 if method == ours else 1.2
        (line,) = left.plot(CURVE * 100, mean, label=method, linewidth=width)
        left.fill_between(CURVE * 100, mean - se, mean + se, color=line.get_color(), alpha=0.15)
        mean_ranks = [ranked.loc[frame["method"] == method, column].mean() for column in KEYS]
        right.plot([f * 100 for f in FRACTIONS], mean_ranks, marker="o", label=method, linewidth=width,
                   color=line.get_color())
    left.set_xlabel("simulated time (% of budget)")
    left.set_ylabel("normalised regret (mean ± s.e.)")
    left.set_yscale("symlog", linthresh=1e-3)
    left.set_title(title)
    right.set_xlabel("budget used (%)")
    right.set_ylabel("average rank (1 = best)")
    right.invert_yaxis()
    right.set_xticks([f * 100 for f in FRACTIONS])
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
