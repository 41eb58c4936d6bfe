"""Loader for the Quick-Tune meta-dataset folder (``perf.json``, ``cost.json``, ``table.csv``, ...).

Layout (Quick-Tune, Arango et al. 2024; the ``mtlbm`` extended subset):

- ``perf.json``: ``{dataset: {config_id: [accuracy in percent per epoch]}}`` plus an ``info`` entry,
- ``cost.json``: the same keys, seconds spent on each epoch (per-step, not cumulative),
- ``table.csv``: one row per config id (first column); categoricals one-hot as ``cat:<name>:<value>``,
- ``descriptors.json``: ``{dataset: [num_samples, num_classes, image_size, channels]}``.

One-hot groups are turned back into one string column per hyperparameter (``model``, ``opt``, ...),
so that the surrogate's encoder treats every hyperparameter the same way, whatever the source.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from efficient_search.surrogate.meta_dataset import MetaDataset

PERF_FILE, COST_FILE, TABLE_FILE, DESCRIPTORS_FILE = "perf.json", "cost.json", "table.csv", "descriptors.json"
DESCRIPTOR_NAMES = ("num_samples", "num_classes", "image_size", "channels")
INFO_KEY = "info"


def is_quicktune_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding ``perf.json`` and ``table.csv``."""
    path = os.fspath(path)
    return os.path.isfile(os.path.join(path, PERF_FILE)) and os.path.isfile(os.path.join(path, TABLE_FILE))


def _read_json(path: str) -> dict:
    with open(path) as stream:
        data = json.load(stream)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, but holds {type(data).__name__}.")
    return data


def decode_one_hot(table: pd.DataFrame) -> pd.DataFrame:
    """Replace each ``cat:<name>:<value>`` group by one string column ``<name>``."""
    groups: dict[str, list[str]] = {}
    for column in table.columns:
        if column.startswith("cat:"):
            parts = column.split(":", 2)
            if len(parts) != 3:
                raise ValueError(f"one-hot column {column!r} must look like 'cat:<name>:<value>'.")
            groups.setdefault(parts[1], []).append(column)
    out = table[[c for c in table.columns if not c.startswith("cat:")]].copy()
    for name, columns in groups.items():
        block = table[columns].to_numpy(dtype=np.float64)
        ones = (block == 1).sum(axis=1)
        if not np.all(ones == 1):
            bad = int(np.flatnonzero(ones != 1)[0])
            raise ValueError(f"one-hot group {name!r} must have exactly one 1 per row, but row "
                             f"{table.index[bad]!r} has {int(ones[bad])}.")
        values = [c.split(":", 2)[2] for c in columns]
        out[name] = [values[j] for j in block.argmax(axis=1)]
    return out


def load_quicktune(path: str | os.PathLike[str], *, datasets: Iterable[str] | None = None) -> MetaDataset:
    """The Quick-Tune meta-dataset at ``path`` (read in place), optionally only some ``datasets``.

    Accuracy is kept in percent (``metric="accuracy"``, ``mode="max"``); budgets are epochs 1..50.
    """
    path = os.fspath(path)
    if not is_quicktune_folder(path):
        raise ValueError(f"`path` {path!r} is not a Quick-Tune meta-dataset folder (it needs {PERF_FILE} "
                         f"and {TABLE_FILE}).")
    perf = _read_json(os.path.join(path, PERF_FILE))
    cost_path = os.path.join(path, COST_FILE)
    cost = _read_json(cost_path) if os.path.isfile(cost_path) else {}
    names = [k for k in perf if k != INFO_KEY]
    if datasets is not None:
        wanted = [str(d) for d in datasets]
        unknown = [d for d in wanted if d not in names]
        if unknown:
            raise ValueError(f"`datasets` {unknown} are not in {path!r}. Known: {', '.join(names)}.")
        names = [n for n in names if n in wanted]
    table = pd.read_csv(os.path.join(path, TABLE_FILE), dtype={0: str})
    table = table.set_index(table.columns[0])
    table.index = table.index.astype(str)
    configs_all = decode_one_hot(table)

    ids, rows_dataset, perf_rows, cost_rows = [], [], [], []
    for name in names:
        for config_id, curve in perf[name].items():
            if config_id not in configs_all.index:
                raise ValueError(f"{PERF_FILE} names config {config_id!r} of {name!r}, which {TABLE_FILE} "
                                 f"lacks.")
            ids.append(config_id)
            rows_dataset.append(name)
            perf_rows.append(curve)
            cost_rows.append(cost.get(name, {}).get(config_id, []))
    steps = max(len(c) for c in perf_rows)
    curves = np.full((len(perf_rows), steps), np.nan)
    costs = np.full_like(curves, np.nan)
    for i, (p, c) in enumerate(zip(perf_rows, cost_rows, strict=True)):
        curves[i, : len(p)] = p
        costs[i, : len(c)] = c[:steps]

    meta = pd.DataFrame()
    descriptors_path = os.path.join(path, DESCRIPTORS_FILE)
    if os.path.isfile(descriptors_path):
        descriptors = _read_json(descriptors_path)
        meta = pd.DataFrame({n: descriptors[n] for n in names}, index=list(DESCRIPTOR_NAMES)).T
    return MetaDataset(configs=configs_all.loc[ids].reset_index(drop=True), curves=curves, costs=costs,
                       datasets=np.asarray(rows_dataset), budgets=np.arange(1, steps + 1),
                       metric="accuracy", mode="max", meta_features=meta, budget_name="epoch")
