"""Turn hyperparameter configs and task meta-features into fixed-width float vectors.

Categoricals (string, bool or category columns) become one-hot blocks over the values seen at fit
time (an unseen value encodes as all zeros). Numerics are log-scaled when their positive values span
a wide range (>= ``LOG_RATIO``; a column that also holds 0 is shifted by half its smallest positive
value first), then min-max normalised to [0, 1] by the fitted range; a column that had missing
values gets a 0/1 "missing" indicator. The fitted state is plain JSON data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Positive values spanning at least this ratio (max/min) are log-scaled.
LOG_RATIO = 20.0
#: Normalised numerics are clipped to this range, so a far-out candidate cannot dominate the features.
CLIP = (-1.0, 2.0)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def as_frame(configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Configs as a DataFrame; nested dicts (Ray Tune configs) are flattened with ``.``."""
    if isinstance(configs, pd.DataFrame):
        return configs.reset_index(drop=True)
    if isinstance(configs, (str, bytes)) or not isinstance(configs, Sequence):
        raise TypeError(f"`configs` must be a DataFrame or a list of dicts, but got "
                        f"{type(configs).__name__}.")
    rows = []
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise TypeError(f"`configs[{i}]` must be a dict of hyperparameters, but got "
                            f"{type(config).__name__}.")
        rows.append(_flatten(config))
    return pd.DataFrame(rows)


