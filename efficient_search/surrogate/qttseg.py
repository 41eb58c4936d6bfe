"""Loader for meta-datasets as CSV in the QTT-SEG layout.

One row per fine-tuning run: ``epoch_0_<metric> ... epoch_<T-1>_<metric>`` (the metric after each
epoch, empty where the run stopped), ``cost`` (seconds for the whole run), ``dataset`` and the
hyperparameter columns. The run's cost is spread evenly over its observed epochs; per-epoch cost
columns ``epoch_<i>_cost``, where present, are used instead. Other metrics' epoch columns
(``epoch_3_dice`` beside ``epoch_3_iou``) are not hyperparameters and are left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from efficient_search.surrogate.meta_dataset import MODES, MetaDataset

EPOCH_COLUMN = re.compile(r"^epoch_(\d+)_(.+)$")
DATASET_COLUMN, COST_COLUMN = "dataset", "cost"


def epoch_metrics(columns: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    """``{metric: [(epoch, column), ...]}`` for every ``epoch_<i>_<metric>`` column, cost excluded."""
    found: dict[str, list[tuple[int, str]]] = {}
    for column in columns:
        match = EPOCH_COLUMN.match(str(column))
        if match and match.group(2) != COST_COLUMN:
            found.setdefault(match.group(2), []).append((int(match.group(1)), str(column)))
    return {metric: sorted(pairs) for metric, pairs in found.items()}


def is_qttseg_csv(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ``.csv`` file whose header has ``epoch_<i>_<metric>`` columns."""
    path = os.fspath(path)
    if not (os.path.isfile(path) and path.lower().endswith(".csv")):
        return False
    header = pd.read_csv(path, nrows=0).columns
    return bool(epoch_metrics(header))


def load_qttseg_csv(
    path: str | os.PathLike[str],
    *,
    metric: str | None = None,
    mode: str = "max",
    datasets: Iterable[str] | None = None,
    meta_features: Mapping[str, Mapping[str, float]] | pd.DataFrame | None = None,
) -> MetaDataset:
    """The QTT-SEG-layout CSV at ``path``.

    ``metric`` picks among several ``epoch_<i>_<metric>`` families (default: ``iou`` if present, else
    the only one); ``meta_features`` gives per-data-set features (the CSV layout has none).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"`path` {path!r} is not a file. Fix: pass a QTT-SEG-layout .csv file.")
    if mode not in MODES:
        raise ValueError(f"`mode` must be 'max' or 'min', but got {mode!r}.")
    frame = pd.read_csv(path)
    families = epoch_metrics(frame.columns)
    if not families:
        raise ValueError(f"{path!r} has no `epoch_<i>_<metric>` columns (e.g. epoch_0_iou), so it is not in "
                         f"the QTT-SEG layout.")
    if metric is None:
        if "iou" in families:
            metric = "iou"
        elif len(families) == 1:
            metric = next(iter(families))
        else:
            raise ValueError(f"{path!r} has curves of several metrics {sorted(families)}. Fix: pass "
                             f"metric=<one of them>.")
    if metric not in families:
        raise ValueError(f"`metric` {metric!r} has no epoch_<i>_{metric} columns in {path!r}. Known: "
                         f"{sorted(families)}.")
    if DATASET_COLUMN not in frame.columns:
        raise ValueError(f"{path!r} has no `{DATASET_COLUMN}` column. Fix: add the data set name of "
                         f"each row.")
    if datasets is not None:
        wanted = [str(d) for d in datasets]
        known = set(frame[DATASET_COLUMN].astype(str))
        unknown = [d for d in wanted if d not in known]
        if unknown:
            raise ValueError(f"`datasets` {unknown} are not in {path!r}. Known: {', '.join(sorted(known))}.")
        frame = frame[frame[DATASET_COLUMN].astype(str).isin(wanted)].reset_index(drop=True)

    epochs = [e for e, _ in families[metric]]
    if epochs != list(range(len(epochs))):
        raise ValueError(f"epoch columns of {metric!r} must be epoch_0 .. epoch_{len(epochs) - 1} without "
                         f"gaps, but got epochs {epochs}.")
    curves = frame[[c for _, c in families[metric]]].to_numpy(dtype=np.float64)
    observed = np.isfinite(curves)
    keep = observed.any(axis=1)
    per_epoch_cost = [f"epoch_{e}_{COST_COLUMN}" for e in epochs]
    if all(c in frame.columns for c in per_epoch_cost):
        costs = frame[per_epoch_cost].to_numpy(dtype=np.float64)
    elif COST_COLUMN in frame.columns:
        total = frame[COST_COLUMN].to_numpy(dtype=np.float64)
        share = total / np.maximum(observed.sum(axis=1), 1)
        costs = np.where(observed, share[:, None], np.nan)
    else:
        costs = np.full_like(curves, np.nan)

    not_config = {DATASET_COLUMN, COST_COLUMN, *per_epoch_cost}
    for pairs in families.values():
        not_config.update(c for _, c in pairs)
    config_columns = [c for c in frame.columns if c not in not_config and not str(c).startswith("Unnamed:")]
    meta = pd.DataFrame() if meta_features is None else meta_features
    if isinstance(meta, Mapping):
        meta = pd.DataFrame.from_dict(dict(meta), orient="index")
    return MetaDataset(configs=frame.loc[keep, config_columns], curves=curves[keep], costs=costs[keep],
                       datasets=frame.loc[keep, DATASET_COLUMN].astype(str).to_numpy(),
                       budgets=np.arange(1, len(epochs) + 1), metric=metric, mode=mode,
                       meta_features=meta, budget_name="epoch")
