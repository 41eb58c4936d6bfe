"""benchmarks/layer_freezing.py: the same seed trains to the same losses in fresh processes, and its
statistics (correlations over seeds, seed ceiling, compute accounting against ASHA) are right."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pandas as pd
import pytest
from benchmark_modules import BENCHMARKS, load_benchmark_module

RUN_TWICE = """
import json, sys
sys.path.insert(0, {benchmarks!r})
from _freezing_quality import train_job
config = {{"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.95,
          "batch_size": 32}}
rows = [train_job(task, 0, config, z, seed, True)
        for task, z in (("digits", 1), ("digits", 6), ("shakespeare_deep", 1),
                        ("shakespeare_deep", 12)) for seed in (0, 1)]
print(json.dumps([(r["task"], r["z"], r["seed"], r["score"], r["train_loss"]) for r in rows]))
"""


@pytest.fixture()
def quality(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = load_benchmark_module("_freezing_quality")
    yield module
    sys.modules.pop("_freezing_quality", None)


@pytest.fixture()
def e2e(monkeypatch: pytest.MonkeyPatch, quality: Any) -> Any:
    module = load_benchmark_module("_freezing_e2e")
    yield module
    sys.modules.pop("_freezing_e2e", None)


def test_a_seed_trains_to_the_same_losses_in_two_fresh_processes() -> None:
    """Threads, data order, initialisation and dropout are seeded: losses agree to the last bit,
    on the CNN and on the 12-unit transformer, frozen and not; other seeds give other losses."""
    code = RUN_TWICE.format(benchmarks=str(BENCHMARKS))
    outputs = [json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                         text=True, timeout=300).stdout.splitlines()[-1])
               for _ in range(2)]
    assert outputs[0] == outputs[1]
    by_seed = {(task, z, seed): score for task, z, seed, score, _ in outputs[0]}
    assert by_seed[("digits", 6, 0)] != by_seed[("digits", 6, 1)]
    assert by_seed[("shakespeare_deep", 12, 0)] != by_seed[("shakespeare_deep", 12, 1)]


def fake_runs(scores: dict[tuple[int, int], list[float]]) -> pd.DataFrame:
    """Runs of task ``digits`` (L = 6, maximised): ``scores[(z, seed)]`` over configs 0..n-1."""
    return pd.DataFrame([{"task": "digits", "config": i, "z": z, "seed": seed, "score": value}
                         for (z, seed), values in scores.items() for i, value in enumerate(values)])


def test_correlations_are_per_seed_against_the_same_seed_and_the_ceiling_over_seed_pairs(
        quality: Any) -> None:
    full = {0: [1, 2, 3, 4], 1: [1, 2, 4, 3], 2: [2, 1, 3, 4]}
    low = {0: [1, 2, 3, 4], 1: [4, 3, 2, 1], 2: [2, 1, 3, 4]}
    runs = fake_runs({**{(6, s): v for s, v in full.items()}, **{(1, s): v for s, v in low.items()}})
    per_seed = quality.per_seed_correlations(runs)
    at1 = per_seed[per_seed["z"] == 1].set_index("seed")
    assert at1.loc[0, "spearman"] == pytest.approx(1.0)
    assert at1.loc[1, "spearman"] == pytest.approx(-0.8)  # reversed against [1, 2, 4, 3]
    assert at1.loc[2, "spearman"] == pytest.approx(1.0)
    assert at1.loc[0, "top_k_overlap"] == 1.0  # k = 4 // 4 = 1: config 3 is best in both
    summary = quality.summarise(per_seed, runs).set_index("z")
    assert summary.loc[1, "spearman"] == pytest.approx(0.4)
    spread = math.sqrt((0.6**2 * 2 + 1.2**2) / 2)  # sample standard deviation of 1, -0.8, 1
    assert summary.loc[1, "spearman_se"] == pytest.approx(spread / math.sqrt(3))
    # Ceiling: full fidelity across seed pairs (0,1): 0.8, (0,2): 0.8, (1,2): 0.6.
    assert summary.loc[6, "ceiling"] == pytest.approx((0.8 + 0.8 + 0.6) / 3)
    assert summary.loc[6, "cross_seed_spearman"] == pytest.approx((0.8 + 0.8 + 0.6) / 3)
    assert summary.loc[6, "spearman"] == pytest.approx(1.0)
    assert summary.loc[1, "gap_to_ceiling"] == pytest.approx(summary.loc[6, "ceiling"] - 0.4)


def test_minimised_scores_rank_the_other_way(quality: Any) -> None:
    runs = pd.DataFrame([{"task": "shakespeare", "config": i, "z": z, "seed": 0, "score": v}
                         for z, values in ((6, [1.0, 2.0, 3.0]), (1, [3.0, 2.0, 1.0]))
                         for i, v in enumerate(values)])
    per_seed = quality.per_seed_correlations(runs).set_index("z")
    assert per_seed.loc[1, "spearman"] == pytest.approx(-1.0)
    assert per_seed.loc[6, "spearman"] == pytest.approx(1.0)
    assert math.isnan(per_seed.loc[1, "cross_seed_spearman"])  # one seed: no other seed to compare


def test_nearest_z_reads_forty_percent_of_the_layers(quality: Any) -> None:
    assert quality.nearest_z(12, 0.4, [1, 2, 3, 4, 5, 6, 8, 10, 12]) == 5
    assert quality.nearest_z(6, 0.4, [1, 2, 3, 4, 5, 6]) == 2
    assert quality.nearest_z(6, 0.4, [1, 6]) == 1


def test_compute_counts_forward_of_all_units_and_backward_of_the_trainable_ones(e2e: Any) -> None:
    assert e2e.epoch_cost(12, 12) == pytest.approx(1.0)
    assert e2e.epoch_cost(1, 12) == pytest.approx((1 + 2 / 12) / 3)


def arrivals(rows: list[tuple[str, int, int, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": t, "epoch": e, "z": z, "seconds": s, "score": v}
                         for t, e, z, s, v in rows])


def test_accounting_in_arrival_order_with_restarts_and_thaws(e2e: Any) -> None:
    # L = 2, final epoch 2, minimised. Trial a: z=1 epoch 1, restarted at z=2 (epochs 1, 2);
    # trial b: thawed from z=1 epoch 1 to z=2 epoch 2 (one more epoch).
    log = arrivals([("a", 1, 1, 1.0, 5.0), ("b", 1, 1, 1.0, 4.0), ("a", 1, 2, 2.0, 3.0),
                    ("a", 2, 2, 4.0, 2.0), ("b", 2, 2, 3.0, 1.5)])
    frame = e2e.account(log, layers=2, final_epoch=2, sign=-1.0)
    low, full = (1 + 1) / 3, 1.0
    assert frame["compute_epochs"].tolist() == pytest.approx(
        [low, 2 * low, 2 * low + full, 2 * low + 2 * full, 2 * low + 3 * full])
    assert frame["compute_seconds"].tolist() == pytest.approx([1, 2, 4, 6, 8])
    assert frame["full"].tolist() == [False, False, False, True, True]
    assert frame["best_full"].tolist()[3:] == [2.0, 1.5]
    later = e2e.account(pd.concat([log, arrivals([("c", 1, 1, 1.0, 9.0)])]), layers=2, final_epoch=2,
                        sign=-1.0)
    assert later["best_full"].iloc[-1] == 1.5  # a low-fidelity result keeps the best so far
    assert e2e.reach(frame, 2.0, -1.0) == pytest.approx(2 * low + 2 * full)
    assert e2e.reach(frame, 1.0, -1.0) == math.inf
    assert e2e.best_within(frame, 2 * low + 2 * full) == 2.0
    assert math.isnan(e2e.best_within(frame, 2 * low + full))


def test_comparison_against_asha(e2e: Any) -> None:
    asha = e2e.account(arrivals([("x", 1, 2, 1.0, 3.0), ("x", 2, 2, 2.0, 2.0),
                                 ("y", 1, 2, 1.0, 2.5), ("y", 2, 2, 2.0, 1.0)]),
                       layers=2, final_epoch=2, sign=-1.0)
    ours = e2e.account(arrivals([("x", 1, 1, 1.0, 3.0), ("x", 2, 2, 2.0, 0.9)]),
                       layers=2, final_epoch=2, sign=-1.0)
    table = e2e.compare({"asha": asha, "ours": ours}, sign=-1.0).set_index("scheduler")
    assert table.loc["asha", "reach_ratio_vs_asha"] == pytest.approx(1.0)
    assert table.loc["ours", "asha_best"] == 1.0
    assert table.loc["ours", "reach_ratio_vs_asha"] == pytest.approx((2 / 3 + 1) / 4)
    assert table.loc["ours", "best_within_asha_compute"] == 0.9
    assert table.loc["ours", "shortfall_vs_asha"] == pytest.approx(-0.1)  # better than ASHA's 1.0
    assert table.loc["ours", "total_ratio_vs_asha"] == pytest.approx((2 / 3 + 1) / 4)
