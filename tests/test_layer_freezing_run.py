"""LayerFreezingScheduler in real local Ray Tune runs: both promotion modes, and a restore."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import yaml

import efficient_search as es

pytestmark = pytest.mark.usefixtures("ray_session")

LRS = [0.3, 0.01, 0.5, 0.03, 0.2, 0.1]  # not sorted: async halving sees good and bad early


def spec(tmp_path, name: str, promotion: str, **fields: object) -> dict:
    return {
        "name": name,
        "task_options": {"epochs": 1},
        "search_space": {"depth": 2, "width": 8, "lr": {"grid": LRS}, "batch_size": 32},
        "scheduler": "layer_freezing",
        # depth 2 -> 4 layer units: rungs z = 1, 2, 4
        "scheduler_options": {"max_trainable_layers": 4, "epochs": 1, "reduction_factor": 2,
                              "promotion": promotion},
        "num_samples": 1,
        "max_concurrent_trials": 1,
        "resources": {"num_workers": 0},
        "store": str(tmp_path / "store"),
        "seed": 0,
        **fields,
    }


def ladder(rows: pd.DataFrame) -> dict[float, list[tuple[int, int]]]:
    """lr -> [(trainable_layers, epoch)] of every reported result."""
    reported = rows[rows["status"] == "RUNNING"].sort_values(["trial_id", "iteration"])
    return {lr: list(zip(r["fidelity.trainable_layers"].astype(int),
                         r["fidelity.epoch"].astype(int), strict=True))
            for lr, r in reported.groupby("config.lr")}


def check_climb(result: es.RunResult, promotion: str) -> dict[float, list[tuple[int, int]]]:
    """Every trial climbs the rungs z = 1, 2, 4 as successive halving allows; returns the ladder."""
    assert not result.grid.errors
    rows = result.results()
    steps = ladder(rows)
    assert sorted(steps) == sorted(LRS)
    reached = {lr: s[-1][0] for lr, s in steps.items()}
    assert list(reached.values()).count(1) >= 1, "successive halving must stop some at z=1"
    assert 4 in reached.values(), "someone reaches full fidelity"
    for s in steps.values():
        layers = [z for z, _ in s]
        assert layers == sorted(layers) and layers[0] == 1 and set(layers) <= {1, 2, 4}
        epochs = [e for _, e in s]
        if promotion == "continue":  # thawing continues the same run: epochs keep counting
            assert epochs == list(range(1, len(s) + 1))
        else:  # each promotion trains afresh at the higher z
            assert set(epochs) == {1}
    assert set(rows.loc[rows["status"] != "RUNNING", "status"]) == {"TERMINATED"}
    return steps


@pytest.mark.slow
def test_restarted_trials_climb_the_trainable_layer_rungs(tmp_path) -> None:
    """Promotion "restart"; "continue" climbs in the crash test below (its uninterrupted run)."""
    check_climb(es.run(spec(tmp_path, "freeze-restart", "restart")), "restart")


@pytest.mark.slow
def test_restore_after_a_crash_keeps_the_rungs(tmp_path) -> None:
    # Run the experiment in another process and kill it (and the Ray it started) mid-way, while
    # the same experiment runs uninterrupted here (one trial at a time: the rungs do not depend on
    # timing).
    spec_file = tmp_path / "split.yaml"
    spec_file.write_text(yaml.safe_dump(spec(tmp_path, "freeze-split", "continue")))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    crashed = subprocess.Popen([sys.executable, "-m", "efficient_search.cli", "run", str(spec_file)],
                               env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    store = es.ParquetStore(tmp_path / "store")

    def kill_mid_way() -> None:
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and crashed.poll() is None:
                if "freeze-split" in store.experiments() and len(store.results("freeze-split")) >= 4:
                    break
                time.sleep(0.2)
        finally:
            os.killpg(crashed.pid, signal.SIGKILL)
            crashed.wait()

    with ThreadPoolExecutor(1) as pool:
        killed = pool.submit(kill_mid_way)
        straight = check_climb(es.run(spec(tmp_path, "freeze-straight", "continue")), "continue")
        killed.result()
    partial = ladder(store.results("freeze-split"))
    assert sum(len(s) for s in partial.values()) < sum(len(s) for s in straight.values())

    resumed = es.run(spec(tmp_path, "freeze-split", "continue", resume=True)).results()
    assert ladder(resumed) == straight
    keys = list(zip(resumed["trial_id"], resumed["iteration"], resumed["status"], strict=True))
    assert len(keys) == len(set(keys))
