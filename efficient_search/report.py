"""Ranked tables and plots of an experiment in the store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def objectives(store: ParquetStore, experiment: str) -> tuple[list[str], list[str]]:
    """The (metrics, modes) a multi-objective run recorded; empty lists for one objective."""
    meta = store.metadata(experiment)
    return list(meta.get("objectives") or []), list(meta.get("modes") or [])


def pareto_front(store: ParquetStore, experiment: str, metrics: list[str] | None = None,
                 modes: list[str] | None = None) -> pd.DataFrame:
    """The non-dominated trials (last reported result of each), sorted by the first objective.

    ``metrics``/``modes`` default to the objectives the run recorded.
    """
    import numpy as np

    from efficient_search.searchers.pareto import non_dominated_sort

    recorded, recorded_modes = objectives(store, experiment)
    metrics = metrics or recorded
    if modes is None:  # each metric's mode as the run recorded it
        known = dict(zip(recorded, recorded_modes, strict=False))
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise ValueError(f"No recorded mode for {unknown} in experiment {experiment!r}. Fix: pass "
                             "modes=['min', ...], one per metric.")
        modes = [known[m] for m in metrics]
    if len(metrics) < 2 or len(modes) != len(metrics):
        raise ValueError(
            f"A Pareto front needs two or more objectives with one mode each, but experiment "
            f"{experiment!r} gives metrics={metrics!r}, modes={modes!r}. Fix: pass "
            "metrics=['val_perplexity', 'params'], modes=['min', 'min']."
        )
    results = store.results(experiment)
    columns = [m if m.startswith(("metric.", "cost.", "fidelity.")) else f"metric.{m}" for m in metrics]
    missing = [c for c in columns if c not in results.columns]
    if missing:
        raise ValueError(f"Experiment {experiment!r} never reported {missing}.")
    last = (results[results["status"] == RUNNING].sort_values("iteration")
            .groupby("trial_id").tail(1).dropna(subset=columns))
    signs = np.array([1.0 if mode == "min" else -1.0 for mode in modes])
    losses = last[columns].to_numpy(dtype=float) * signs
    finite = np.isfinite(losses).all(axis=1)
    last, losses = last[finite], losses[finite]
    if last.empty:
        return last
    front = last[non_dominated_sort(losses) == 0]
    keep = ["trial_id", *columns, *sorted(c for c in front.columns if c.startswith("config."))]
    return front[keep].sort_values(columns[0]).reset_index(drop=True)


def save_pareto_plot(store: ParquetStore, experiment: str, out_dir: str | os.PathLike[str],
                     metrics: list[str] | None = None, modes: list[str] | None = None) -> Path:
    """Every trial and the Pareto front of the first two objectives, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recorded, recorded_modes = objectives(store, experiment)
    names = (metrics or recorded)[:2]
    front = pareto_front(store, experiment, names, modes[:2] if modes else None)
    y, x = (n if n.startswith(("metric.", "cost.", "fidelity.")) else f"metric.{n}" for n in names)
    results = store.results(experiment)
    last = results[results["status"] == RUNNING].sort_values("iteration").groupby("trial_id").tail(1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(last[x], last[y], s=14, alpha=0.5, label="trials")
    ordered = front.sort_values(x)
    ax.step(ordered[x], ordered[y], where="post", color="C3", marker="o", markersize=4,
            label=f"Pareto front ({len(front)})")
    ax.set(xlabel=x.split(".", 1)[1], ylabel=y.split(".", 1)[1], title=f"{experiment}: Pareto front")
    if (last[y] > 0).all() and last[y].max() / max(last[y].min(), 1e-12) > 20:
        ax.set_yscale("log")
    ax.legend()
    return save_figure(fig, Path(out_dir) / f"{experiment}-pareto-front.png")


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out ``fig``, write it as a PNG at ``path`` (folders created) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
