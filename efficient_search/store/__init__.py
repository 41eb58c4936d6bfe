"""The Parquet results store: one row per reported result, partitioned by experiment.

The names below load on first use, so that a process that only reads or writes the store does
not import Ray (``ParquetStoreCallback`` is a Ray Tune callback).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from efficient_search._lazy import lazy_exports

if TYPE_CHECKING:
    from efficient_search.store.callback import ParquetStoreCallback
    from efficient_search.store.owner import ExperimentInUseError
    from efficient_search.store.parquet import ParquetStore, validate_experiment_name
    from efficient_search.store.rows import SCHEMA_VERSION, make_row

_EXPORTS = {
    "ExperimentInUseError": "efficient_search.store.owner",
    "SCHEMA_VERSION": "efficient_search.store.rows",
    "ParquetStore": "efficient_search.store.parquet",
    "ParquetStoreCallback": "efficient_search.store.callback",
    "make_row": "efficient_search.store.rows",
    "validate_experiment_name": "efficient_search.store.parquet",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "ExperimentInUseError",
    "SCHEMA_VERSION",
    "ParquetStore",
    "ParquetStoreCallback",
    "make_row",
    "validate_experiment_name",
]
