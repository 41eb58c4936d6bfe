"""Loader that turns finished experiments of our Parquet store into a meta-dataset.

Each trial becomes one run: its ``config.*`` values, its metric after every reported iteration (or
every value of a fidelity column) as the curve, and per-step seconds from the cumulative
``cost.seconds`` (else ``time_total_s``) as the costs. An experiment is one data set, named after the
experiment unless ``dataset_names`` says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from efficient_search.surrogate.meta_dataset import MODES, MetaDataset, per_step_costs

if TYPE_CHECKING:
    from efficient_search.store.parquet import ParquetStore

END_STATUSES = ("TERMINATED", "ERROR")
DEFAULT_COSTS = ("cost.seconds", "time_total_s")


def _open_store(store: Any) -> ParquetStore:
    # Imported here: the store package also holds the Ray Tune callback, which imports Ray.
    from efficient_search.store.parquet import ParquetStore

    if isinstance(store, ParquetStore):
        return store
    if isinstance(store, (str, os.PathLike)):
        return ParquetStore(store)
    raise TypeError(f"`store` must be a ParquetStore or its root path, but got {type(store).__name__}.")


def _objective(store: ParquetStore, experiments: Sequence[str], metric: str | None,
               mode: str | None) -> tuple[str, str]:
    recorded = [store.metadata(e) for e in experiments]
    if metric is None:
        names = {m.get("metric") for m in recorded}
        if len(names) != 1 or None in names:
            raise ValueError(f"`metric` is needed: experiments {list(experiments)} recorded metrics "
                             f"{sorted(map(str, names))}. Fix: pass metric='val_accuracy' (for example).")
        metric = str(names.pop())
    metric = metric.removeprefix("metric.")
    if mode is None:
        modes = {m.get("mode") for m in recorded if m.get("metric") == metric}
        if len(modes) != 1 or None in modes:
            raise ValueError(f"`mode` is needed for metric {metric!r} (recorded: {sorted(map(str, modes))}). "
                             f"Fix: pass mode='max' or 'min'.")
        mode = str(modes.pop())
    if mode not in MODES:
        raise ValueError(f"`mode` must be 'max' or 'min', but got {mode!r}.")
    return metric, mode


def load_store(
    store: Any,
    experiments: Sequence[str] | str,
    *,
    metric: str | None = None,
    mode: str | None = None,
    budget: str = "iteration",
    cost: str | None = None,
    cumulative_cost: bool = True,
    dataset_names: Mapping[str, str] | None = None,
    meta_features: Mapping[str, Mapping[str, float]] | pd.DataFrame | None = None,
) -> MetaDataset:
    """Trials of ``experiments`` in ``store`` as a :class:`MetaDataset`.

    ``metric``/``mode`` default to what the experiments recorded; ``budget`` is the column whose values
    are the curve's steps (``iteration``, or e.g. ``fidelity.epoch``); ``cost`` the seconds column
    (default ``cost.seconds``, else ``time_total_s``), read as cumulative unless ``cumulative_cost`` is
    False.
    """
    db = _open_store(store)
    names = [experiments] if isinstance(experiments, str) else [str(e) for e in experiments]
    if not names:
        raise ValueError("`experiments` must name at least one experiment of the store.")
    missing = [name for name in names if name not in db.experiments()]
    if missing:
        raise ValueError(f"`experiments` {missing} are not in the store {db.root!r} (experiments there: "
                         f"{', '.join(db.experiments()) or 'none yet'}).")
    metric, mode = _objective(db, names, metric, mode)
    dataset_names = dict(dataset_names or {})
    unknown = [k for k in dataset_names if k not in names]
    if unknown:
        raise ValueError(f"`dataset_names` maps experiments {unknown} that are not loaded ({names}).")
    column = f"metric.{metric}"
    frames = []
    for name in names:
        frame = db.results(name)
        if frame.empty:
            raise ValueError(f"experiment {name!r} of store {db.root!r} has no rows yet.")
        if column not in frame.columns:
            known = sorted(c.removeprefix("metric.") for c in frame.columns if c.startswith("metric."))
            raise ValueError(f"experiment {name!r} never reported metric {metric!r}. Known: {known}.")
        if budget not in frame.columns:
            raise ValueError(f"`budget` {budget!r} is not a column of experiment {name!r}. Fix: pass "
                             f"'iteration' or a fidelity column such as 'fidelity.epoch'.")
        reported = frame[~frame["status"].isin(END_STATUSES)]
        # A trial that only has its end row (results flushed elsewhere) still counts.
        ended_only = ~frame["trial_id"].isin(reported["trial_id"])
        frame = pd.concat([reported, frame[ended_only]], ignore_index=True)
        frame["__dataset"] = dataset_names.get(name, name)
        frame["__run"] = name + "/" + frame["trial_id"].astype(str)
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    steps = rows[budget].to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(steps) & (steps > 0))
    if bad.any():
        raise ValueError(f"`budget` column {budget!r} must be positive and finite in every row, but got "
                         f"values like {sorted(set(steps[bad].tolist()))[:5]}.")
    budgets = np.unique(steps)
    cost_column = cost if cost is not None else next((c for c in DEFAULT_COSTS if c in rows.columns), None)
    if cost_column is not None and cost_column not in rows.columns:
        raise ValueError(f"`cost` {cost_column!r} is not a column of the experiments. Fix: pass one of "
                         f"{[c for c in rows.columns if c.startswith('cost.')] + ['time_total_s']}.")

    runs = list(dict.fromkeys(rows["__run"].tolist()))
    position = {r: i for i, r in enumerate(runs)}
    curves = np.full((len(runs), len(budgets)), np.nan)
    raw_costs = np.full_like(curves, np.nan)
    i = rows["__run"].map(position).to_numpy()
    j = np.searchsorted(budgets, steps)
    values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64)
    curves[i, j] = np.where(np.isfinite(values), values, np.nan)  # later rows of a step win
    if cost_column is not None:
        raw_costs[i, j] = pd.to_numeric(rows[cost_column], errors="coerce").to_numpy(dtype=np.float64)
    costs = per_step_costs(raw_costs) if cumulative_cost else raw_costs

    firsts = rows.drop_duplicates("__run").set_index("__run").loc[runs]
    config_columns = [c for c in rows.columns if c.startswith("config.")]
    configs = firsts[config_columns].reset_index(drop=True)
    configs.columns = [c.removeprefix("config.") for c in config_columns]
    keep = np.isfinite(curves).any(axis=1)
    if not keep.any():
        raise ValueError(f"no trial of experiments {names} has a finite {metric!r} value.")
    meta = pd.DataFrame() if meta_features is None else meta_features
    if isinstance(meta, Mapping):
        meta = pd.DataFrame.from_dict(dict(meta), orient="index")
    return MetaDataset(configs=configs[keep], curves=curves[keep], costs=costs[keep],
                       datasets=firsts["__dataset"].to_numpy()[keep], budgets=budgets, metric=metric,
                       mode=mode, meta_features=meta,
                       budget_name=budget.removeprefix("fidelity.") if budget != "iteration" else "iteration")

