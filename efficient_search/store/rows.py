"""Turn one Ray Tune result into one flat store row.

A row has fixed identity columns, then prefixed value columns:

- ``config.<path>``: the trial's hyperparameters (nested dicts flattened with ``.``),
- ``fidelity.<name>`` and ``cost.<name>``: from reported keys ``fidelity/<name>``, ``cost/<name>``,
- ``metric.<name>``: every other numeric or string value the trial reported.

Ray's own bookkeeping keys (``pid``, ``hostname``, ``time_this_iter_s``...) are left out; the
few worth keeping (``timestamp``, ``time_total_s``) get identity columns. Secret-looking values
(an ``api_key`` option, the value of ``HF_TOKEN``) are written as ``<redacted>``; see
:mod:`efficient_search.redaction`.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

from efficient_search.redaction import environment_secrets, redact

SCHEMA_VERSION = 1

#: Identity columns, in the order they are written. ``experiment`` is the hive partition key and
#: is therefore not stored inside the files.
IDENTITY_COLUMNS = (
    "trial_id",
    "iteration",
    "timestamp",
    "time_total_s",
    "status",
    "error",
    "searcher",
    "scheduler",
    "seed",
    "hardware",
    "schema_version",
)

#: Result keys Ray Tune adds by itself; they are not user metrics.
RAY_AUTO_KEYS = frozenset(
    {
        "config",
        "date",
        "done",
        "episodes_total",
        "experiment_id",
        "experiment_tag",
        "hostname",
        "iterations_since_restore",
        "node_ip",
        "pid",
        "should_checkpoint",
        "time_since_restore",
        "time_this_iter_s",
        "time_total_s",
        "timestamp",
        "timesteps_since_restore",
        "timesteps_total",
        "training_iteration",
        "trial_id",
        "checkpoint_dir_name",
        "checkpoint_path",
    }
)

PREFIXES = {"fidelity/": "fidelity.", "cost/": "cost."}

#: Status values of store rows. Result rows are ``RUNNING``; each trial ends with one row of
#: ``TERMINATED`` or ``ERROR`` that repeats its last reported values.
RUNNING, TERMINATED, ERROR = "RUNNING", "TERMINATED", "ERROR"


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def config_value(value: Any) -> Any:
    """A hyperparameter as a Parquet-friendly scalar (lists and objects become JSON text)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return json.dumps(value, default=str, sort_keys=True)


def result_value(value: Any) -> float | str | None:
    """A reported value as float or text; anything else (arrays, objects) is not stored."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    return None


def result_columns(result: Mapping[str, Any]) -> dict[str, float | str]:
    """The ``metric.*``, ``fidelity.*`` and ``cost.*`` columns of one reported result."""
    columns: dict[str, float | str] = {}
    for key, raw in flatten({k: v for k, v in result.items() if k not in RAY_AUTO_KEYS}).items():
        value = result_value(raw)
        if value is None:
            continue
        for reported, column in PREFIXES.items():
            if key.startswith(reported):
                columns[column + key[len(reported) :]] = value
                break
        else:
            columns[f"metric.{key}"] = value
    return columns


def result_from_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """The reported result one stored row stands for (the inverse of :func:`result_columns`, with
    ``training_iteration`` from ``iteration``); missing values are left out."""
    result: dict[str, Any] = {}
    if "iteration" in row and not is_missing(row["iteration"]):
        result["training_iteration"] = int(row["iteration"])
    for column, value in row.items():
        if is_missing(value):
            continue
        if column.startswith("metric."):
            result[column.removeprefix("metric.")] = value
        for reported, prefix in PREFIXES.items():
            if column.startswith(prefix):
                result[reported + column.removeprefix(prefix)] = value
    return result


def is_missing(value: Any) -> bool:
    """None or NaN: a column a row has no value in."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def make_row(
    *,
    trial_id: str,
    config: Mapping[str, Any],
    result: Mapping[str, Any],
    status: str,
    context: Mapping[str, Any],
    error: str | None = None,
) -> dict[str, Any]:
    """One store row. ``context`` holds the experiment-wide columns (searcher, seed, ...)."""
    timestamp = result.get("timestamp")
    time_total = result.get("time_total_s")
    row: dict[str, Any] = {
        "trial_id": str(trial_id),
        "iteration": int(result.get("training_iteration", 0) or 0),
        "timestamp": float(timestamp) if timestamp is not None else math.nan,
        "time_total_s": float(time_total) if time_total is not None else math.nan,
        "status": status,
        "error": error,
        "searcher": context.get("searcher"),
        "scheduler": context.get("scheduler"),
        "seed": context.get("seed"),
        "hardware": context.get("hardware"),
        "schema_version": SCHEMA_VERSION,
    }
    # Rows land in files others read: no secret-looking config/metric values, no environment
    # secrets (the config is redacted before nested values become JSON text).
    secrets = environment_secrets()
    row.update({f"config.{k}": config_value(v) for k, v in flatten(redact(config, secrets)).items()})
    row.update(result_columns(result))
    return dict(redact(row, secrets))


def row_key(row: Mapping[str, Any]) -> tuple[str, int, str]:
    """The identity of a row: a restored experiment never writes the same key twice."""
    return (str(row["trial_id"]), int(row["iteration"]), str(row["status"]))
