"""DeepSpeed ZeRO on CPU inside Ray Train workers (slow: the first run compiles a comm op)."""

from __future__ import annotations

import pytest

import efficient_search as es

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


@pytest.mark.parametrize("stage", [1, 2])
def test_deepspeed_strategy_trains_with_two_workers(tmp_path, stage: int) -> None:
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
    curve = rows.loc[rows["status"] == "RUNNING", "metric.val_accuracy"].tolist()
    assert len(curve) == 3 and curve[-1] > curve[0] and curve[-1] > 0.4
    assert "deepspeed workers=2" in rows["hardware"].iloc[0]
