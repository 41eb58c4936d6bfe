"""Ranked tables and plots of an experiment in the store."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from efficient_search.store import ParquetStore
from efficient_search.store.rows import RUNNING


def ranked_table(store: ParquetStore, experiment: str, metric: str | None = None,
                 mode: str | None = None) -> pd.DataFrame:
    """Trials best first, with their config, status, results count and best metric."""
    table = store.trials(experiment, metric, mode)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.drop(columns=["error"]).rename(columns=lambda c: c.removeprefix("config."))


def best_so_far(results: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """Best ``metric`` reached by any trial, against seconds since the first result."""
    rows = results[results["status"] == RUNNING].dropna(subset=[metric, "timestamp"])
    rows = rows.sort_values("timestamp")
    best = rows[metric].cummax() if mode == "max" else rows[metric].cummin()
    return pd.DataFrame({"seconds": rows["timestamp"] - rows["timestamp"].min(), "best": best})


def save_plots(store: ParquetStore, experiment: str, out_dir: str | os.PathLike[str],
               metric: str | None = None, mode: str | None = None) -> list[Path]:
    """Learning curves per trial and best-so-far over time, as PNG files in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    results = store.results(experiment)
    column, mode = store._objective(experiment, metric, mode, results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reported = results[results["status"] == RUNNING]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for trial_id, rows in reported.groupby("trial_id"):
        ax.plot(rows["iteration"], rows[column], marker="o", markersize=3, label=trial_id)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="reported result (iteration)", ylabel=column.removeprefix("metric."),
           title=f"{experiment}: learning curves")
    if reported["trial_id"].nunique() <= 12:
        ax.legend(fontsize=7)
    curves = out / f"{experiment}-learning-curves.png"
    fig.tight_layout()
    fig.savefig(curves, dpi=120)
    plt.close(fig)

    trace = best_so_far(results, column, mode)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.step(trace["seconds"], trace["best"], where="post")
    ax.set(xlabel="seconds since first result", ylabel=f"best {column.removeprefix('metric.')}",
           title=f"{experiment}: best so far ({mode})")
    best = out / f"{experiment}-best-so-far.png"
    fig.tight_layout()
    fig.savefig(best, dpi=120)
    plt.close(fig)
    return [curves, best]
