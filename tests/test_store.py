"""The Parquet store on its own: layout, readers, schema growth, atomic files, bad roots."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from efficient_search.store import ParquetStore, ParquetStoreCallback, make_row
from efficient_search.store.parquet import merge_types

CONTEXT = {"searcher": "random", "scheduler": "fifo", "seed": 3, "hardware": "test"}


def rows(trial: str, n: int, **extra: float) -> list[dict]:
    return [
        make_row(trial_id=trial, config={"lr": 0.1, "net": {"depth": 2}},
                 result={"training_iteration": i, "timestamp": 1000.0 + i, "acc": i / n,
                         "fidelity/epoch": i, "cost/seconds": 0.5 * i, **extra},
                 status="RUNNING", context=CONTEXT)
        for i in range(1, n + 1)
    ]


def test_rows_have_the_documented_columns() -> None:
    row = rows("a", 1)[0]
    assert row["config.lr"] == 0.1 and row["config.net.depth"] == 2
    assert row["metric.acc"] == 1.0 and row["fidelity.epoch"] == 1.0 and row["cost.seconds"] == 0.5
    assert row["searcher"] == "random" and row["seed"] == 3 and row["schema_version"] == 1
    assert "metric.training_iteration" not in row and "metric.timestamp" not in row


def test_append_and_read_back_with_pandas_and_pyarrow(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    store.append("exp-a", rows("t1", 3))
    store.append("exp-a", rows("t2", 2))
    frame = store.results("exp-a")
    assert len(frame) == 5
    assert set(frame["trial_id"]) == {"t1", "t2"}
    assert (frame["experiment"] == "exp-a").all()
    by_pandas = pd.read_parquet(tmp_path)
    assert len(by_pandas) == 5 and set(by_pandas["experiment"].astype(str)) == {"exp-a"}
    table = ds.dataset(tmp_path, partitioning="hive").to_table()
    assert table.num_rows == 5
    assert sorted(table.column("iteration").to_pylist()) == [1, 1, 2, 2, 3]


def test_new_metric_columns_extend_the_schema_for_every_reader(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    store.append("exp", rows("t1", 2))
    store.append("exp", rows("t2", 2, loss=0.3))  # a metric the first file lacks
    store.append("exp", rows("t3", 1))
    frame = store.results("exp")
    assert len(frame) == 5
    assert frame.loc[frame["trial_id"] == "t2", "metric.loss"].tolist() == [0.3, 0.3]
    assert frame.loc[frame["trial_id"] == "t1", "metric.loss"].isna().all()
    # Plain readers infer the schema from one file: every file must carry the grown schema.
    assert "metric.loss" in pd.read_parquet(tmp_path / "experiment=exp").columns
    assert "metric.loss" in ds.dataset(tmp_path, partitioning="hive").schema.names


def test_conflicting_types_widen_instead_of_failing(tmp_path) -> None:
    assert merge_types(pa.int64(), pa.float64()) == pa.float64()
    assert merge_types(pa.float64(), pa.string()) == pa.string()
    assert merge_types(pa.null(), pa.int64()) == pa.int64()
    store = ParquetStore(tmp_path)
    store.append("exp", rows("t1", 1))
    store.append("exp", rows("t2", 1, acc="n/a"))  # type: ignore[arg-type]
    frame = store.results("exp")
    assert sorted(frame["metric.acc"].astype(str)) == ["1", "n/a"]


def test_files_are_written_whole_and_temp_files_never_remain(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    for i in range(3):
        store.append("exp", rows(f"t{i}", 2))
    names = os.listdir(tmp_path / "experiment=exp")
    assert len([n for n in names if n.endswith(".parquet")]) == 3
    assert not [n for n in names if n.startswith(".")]


def test_uri_roots_work(tmp_path) -> None:
    store = ParquetStore(f"file://{tmp_path}")
    store.append("exp", rows("t1", 2))
    assert len(ParquetStore(tmp_path).results("exp")) == 2


def test_unwritable_root_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"`store` root .*a-file/results.* is not writable"):
        ParquetStore(blocker / "results").check_writable()


@pytest.mark.parametrize("name", ["a/b", "../up", "..", "", ".hidden", "a\\b", "x=y"])
def test_experiment_names_cannot_escape_the_store(tmp_path, name: str) -> None:
    with pytest.raises(ValueError, match="plain experiment name"):
        ParquetStore(tmp_path).append(name, rows("t", 1))


def test_trials_and_best_rank_by_metric(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    callback = ParquetStoreCallback(store, experiment="exp", flush_interval_s=0)
    callback.setup()
    for trial, scale in (("lo", 0.5), ("hi", 1.0)):
        for i in (1, 2):
            callback.add(trial, {"lr": scale}, {"training_iteration": i, "acc": scale * i}, "RUNNING")
        callback.add(trial, {"lr": scale}, {"training_iteration": 2, "acc": scale * 2}, "TERMINATED")
    callback.flush()
    table = store.trials("exp", metric="acc", mode="max")
    assert table["trial_id"].tolist() == ["hi", "lo"]
    assert table["results"].tolist() == [2, 2]
    assert table["status"].tolist() == ["TERMINATED", "TERMINATED"]
    assert store.best("exp", "acc", "min")["trial_id"].item() == "lo"
    with pytest.raises(ValueError, match="`metric` 'nope' was never reported"):
        store.trials("exp", metric="nope", mode="max")
    with pytest.raises(ValueError, match="'missing' is not in the store"):
        store.results("missing")


def test_callback_skips_rows_the_store_already_holds(tmp_path) -> None:
    first = ParquetStoreCallback(tmp_path, experiment="exp", flush_interval_s=0)
    first.setup()
    for row in rows("t1", 3):
        first.add("t1", {}, {"training_iteration": row["iteration"]}, "RUNNING")
    first.flush()
    # A restored run re-reports iterations 2 and 3, then goes on to 4.
    second = ParquetStoreCallback(tmp_path, experiment="exp", flush_interval_s=0)
    second.setup()
    added = [second.add("t1", {}, {"training_iteration": i}, "RUNNING") for i in (2, 3, 4)]
    second.flush()
    assert added == [False, False, True]
    assert ParquetStore(tmp_path).results("exp")["iteration"].tolist() == [1, 2, 3, 4]
    assert second.get_state() == {"version": 1, "rows_written": 1}


def test_callback_flushes_every_few_seconds_while_trials_run(tmp_path) -> None:
    import time

    callback = ParquetStoreCallback(tmp_path, experiment="exp", flush_interval_s=0.2)
    callback.setup()
    callback.add("t1", {}, {"training_iteration": 1}, "RUNNING")
    callback.on_step_end(iteration=1, trials=[])
    assert not list(tmp_path.glob("experiment=exp/*.parquet"))  # not yet due
    time.sleep(0.25)
    callback.on_step_end(iteration=2, trials=[])
    assert len(ParquetStore(tmp_path).results("exp")) == 1  # visible before the run ends


def test_an_experiment_without_rows_yet_reads_as_empty(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    store.write_metadata("exp", {"metric": "acc", "mode": "max"})  # set-up ran, no flush yet
    frame = store.results("exp")
    assert frame.empty and {"trial_id", "iteration", "status"} <= set(frame.columns)


def test_duplicates_left_by_an_interrupted_merge_are_read_once(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    store.append("exp", rows("t1", 2))
    folder = tmp_path / "experiment=exp"
    (original,) = [p for p in folder.iterdir() if p.suffix == ".parquet"]
    # A crash after writing a merged copy but before deleting the source leaves both.
    (folder / "part-99999999999999999999-copy.parquet").write_bytes(original.read_bytes())
    assert len(ParquetStore(tmp_path).results("exp")) == 2
