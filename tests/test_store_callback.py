"""ParquetStoreCallback inside real Ray Tune runs: errors, restores, every row kept once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ray import tune

from efficient_search.store import ParquetStore, ParquetStoreCallback

pytestmark = pytest.mark.usefixtures("ray_session")


def flaky_trainable(config: dict) -> None:
    """Reports ``steps`` results; trial ``fail`` raises after two until a marker file exists."""
    for step in range(1, config["steps"] + 1):
        tune.report({"score": config["x"] * step, "fidelity/step": step})
        if config["fail"] and step == 2 and not Path(config["marker"]).exists():
            Path(config["marker"]).touch()
            raise RuntimeError("injected failure after two results")


def test_errored_trial_keeps_its_rows_and_restore_adds_without_duplicates(tmp_path) -> None:
    marker = str(tmp_path / "failed-once")
    space = {"x": tune.grid_search([1.0, 2.0]), "steps": 4, "marker": marker,
             "fail": tune.sample_from(lambda spec: spec.config.x == 2.0)}
    store_root = tmp_path / "store"

    def run(tuner: tune.Tuner) -> None:
        tuner.fit()

    callback = ParquetStoreCallback(str(store_root), experiment="flaky", searcher="grid",
                                    flush_interval_s=0.5)
    run(tune.Tuner(
        flaky_trainable,
        param_space=space,
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(name="flaky", storage_path=str(tmp_path / "ray"),
                                  callbacks=[callback]),
    ))
    store = ParquetStore(store_root)
    frame = store.results("flaky")
    by_trial = {x: rows for x, rows in frame.groupby("config.x")}
    good, bad = by_trial[1.0], by_trial[2.0]
    assert good["status"].tolist() == ["RUNNING"] * 4 + ["TERMINATED"]
    assert bad["status"].tolist() == ["RUNNING", "RUNNING", "ERROR"]
    assert bad["metric.score"].tolist() == [2.0, 4.0, 4.0]
    assert "injected failure" in bad["error"].iloc[-1]

    # Resume the errored trial (same trial id, no checkpoint): it re-reports steps 1-2, which
    # the store already holds, and goes on to 4.
    run(tune.Tuner.restore(str(tmp_path / "ray" / "flaky"), flaky_trainable,
                           resume_errored=True))
    frame = store.results("flaky")
    keys = list(zip(frame["trial_id"], frame["iteration"], frame["status"], strict=True))
    assert len(keys) == len(set(keys)), "a restored run duplicated rows"
    bad = frame[frame["config.x"] == 2.0]
    assert bad["trial_id"].nunique() == 1
    running = bad[bad["status"] == "RUNNING"]
    assert running["iteration"].tolist() == [1, 2, 3, 4]
    assert running["metric.score"].tolist() == [2.0, 4.0, 6.0, 8.0]
    assert set(bad["status"]) == {"RUNNING", "ERROR", "TERMINATED"}
    assert not [n for n in os.listdir(store_root / "experiment=flaky") if n.startswith(".tmp")]
