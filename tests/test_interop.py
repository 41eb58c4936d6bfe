"""README's one-liners read the store with DuckDB, polars and pandas; Tune's logger callbacks
pass through ``es.run(..., callbacks=[...])``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import efficient_search as es

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ray.tune.logger import TBXLoggerCallback

    root = tmp_path_factory.mktemp("interop") / "results"
    for name, lrs in (("digits-demo", [0.05, 0.1]), ("digits-more", [0.2])):
        es.run({"name": name, "task_options": {"epochs": 2},
                "search_space": {"lr": {"grid": lrs}, "depth": 1, "width": 8, "batch_size": 64},
                "num_samples": 1, "resources": {"num_workers": 0, "cpus_per_worker": 1},
                "store": str(root), "verbose": 0}, callbacks=[TBXLoggerCallback()])
    return root


def ours(root: Path, experiment: str) -> pd.DataFrame:
    rows = es.ParquetStore(str(root)).results(experiment)
    return rows.sort_values(["trial_id", "iteration", "status"]).reset_index(drop=True)


def test_pandas_and_pyarrow_read_an_experiment_folder(store: Path) -> None:
    import pyarrow.dataset as ds

    frame = pd.read_parquet(store / "experiment=digits-demo")
    assert len(frame) == len(ours(store, "digits-demo"))
    whole = ds.dataset(str(store), partitioning="hive").to_table().to_pandas()
    assert set(whole["experiment"]) == {"digits-demo", "digits-more"}  # Tune's `_ray` folder is skipped
    assert len(whole) == len(ours(store, "digits-demo")) + len(ours(store, "digits-more"))


def test_polars_reads_the_store(store: Path) -> None:
    import polars as pl

    frame = pl.read_parquet(store / "experiment=*" / "*.parquet", hive_partitioning=True)
    expected = pd.concat([ours(store, "digits-demo"), ours(store, "digits-more")])
    assert frame.height == len(expected)
    best = (frame.filter(pl.col("status") == "RUNNING").group_by("experiment")
            .agg(pl.col("metric.val_accuracy").max()).sort("experiment"))
    assert best["metric.val_accuracy"].to_list() == pytest.approx(
        expected[expected["status"] == "RUNNING"].groupby("experiment")["metric.val_accuracy"].max().tolist())


def test_duckdb_queries_the_store(store: Path) -> None:
    import duckdb

    glob = str(store / "experiment=*" / "*.parquet")
    per_trial = duckdb.sql(
        f"""SELECT experiment, trial_id, max("metric.val_accuracy") AS best
            FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)
            WHERE status = 'RUNNING' GROUP BY ALL ORDER BY best DESC""").df()
    assert len(per_trial) == 3
    expected = pd.concat([ours(store, "digits-demo"), ours(store, "digits-more")])
    running = expected[expected["status"] == "RUNNING"]
    best = running.groupby("trial_id")["metric.val_accuracy"].max()
    assert sorted(per_trial["best"]) == pytest.approx(sorted(best))


def test_tunes_logger_callbacks_pass_through(store: Path) -> None:
    events = list((store / "_ray" / "digits-demo").glob("*/events.out.tfevents.*"))
    assert len(events) == 2  # one TensorBoard file per trial
