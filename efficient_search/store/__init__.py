"""The Parquet results store: one row per reported result, partitioned by experiment."""

from efficient_search.store.callback import ParquetStoreCallback
from efficient_search.store.parquet import ParquetStore, validate_experiment_name
from efficient_search.store.rows import SCHEMA_VERSION, make_row

__all__ = [
    "SCHEMA_VERSION",
    "ParquetStore",
    "ParquetStoreCallback",
    "make_row",
    "validate_experiment_name",
]
