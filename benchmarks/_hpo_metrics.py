"""What `hpo_suite.py` reports from its runs (one row per instance x seed x method, columns
``regret_<percent>``): mean and standard error of normalised regret, average rank, the best peer and
the win rate against it, the regret/rank plot and the critical-difference rank plot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import friedmanchisquare, rankdata, studentized_range

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
        if "ours" in part.columns:
            row["ours"] = float(part["ours"].iloc[0])
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
    palette = plt.get_cmap("tab20").colors  # distinct colours for up to 20 methods
    for index, (method, runs) in enumerate(curves.items()):
        if not runs:
            continue
        stacked = np.vstack(runs)
        mean = stacked.mean(axis=0)
        se = stacked.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else np.zeros_like(mean)
        width = 2.5 if method == ours else 1.2
        style = "-" if index % 2 == 0 else "--"  # tab20 pairs light and dark shades: dash every second
        (line,) = left.plot(CURVE * 100, mean, label=method, linewidth=width, linestyle=style,
                            color=palette[index % len(palette)])
        left.fill_between(CURVE * 100, mean - se, mean + se, color=line.get_color(), alpha=0.15)
        mean_ranks = [ranked.loc[frame["method"] == method, column].mean() for column in KEYS]
        right.plot([f * 100 for f in FRACTIONS], mean_ranks, marker="o", label=method, linewidth=width,
                   linestyle=style,
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


# -- critical-difference rank plot (Demšar 2006) -------------------------------------------------------

#: Significance level of the Friedman test and of the Nemenyi critical difference.
ALPHA = 0.05


@dataclass(frozen=True)
class CriticalDifference:
    """Average ranks at one budget fraction and which of them differ significantly.

    One block per instance: each method's rank in every (instance, seed) cell (``ranks()``), averaged
    over the seeds of the instance; ``ranks`` is the mean of those over instances, which equals the
    ``rank_<p>`` column of ``table()`` when every instance has the same seeds. The Nemenyi critical
    difference treats the N instances as the blocks, not the N x seeds cells: seeds of one instance are
    not independent data sets, and averaging ranks over seeds only lowers their spread, so the test
    stays conservative.
    """

    column: str
    #: Average rank per method, best (lowest) first.
    ranks: pd.Series
    n_blocks: int
    #: Friedman chi-square test over the blocks (NaN with fewer than 3 methods or 2 blocks).
    friedman_statistic: float
    friedman_p: float
    #: ``q_alpha`` of the Nemenyi test and the critical difference of average ranks.
    q_alpha: float
    cd: float
    #: Maximal groups of methods (in rank order) whose average ranks differ by less than ``cd``.
    cliques: list[list[str]]

    @property
    def n_methods(self) -> int:
        return len(self.ranks)


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """``q_alpha`` of the Nemenyi test for ``k`` methods: the studentized range quantile / sqrt(2)
    (Demšar 2006, table 5a: k=2 -> 1.960, k=5 -> 2.728, k=10 -> 3.164)."""
    if k < 2:
        raise ValueError(f"`k >= 2` methods are needed to compare ranks, but got (k={k}); "
                         "run at least two methods.")
    return float(studentized_range.ppf(1.0 - alpha, k, np.inf) / np.sqrt(2.0))


def block_ranks(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Instances x methods: each method's rank at ``column`` per (instance, seed) cell, averaged over
    the instance's seeds. Every cell must hold each method exactly once."""
    if column not in KEYS:
        raise ValueError(f"`column` must be one of {KEYS}, but got (column={column!r}); "
                         "pass a budget-fraction column such as 'regret_50'.")
    missing = int(frame[KEYS].isna().to_numpy().sum())
    if missing:
        raise ValueError(f"regret columns {KEYS} must have no missing values, but {missing} are NaN; "
                         "drop those runs or rerun them.")
    methods = sorted(frame["method"].unique())
    for cell, part in frame.groupby(CELL):
        if sorted(part["method"]) != methods:
            where = dict(zip(CELL, cell, strict=True))
            raise ValueError(f"every (instance, seed) cell must hold each method once, but cell {where} "
                             f"has {sorted(part['method'])} of {methods}; "
                             "drop incomplete cells or rerun the missing methods.")
    ranked = ranks(frame)
    return ranked.groupby(["instance", "method"])[column].mean().unstack("method")


