"""The tabular meta-dataset: earlier runs' configs, learning curves and costs, one row per run.

Every loader (Quick-Tune folder, QTT-SEG CSV, Parquet store) returns a :class:`MetaDataset`; the
surrogate meta-trains on one. Curves are an ``(N, T)`` array with NaN where a step was not observed
(a run stopped early, or a step not reported); costs are **per-step seconds** (the time spent on that
step alone, not cumulative) in the same layout. Column ``j`` of both is the budget ``budgets[j]``
(e.g. epoch ``j + 1``).

Example::

    data = load_meta_dataset("../shared/data/quicktune-mtlbm-extended")
    train, held_out = data.drop(["FLW"]), data.select(["FLW"])
    data.save("meta/quicktune")                      # Parquet + JSON, no pickle
    same = MetaDataset.load("meta/quicktune")
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from efficient_search.durable import atomic_path, atomic_write
from efficient_search.surrogate.files import read_info

FORMAT_VERSION = 1
TABLE_FILE = "table.parquet"
INFO_FILE = "meta_dataset.json"
MODES = ("max", "min")


def _as_names(names: Iterable[str] | str, field_name: str) -> list[str]:
    if isinstance(names, str):
        names = [names]
    out = [str(n) for n in names]
    if not out:
        raise ValueError(f"`{field_name}` must name at least one data set, but got an empty list.")
    return out


@dataclass
class MetaDataset:
    """Learning curves of earlier runs over several data sets (tasks).

    Validated on construction; arrays are converted to float64 and string arrays.
    """

    #: One row per run: the hyperparameters (numeric, bool or string columns).
    configs: pd.DataFrame
    #: ``(N, T)`` metric value after each budget step; NaN where unobserved.
    curves: np.ndarray
    #: ``(N, T)`` seconds spent on each step alone (not cumulative); NaN where unknown.
    costs: np.ndarray
    #: ``(N,)`` the data set (task) each run belongs to.
    datasets: np.ndarray
    #: ``(T,)`` the budget each curve column stands for, strictly increasing and positive.
    budgets: np.ndarray
    #: The metric the curves hold, e.g. ``"accuracy"``.
    metric: str
    #: ``"max"`` if a larger metric is better, else ``"min"``.
    mode: str
    #: Task meta-features, one row per data set name (index), one column per feature; may have none.
    meta_features: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: What a budget step counts, e.g. ``"epoch"``.
    budget_name: str = "epoch"

    def __post_init__(self) -> None:
        if not isinstance(self.configs, pd.DataFrame):
            raise TypeError(f"`configs` must be a pandas DataFrame, but got {type(self.configs).__name__}.")
        self.configs = self.configs.reset_index(drop=True)
        self.curves = np.asarray(self.curves, dtype=np.float64)
        self.costs = np.asarray(self.costs, dtype=np.float64)
        self.datasets = np.asarray([str(d) for d in np.asarray(self.datasets).ravel()], dtype=object)
        self.budgets = np.asarray(self.budgets, dtype=np.float64).ravel()
        n = len(self.configs)
        if self.curves.ndim != 2 or self.curves.shape[0] != n:
            raise ValueError(f"`curves` must have shape (N, T) with N = {n} config rows, but got "
                             f"{self.curves.shape}.")
        t = self.curves.shape[1]
        if t == 0:
            raise ValueError("`curves` must have at least one budget step (column), but got 0.")
        if self.costs.shape != self.curves.shape:
            raise ValueError(f"`costs` must have the shape of `curves` {self.curves.shape}, but got "
                             f"{self.costs.shape}.")
        if self.datasets.shape != (n,):
            raise ValueError(f"`datasets` must hold one name per config row ({n}), but got "
                             f"{self.datasets.shape[0]}.")
        if self.budgets.shape != (t,) or not np.all(np.isfinite(self.budgets)):
            raise ValueError(f"`budgets` must hold {t} finite values (one per curve column), but got "
                             f"{self.budgets.tolist()}.")
        if (t > 1 and not np.all(np.diff(self.budgets) > 0)) or self.budgets[0] <= 0:
            raise ValueError(f"`budgets` must be positive and strictly increasing, but got "
                             f"{self.budgets.tolist()}.")
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be 'max' or 'min', but got {self.mode!r}.")
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"`metric` must be a non-empty string, but got {self.metric!r}.")
        if np.isinf(self.curves).any():
            raise ValueError("`curves` must hold finite values or NaN, but some are infinite. Fix: "
                             "replace diverged values by NaN (unobserved) before building the MetaDataset.")
        if (self.costs[np.isfinite(self.costs)] < 0).any():
            raise ValueError("`costs` must be per-step seconds >= 0, but some are negative. Fix: if "
                             "they are cumulative, take differences along each row (np.diff).")
        empty = np.flatnonzero(~np.isfinite(self.curves).any(axis=1))
        if empty.size:
            raise ValueError(f"every run needs at least one observed curve value, but rows "
                             f"{empty[:10].tolist()} (of {empty.size}) have none. Fix: drop them.")
        self.meta_features = self._check_meta_features(self.meta_features)

    def _check_meta_features(self, meta: pd.DataFrame | Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
        if isinstance(meta, Mapping):
            meta = pd.DataFrame.from_dict(dict(meta), orient="index")
        if not isinstance(meta, pd.DataFrame):
            raise TypeError(f"`meta_features` must be a DataFrame indexed by data set name, but got "
                            f"{type(meta).__name__}.")
        meta = meta.copy()
        meta.index = meta.index.map(str)
        names = self.dataset_names
        if meta.shape[1] == 0:
            return pd.DataFrame(index=pd.Index(names))
        missing = [name for name in names if name not in meta.index]
        if missing:
            raise ValueError(f"`meta_features` has no row for data sets {missing}. Fix: add one per data "
                             f"set, or pass no meta-features at all.")
        meta = meta.loc[names].astype(np.float64)
        if not np.isfinite(meta.to_numpy()).all():
            raise ValueError("`meta_features` must be finite numbers, but some are NaN or infinite.")
        return meta

    # -- views -------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return int(self.curves.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.curves.shape[1])

    @property
    def dataset_names(self) -> list[str]:
        """The data sets, in order of first appearance."""
        return list(dict.fromkeys(self.datasets.tolist()))

    @property
    def meta_feature_names(self) -> list[str]:
        return [str(c) for c in self.meta_features.columns]

    def observed_steps(self) -> np.ndarray:
        """``(N,)`` how many steps of each curve were observed."""
        return np.isfinite(self.curves).sum(axis=1)

    def last_values(self) -> np.ndarray:
        """``(N,)`` the last observed value of each curve."""
        observed = np.isfinite(self.curves)
        last = self.curves.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)
        return self.curves[np.arange(self.n_rows), last]

    def cumulative_costs(self) -> np.ndarray:
        """``(N, T)`` seconds spent up to and including each step (unknown steps count as 0)."""
        return np.nancumsum(self.costs, axis=1)

    def rows(self, index: np.ndarray | list[int]) -> MetaDataset:
        """The runs at ``index`` (integer positions or a boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        kept = [str(d) for d in dict.fromkeys(self.datasets[index].tolist())]
        meta = self.meta_features.loc[kept] if self.meta_features.shape[1] else pd.DataFrame()
        return MetaDataset(configs=self.configs.iloc[index], curves=self.curves[index],
                           costs=self.costs[index], datasets=self.datasets[index], budgets=self.budgets,
                           metric=self.metric, mode=self.mode, meta_features=meta,
                           budget_name=self.budget_name)

    def select(self, names: Iterable[str] | str) -> MetaDataset:
        """Only the runs of data sets ``names``."""
        wanted = _as_names(names, "datasets")
        self._require(wanted)
        return self.rows(np.isin(self.datasets, wanted))

    def drop(self, names: Iterable[str] | str) -> MetaDataset:
        """Every run except those of data sets ``names`` (e.g. to hold them out)."""
        unwanted = _as_names(names, "datasets")
        self._require(unwanted)
        keep = ~np.isin(self.datasets, unwanted)
        if not keep.any():
            raise ValueError(f"dropping data sets {unwanted} leaves no runs. Fix: keep at least one data "
                             f"set.")
        return self.rows(keep)

    def truncate(self, steps: int) -> MetaDataset:
        """Only the first ``steps`` budget steps of every curve (a shorter horizon); runs with no value
        observed there are dropped."""
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"`steps` must be an integer >= 1 budget steps, but got {steps!r}. Fix: "
                             f"e.g. truncate(10) for the first 10 of {self.n_steps}.")
        steps = min(steps, self.n_steps)
        keep = np.isfinite(self.curves[:, :steps]).any(axis=1)
        cut = self.rows(keep)
        return MetaDataset(configs=cut.configs, curves=cut.curves[:, :steps], costs=cut.costs[:, :steps],
                           datasets=cut.datasets, budgets=cut.budgets[:steps], metric=self.metric,
                           mode=self.mode, meta_features=cut.meta_features, budget_name=self.budget_name)

    def subsample(self, per_dataset: int, seed: int) -> MetaDataset:
        """At most ``per_dataset`` runs of each data set, drawn without replacement by a generator seeded
        with ``seed`` (row order kept)."""
        if not isinstance(per_dataset, int) or isinstance(per_dataset, bool) or per_dataset < 1:
            raise ValueError(f"`per_dataset` must be an integer >= 1 runs, but got {per_dataset!r}.")
        rng = np.random.default_rng(seed)
        keep: list[int] = []
        for name in self.dataset_names:
            rows = np.flatnonzero(self.datasets == name)
            keep.extend(rows if rows.size <= per_dataset else rng.choice(rows, per_dataset, replace=False))
        return self.rows(np.sort(np.asarray(keep, dtype=np.int64)))

    def without_meta_features(self) -> MetaDataset:
        """The same runs with no task meta-features."""
        return MetaDataset(configs=self.configs, curves=self.curves, costs=self.costs,
                           datasets=self.datasets, budgets=self.budgets, metric=self.metric,
                           mode=self.mode, budget_name=self.budget_name)

    def _require(self, names: list[str]) -> None:
        unknown = [n for n in names if n not in set(self.dataset_names)]
        if unknown:
            raise ValueError(f"`datasets` names {unknown} that are not in the meta-dataset. Known: "
                             f"{', '.join(self.dataset_names)}.")

    def summary(self) -> str:
        return (f"MetaDataset({self.n_rows} runs, {len(self.dataset_names)} data sets, {self.n_steps} "
                f"{self.budget_name} steps, metric {self.metric!r} ({self.mode}), {self.configs.shape[1]} "
                f"hyperparameters, {self.meta_features.shape[1]} meta-features)")

    def __repr__(self) -> str:
        return self.summary()

    # -- plain-data state --------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Everything but the per-run table, as JSON-able data."""
        return {
            "version": FORMAT_VERSION,
            "metric": self.metric,
            "mode": self.mode,
            "budget_name": self.budget_name,
            "budgets": self.budgets.tolist(),
            "meta_feature_names": self.meta_feature_names,
            "meta_features": {str(k): [float(v) for v in row]
                              for k, row in zip(self.meta_features.index, self.meta_features.to_numpy(),
                                                strict=True)},
            "config_columns": [str(c) for c in self.configs.columns],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per run: ``dataset``, ``config.<name>``, ``curve.<j>``, ``cost.<j>`` columns."""
        parts = [pd.DataFrame({"dataset": self.datasets.astype(str)}),
                 self.configs.add_prefix("config."),
                 pd.DataFrame(self.curves, columns=[f"curve.{j}" for j in range(self.n_steps)]),
                 pd.DataFrame(self.costs, columns=[f"cost.{j}" for j in range(self.n_steps)])]
        return pd.concat(parts, axis=1)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the folder ``path`` (``table.parquet`` + ``meta_dataset.json``); returns it."""
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        with atomic_path(os.path.join(path, TABLE_FILE)) as temp:
            self.to_frame().to_parquet(temp, index=False)
        atomic_write(os.path.join(path, INFO_FILE), json.dumps(self.info(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MetaDataset:
        """Read a folder written by :meth:`save`."""
        path = os.fspath(path)
        info = read_info(path, INFO_FILE, FORMAT_VERSION, "is not a saved MetaDataset",
                         "pass the folder MetaDataset.save wrote.")
        frame = pd.read_parquet(os.path.join(path, TABLE_FILE))
        t = len(info["budgets"])
        configs = frame[[f"config.{c}" for c in info["config_columns"]]]
        configs.columns = list(info["config_columns"])
        meta = pd.DataFrame.from_dict(info["meta_features"], orient="index",
                                      columns=info["meta_feature_names"])
        return cls(configs=configs, curves=frame[[f"curve.{j}" for j in range(t)]].to_numpy(),
                   costs=frame[[f"cost.{j}" for j in range(t)]].to_numpy(),
                   datasets=frame["dataset"].to_numpy(), budgets=np.asarray(info["budgets"]),
                   metric=info["metric"], mode=info["mode"], meta_features=meta,
                   budget_name=info["budget_name"])


def per_step_costs(cumulative: np.ndarray) -> np.ndarray:
    """Per-step seconds from cumulative seconds along each row (NaN gaps bridged, negatives clipped)."""
    cumulative = np.asarray(cumulative, dtype=np.float64)
    out = np.full_like(cumulative, np.nan)
    for i, row in enumerate(cumulative):
        previous = 0.0
        for j, value in enumerate(row):
            if math.isfinite(value):
                out[i, j] = max(value - previous, 0.0)
                previous = value
    return out
