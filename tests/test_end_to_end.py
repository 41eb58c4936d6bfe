"""A real local Ray search: 2 trials at once, each trained by 2 Ray Train workers (gloo, CPU)."""

from __future__ import annotations

import pytest

import efficient_search as es

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.mark.slow
def test_search_with_train_workers_lands_every_result_in_the_store(tmp_path) -> None:
    result = es.run({
        "name": "e2e-digits",
        "task_options": {"epochs": 3},
        "search_space": {"depth": {"grid": [1, 2]}, "width": {"choice": [8, 16]},
                         "lr": {"uniform": [0.1, 0.3]}, "batch_size": 32},
        "num_samples": 1,  # x 2 grid points = 2 trials, both at once
        "max_concurrent_trials": 2,
        "resources": {"num_workers": 2, "cpus_per_worker": 0.5},
        "store": str(tmp_path / "store"),
        "seed": 1,
    })
    grid = result.grid
    assert len(grid) == 2 and not grid.errors
    rows = result.results()
    reported = rows[rows["status"] == "RUNNING"]
    for trial in grid:
        trial_id = trial.metrics["trial_id"]
        ray_rows = trial.metrics_dataframe
        ours = reported[reported["trial_id"] == trial_id].sort_values("iteration")
        assert ours["iteration"].tolist() == ray_rows["training_iteration"].tolist() == [1, 2, 3]
        assert ours["metric.val_accuracy"].tolist() == pytest.approx(
            ray_rows["val_accuracy"].tolist())
        assert ours["fidelity.epoch"].tolist() == [1.0, 2.0, 3.0]
        assert (ours["cost.seconds"] > 0).all() and (ours["cost.peak_memory_bytes"] > 0).all()
        assert ours["config.depth"].iloc[0] == trial.config["depth"]
    assert sorted(rows.loc[rows["status"] == "TERMINATED", "trial_id"]) == sorted(
        t.metrics["trial_id"] for t in grid)
    assert set(rows["hardware"]) == {rows["hardware"].iloc[0]}
    assert "workers=2" in rows["hardware"].iloc[0]
    assert set(rows["searcher"]) == {"random"} and set(rows["seed"]) == {1}
    best = result.best()
    assert best["metric.val_accuracy"] == reported["metric.val_accuracy"].max()
    assert best["metric.val_accuracy"] > 0.5
