"""Recorded tables as a blackbox: the space over the real hyperparameters, the nearest-row lookup
(log-scaled, range-normalised, categorical mismatch = 1, seeded ties) and cumulative costs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray.tune.search.sample import Categorical, Float, Integer, LogUniform

from efficient_search.blackbox.tables import TableBenchmark
from efficient_search.searchers.space import SearchSpace
from efficient_search.surrogate.meta_dataset import MetaDataset

QUICKTUNE = Path(__file__).resolve().parents[2] / "shared" / "data" / "quicktune-mtlbm-extended"


def table(seed: int = 0, **options: int) -> TableBenchmark:
    """Two instances; in A, rows 0 and 1 differ in lr (1e-4 vs 1e-2) and opt; row 2 stopped after 2 steps."""
    configs = pd.DataFrame({
        "lr": [1e-4, 1e-2, 1e-3, 3e-4, 1e-2],
        "wd": [0.0, 1e-4, 1e-2, 0.1, 0.0],
        "batch": [16, 16, 64, 512, 32],
        "opt": ["adam", "sgd", "adam", "sgd", "adam"],
        "fixed": [1.0, 1.0, 1.0, 1.0, 1.0],
    })
    curves = np.asarray([[10, 20, 30], [15, 25, 35], [5, 6, np.nan], [1, 2, 3], [7, 8, 9]], dtype=float)
    costs = np.asarray([[1, 2, 3], [2, 2, 2], [4, 4, np.nan], [1, 1, 1], [5, 5, 5]], dtype=float)
    data = MetaDataset(configs=configs, curves=curves, costs=costs,
                       datasets=np.asarray(["A", "A", "A", "B", "B"]), budgets=np.arange(1, 4),
                       metric="accuracy", mode="max")
    return TableBenchmark(data, seed=seed, **options)


def two_rows(opts: list[str], seed: int = 0) -> TableBenchmark:
    """Instance A with rows (lr 1e-4, opts[0]) and (lr 1e-2, opts[1])."""
    return TableBenchmark(MetaDataset(
        configs=pd.DataFrame({"lr": [1e-4, 1e-2], "opt": opts}), curves=np.asarray([[1.0], [2.0]]),
        costs=np.ones((2, 1)), datasets=np.asarray(["A", "A"]), budgets=np.ones(1), metric="accuracy",
        mode="max"), seed=seed)


def config(**changes: object) -> dict[str, object]:
    return {**{"lr": 1e-4, "wd": 0.0, "batch": 16, "opt": "adam", "fixed": 1.0}, **changes}


def test_space_is_derived_from_the_recorded_values() -> None:
    space = table().space()
    assert isinstance(space["lr"], Float) and isinstance(space["lr"].get_sampler(), LogUniform)
    assert (space["lr"].lower, space["lr"].upper) == (1e-4, 1e-2)
    # wd holds 0: not all positive, so a linear range.
    assert isinstance(space["wd"], Float) and not isinstance(space["wd"].get_sampler(), LogUniform)
    assert (space["wd"].lower, space["wd"].upper) == (0.0, 0.1)
    assert isinstance(space["batch"], Integer) and isinstance(space["batch"].get_sampler(), LogUniform)
    assert (space["batch"].lower, space["batch"].upper) == (16, 513)  # Ray's upper is exclusive
    assert isinstance(space["opt"], Categorical) and space["opt"].categories == ["adam", "sgd"]
    assert space["fixed"] == 1.0
    grid = table(choices_up_to=4).space()
    assert grid["wd"].categories == [0.0, 1e-4, 1e-2, 0.1] and isinstance(grid["lr"], Categorical)
    assert isinstance(grid["batch"], Categorical)
    bench = table()
    assert bench.instances == ["A", "B"] and bench.metric_names == ["accuracy"]
    assert (bench.metric, bench.mode) == ("accuracy", "max")
    assert (bench.fidelity.name, bench.fidelity.min, bench.fidelity.max) == ("epoch", 1, 3)
    assert bench.fidelity.continuable and bench.fidelity.integer


def test_a_recorded_rows_own_config_maps_to_itself() -> None:
    bench = table()
    for row, instance in enumerate(["A", "A", "A", "B", "B"]):
        assert bench.nearest_row(bench.recorded_config(row), instance) == row
    assert bench.evaluate(bench.recorded_config(1), "A", 2)["accuracy"] == 25


def test_a_config_between_two_rows_maps_to_the_nearer_on_the_log_scale() -> None:
    bench = table()
    # Rows 0 (lr 1e-4, adam) and 1 (lr 1e-2, sgd) of A; with opt=sgd, wd=1e-4 row 1 is nearer...
    near_one = config(lr=2e-3, wd=1e-4, opt="sgd")
    assert bench.nearest_row(near_one, "A") == 1
    # ... and lr alone decides between rows that agree elsewhere: 2e-3 is 20x from 1e-4, 5x from 1e-2
    # (linearly it would be nearer 1e-4).
    agree = two_rows(["adam", "adam"])
    assert agree.nearest_row({"lr": 2e-3, "opt": "adam"}, "A") == 1
    assert agree.nearest_row({"lr": 5e-4, "opt": "adam"}, "A") == 0
    # A categorical mismatch counts 1: lr 5e-3 is near row 1's lr (0.02 away, squared, normalised) but
    # its optimiser differs (1); row 0 is 0.72 away.
    assert two_rows(["adam", "sgd"]).nearest_row({"lr": 5e-3, "opt": "adam"}, "A") == 0


def test_ties_are_broken_by_the_seed_and_stay_put() -> None:
    # Row 0 (adam, lr 1e-4): 1 for lr (the whole range); row 1 (sgd, lr 1e-2): 1 for the optimiser.
    tied = two_rows(["adam", "sgd"])
    proposal = {"lr": 1e-2, "opt": "adam"}
    picks = {seed: TableBenchmark(tied.data, seed=seed).nearest_row(proposal, "A") for seed in range(16)}
    assert set(picks.values()) == {0, 1}
    for seed, row in picks.items():  # the same config always gets the same row under one seed
        again = TableBenchmark(tied.data, seed=seed)
        assert [again.nearest_row(proposal, "A") for _ in range(3)] == [row] * 3
    assert tied.evaluate(proposal, "A", 1)["accuracy"] == tied.evaluate(proposal, "A", 1)["accuracy"]


def test_cost_is_cumulative_and_a_short_run_is_held_at_its_last_step() -> None:
    bench = table()
    seconds = [bench.evaluate(bench.recorded_config(0), "A", e)["cost/seconds"] for e in (1, 2, 3)]
    assert seconds == [1.0, 3.0, 6.0]
    short = [bench.evaluate(bench.recorded_config(2), "A", e) for e in (1, 2, 3)]
    assert [s["accuracy"] for s in short] == [5.0, 6.0, 6.0]
    assert [s["cost/seconds"] for s in short] == [4.0, 8.0, 8.0]
    assert [s["fidelity/epoch"] for s in short] == [1, 2, 2]


@pytest.mark.parametrize(("proposal", "instance", "fidelity", "error", "words"), [
    (config(), "C", 1, ValueError, ["`instance` 'C'", "Fix: pass one of"]),
    (config(), "A", 4, ValueError, ["`fidelity` (epoch) must be in [1, 3]", "4"]),
    (config(), "A", 1.5, ValueError, ["whole number"]),
    ({"lr": 1e-3}, "A", 1, ValueError, ["lacks hyperparameters", "wd", "Fix"]),
    (config(opt="rmsprop"), "A", 1, ValueError, ["`config.opt` must be one of ['adam', 'sgd']"]),
    (config(lr=1.0), "A", 1, ValueError, ["`config.lr` must be in [0.0001, 0.01]", "1.0"]),
    (config(lr="1e-3"), "A", 1, TypeError, ["`config.lr` must be a finite number", "'1e-3'"]),
    ("lr=1e-3", "A", 1, TypeError, ["`config` must be a dict"]),
])
def test_bad_input_names_field_value_and_fix(proposal: object, instance: str, fidelity: float,
                                            error: type, words: list[str]) -> None:
    with pytest.raises(error) as caught:
        table().evaluate(proposal, instance, fidelity)  # type: ignore[arg-type]
    for word in words:
        assert word in str(caught.value)


def test_qttseg_layout_csv_is_a_table(tmp_path: Path) -> None:
    path = tmp_path / "qttseg.csv"
    pd.DataFrame({
        "dataset": ["cells", "cells", "roads"], "lr": [1e-4, 1e-3, 1e-4], "rank": [4, 16, 8],
        "epoch_0_iou": [0.2, 0.3, 0.1], "epoch_1_iou": [0.4, 0.5, None], "epoch_0_dice": [0.3, 0.4, 0.2],
        "epoch_1_dice": [0.5, 0.6, None], "cost": [10.0, 20.0, 5.0],
    }).to_csv(path, index=False)
    bench = TableBenchmark.from_path(path)
    assert bench.instances == ["cells", "roads"] and bench.metric == "iou"
    assert sorted(bench.space()) == ["lr", "rank"]
    out = bench.evaluate({"lr": 1e-3, "rank": 16}, "cells", 2)
    assert out == {"iou": 0.5, "cost/seconds": 20.0, "fidelity/epoch": 2}


@pytest.mark.skipif(not QUICKTUNE.is_dir(), reason=f"Quick-Tune meta-dataset not found at {QUICKTUNE}")
def test_quicktune_meta_dataset_as_a_table() -> None:
    bench = TableBenchmark.from_path(QUICKTUNE)
    assert len(bench.instances) == 26 and (bench.metric, bench.mode) == ("accuracy", "max")
    space = bench.space()
    assert len(space) == 32 and len(space["model"].categories) == 24
    assert isinstance(space["lr"].get_sampler(), LogUniform)
    assert isinstance(space["batch_size"].get_sampler(), LogUniform)
    parsed, rng = SearchSpace.from_ray(space), np.random.default_rng(0)  # what our searchers sample
    for instance in bench.instances:
        assert bench.evaluate(parsed.decode(parsed.sample(rng)), instance, 50)["cost/seconds"] > 0
    data, cumulative = bench.data, bench.data.cumulative_costs()
    rows = np.flatnonzero(data.datasets == "FLW")
    for row in rows.tolist():
        assert bench.nearest_row(bench.recorded_config(row), "FLW") == row
    first = int(rows[0])
    out = bench.evaluate(bench.recorded_config(first), "FLW", 1)
    assert out["cost/seconds"] == pytest.approx(cumulative[first, 0])
    assert out["accuracy"] == data.curves[first, 0]