def cliques(average: pd.Series, cd: float) -> list[list[str]]:
    """Maximal runs of methods (``average`` sorted best first) whose ranks span less than ``cd``; a
    method alone is no clique."""
    names, values = list(average.index), average.to_numpy()
    groups: list[list[str]] = []
    previous_end = 0
    for start in range(len(names)):
        end = start
        while end + 1 < len(names) and values[end + 1] - values[start] < cd:
            end += 1
        # The last member only moves right as ``start`` does: a run is maximal when it reaches further.
        if end > start and end > previous_end:
            groups.append(names[start:end + 1])
        previous_end = max(previous_end, end)
    return groups


def critical_difference(frame: pd.DataFrame, column: str, alpha: float = ALPHA) -> CriticalDifference:
    """Average ranks, Friedman test and Nemenyi critical difference at ``column`` (e.g. ``'regret_50'``)
    over the instances of ``frame`` (one row per instance x seed x method)."""
    blocks = block_ranks(frame, column)
    n, k = blocks.shape
    average = blocks.mean(axis=0).sort_values(kind="stable")
    statistic = p_value = float("nan")
    if k >= 3 and n >= 2:
        statistic, p_value = (float(v) for v in friedmanchisquare(*(blocks[m] for m in blocks.columns)))
    q = nemenyi_q(k, alpha)
    cd = q * float(np.sqrt(k * (k + 1) / (6.0 * n)))
    return CriticalDifference(column=column, ranks=average, n_blocks=n, friedman_statistic=statistic,
                              friedman_p=p_value, q_alpha=q, cd=cd, cliques=cliques(average, cd))


def cd_plot(frame: pd.DataFrame, column: str, ours: str, title: str) -> Any:
    """Critical-difference diagram at ``column``: methods at their average rank on a rank axis (1 =
    lowest regret, left), the better half labelled on the left and the rest on the right, bars joining
    methods whose ranks differ by less than the Nemenyi CD (drawn above the axis), ``ours`` in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = critical_difference(frame, column)
    k = result.n_methods
    half = (k + 1) // 2
    rows = max(half, k - half)
    clique_gap, row_gap = 0.18, 0.42
    first_row = 0.35 + clique_gap * len(result.cliques)
    fig, ax = plt.subplots(figsize=(10.0, 1.6 + 0.32 * rows + 0.12 * len(result.cliques)))
    pad = max(0.15, 0.05 * k)
    ax.set_xlim(1 - pad, max(k, 1 + result.cd) + pad)  # with few instances the CD can outrun the axis
    ax.set_ylim(first_row + row_gap * rows, -1.2)
    ax.axis("off")
    # Rank axis with integer ticks above it.
    ax.plot([1, k], [0, 0], color="black", linewidth=1.2)
    for tick in range(1, k + 1):
        ax.plot([tick, tick], [0, -0.12], color="black", linewidth=1.0)
        ax.text(tick, -0.18, str(tick), ha="center", va="bottom", fontsize=9)
    # The critical difference as a bar of its own length, from rank 1.
    ax.plot([1, 1 + result.cd], [-0.85, -0.85], color="black", linewidth=1.5)
    for end in (1, 1 + result.cd):
        ax.plot([end, end], [-0.93, -0.77], color="black", linewidth=1.0)
    ax.text(1 + result.cd / 2, -0.95, f"CD = {result.cd:.2f}", ha="center", va="bottom", fontsize=9)
    for i, group in enumerate(result.cliques):
        y = 0.25 + clique_gap * i
        ax.plot([result.ranks[group[0]] - 0.03, result.ranks[group[-1]] + 0.03], [y, y], color="black",
                linewidth=3.0, solid_capstyle="round")
    # Lines from each method's rank down to its label; rows ordered so that no two lines cross.
    names = list(result.ranks.index)
    sides = [(names[:half], 1 - pad, "right"), (names[half:][::-1], k + pad, "left")]
    for group, edge, align in sides:
        for row, method in enumerate(group):
            rank, y = float(result.ranks[method]), first_row + row_gap * row
            weight = "bold" if method == ours else "normal"
            ax.plot([rank, rank, edge], [0, y, y], color="black", linewidth=1.6 if method == ours else 0.8)
            label = f"{method} ({rank:.2f})" if align == "right" else f"({rank:.2f}) {method}"
            ax.text(edge + (-0.05 if align == "right" else 0.05), y, label, ha=align, va="center",
                    fontsize=9, fontweight=weight)
    p = "n/a" if np.isnan(result.friedman_p) else f"{result.friedman_p:.2g}"
    ax.set_title(f"{title}\naverage rank at {column.split('_')[1]} % of the budget (1 = lowest regret; "
                 f"N = {result.n_blocks} instances, Friedman p = {p}, Nemenyi α = {ALPHA})", fontsize=10)
    return fig
