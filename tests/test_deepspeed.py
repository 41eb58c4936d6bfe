"""DeepSpeed ZeRO on CPU inside Ray Train workers (slow: the first run compiles a comm op)."""

from __future__ import annotations

import pytest

import efficient_search as es

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def test_deepspeed_zero_stages_train_identically_with_two_workers(tmp_path) -> None:
    curves = {}
    for stage in (1, 2):
        result = es.run({
            "name": f"deepspeed-zero{stage}",
            "task_options": {"epochs": 3},
            "search_space": {"depth": 1, "width": 8, "lr": 0.1, "batch_size": 32},
            "num_samples": 1,
            "resources": {"num_workers": 2, "cpus_per_worker": 1, "strategy": "deepspeed",
                          "deepspeed_config": {"zero_optimization": {"stage": stage}}},
            "store": str(tmp_path / "store"),
        })
        assert not result.grid.errors
        rows = result.results()
        curves[stage] = rows.loc[rows["status"] == "RUNNING", "metric.val_accuracy"].tolist()
        assert "deepspeed workers=2" in rows["hardware"].iloc[0]
    assert len(curves[1]) == 3
    assert max(curves[1][1:]) > curves[1][0] and max(curves[1]) > 0.4  # it learns
    assert curves[2] == pytest.approx(curves[1], abs=1e-3)  # sharding does not change the maths