def _is_categorical(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _category_text(value: Any) -> str:
    return "<missing>" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


@dataclass
class NumericColumn:
    """A numeric hyperparameter: optional log transform, then min-max to [0, 1]."""

    name: str
    log: bool
    offset: float
    low: float
    high: float
    missing: bool

    def transform(self, values: np.ndarray) -> np.ndarray:
        x = values + self.offset
        if self.log:
            x = np.log(np.maximum(x, 1e-300))
        span = self.high - self.low
        scaled = (x - self.low) / span if span > 0 else np.zeros_like(x)
        return np.clip(np.nan_to_num(scaled, nan=0.0), *CLIP)

    @classmethod
    def fit(cls, name: str, values: np.ndarray) -> NumericColumn:
        finite = values[np.isfinite(values)]
        missing = bool(finite.size < values.size)
        if finite.size == 0:
            return cls(name, False, 0.0, 0.0, 0.0, missing)
        positive = finite[finite > 0]
        log, offset = False, 0.0
        if positive.size and finite.min() >= 0 and positive.max() / positive.min() >= LOG_RATIO:
            log = True
            offset = 0.0 if finite.min() > 0 else float(positive.min()) / 2
        x = np.log(finite + offset) if log else finite
        return cls(name, log, offset, float(x.min()), float(x.max()), missing)


@dataclass
class CategoricalColumn:
    """A categorical hyperparameter: one-hot over the values seen at fit time."""

    name: str
    values: list[str]

    def transform(self, column: pd.Series) -> np.ndarray:
        index = {v: i for i, v in enumerate(self.values)}
        out = np.zeros((len(column), len(self.values)))
        for row, value in enumerate(column.tolist()):
            j = index.get(_category_text(value))
            if j is not None:
                out[row, j] = 1.0
        return out


class ConfigEncoder:
    """Fixed-width encoding of hyperparameter configs.

    >>> encoder = ConfigEncoder.fit(pd.DataFrame({"lr": [1e-4, 1e-2], "opt": ["adam", "sgd"]}))
    >>> encoder.transform([{"lr": 1e-3, "opt": "sgd"}]).round(2).tolist()
    [[0.5, 0.0, 1.0]]
    """

    def __init__(self, numeric: list[NumericColumn], categorical: list[CategoricalColumn],
                 order: list[str]):
        self.numeric = numeric
        self.categorical = categorical
        self.order = order  # column names in fit order

    @classmethod
    def fit(cls, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> ConfigEncoder:
        frame = as_frame(configs)
        if frame.shape[1] == 0:
            raise ValueError("`configs` must have at least one hyperparameter column, but has none.")
        numeric, categorical = [], []
        for name in frame.columns:
            series = frame[name]
            if _is_categorical(series):
                values = sorted({_category_text(v) for v in series.tolist()})
                categorical.append(CategoricalColumn(str(name), values))
            else:
                numeric.append(NumericColumn.fit(str(name), series.to_numpy(dtype=np.float64)))
        return cls(numeric, categorical, [str(c) for c in frame.columns])

    @property
    def width(self) -> int:
        return (len(self.numeric) + sum(c.missing for c in self.numeric)
                + sum(len(c.values) for c in self.categorical))

    def transform(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``(N, width)`` float32 features; columns the encoder does not know are ignored."""
        frame = as_frame(configs)
        missing = [name for name in self.order if name not in frame.columns]
        if missing:
            raise ValueError(f"`configs` lack hyperparameters {missing} that the surrogate was trained on. "
                             f"Fix: pass every one of {self.order}.")
        blocks = []
        for column in self.numeric:
            try:
                values = pd.to_numeric(frame[column.name]).to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"hyperparameter {column.name!r} must be numeric, but got values like "
                                f"{frame[column.name].iloc[0]!r}.") from exc
            blocks.append(column.transform(values)[:, None])
            if column.missing:
                blocks.append((~np.isfinite(values)).astype(np.float64)[:, None])
        for categorical in self.categorical:
            blocks.append(categorical.transform(frame[categorical.name]))
        return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((len(frame), 0),
                                                                                           np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": [asdict(c) for c in self.numeric],
                "categorical": [asdict(c) for c in self.categorical], "order": list(self.order)}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ConfigEncoder:
        return cls([NumericColumn(**c) for c in state["numeric"]],
                   [CategoricalColumn(**c) for c in state["categorical"]], list(state["order"]))


class MetaFeatureScaler:
    """Task meta-features: signed ``log1p`` (sizes span decades), then standardised."""

    def __init__(self, names: list[str], mean: list[float], std: list[float]):
        self.names, self.mean, self.std = names, mean, std

    @staticmethod
    def _squash(values: np.ndarray) -> np.ndarray:
        return np.sign(values) * np.log1p(np.abs(values))

    @classmethod
    def fit(cls, meta: pd.DataFrame) -> MetaFeatureScaler:
        x = cls._squash(meta.to_numpy(dtype=np.float64)) if meta.shape[1] else np.zeros((1, 0))
        std = x.std(axis=0) if len(x) else np.zeros(x.shape[1])
        return cls([str(c) for c in meta.columns], x.mean(axis=0).tolist() if len(x) else [],
                   np.where(std > 0, std, 1.0).tolist())

    @property
    def width(self) -> int:
        return len(self.names)

    def vector(self, meta_features: Mapping[str, float] | Sequence[float] | np.ndarray | None) -> np.ndarray:
        """The scaled ``(width,)`` vector of one task's meta-features (by name, or in order)."""
        if self.width == 0:
            return np.zeros(0, np.float32)
        if meta_features is None:
            raise ValueError(f"`meta_features` are needed: the surrogate was trained with {self.names}. Fix: "
                             f"pass meta_features={{name: value}} for the task.")
        if isinstance(meta_features, Mapping):
            missing = [n for n in self.names if n not in meta_features]
            if missing:
                raise ValueError(f"`meta_features` lack {missing}; the surrogate needs {self.names}.")
            raw = np.asarray([float(meta_features[n]) for n in self.names])
        else:
            raw = np.asarray(meta_features, dtype=np.float64).ravel()
            if raw.shape != (self.width,):
                raise ValueError(f"`meta_features` must hold {self.width} values {self.names}, but got "
                                 f"{raw.shape[0]}.")
        if not np.isfinite(raw).all():
            raise ValueError(f"`meta_features` must be finite, but got {raw.tolist()}.")
        return ((self._squash(raw) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> MetaFeatureScaler:
        return cls(list(state["names"]), list(state["mean"]), list(state["std"]))
