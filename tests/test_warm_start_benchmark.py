"""benchmarks/warm_start.py: how many trials a search needs to reach the earlier best."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports _common as the script does
    return importlib.import_module("warm_start")


def test_trials_to_reach_counts_from_one_and_says_never(bench: ModuleType) -> None:
    best = pd.Series([0.5, 0.7, 0.7, 0.9])
    assert bench.trials_to_reach(best, 0.7) == 2.0
    assert bench.trials_to_reach(best, 0.4) == 1.0
    assert math.isnan(bench.trials_to_reach(best, 0.95))


def test_summary_counts_never_as_past_the_budget_and_pairs_seeds(bench: ModuleType) -> None:
    nan = float("nan")
    rows = [(0, "cold", 8.0, 4.0), (0, "warm", 2.0, 2.0), (1, "cold", nan, 3.0), (1, "warm", 1.0, 1.0),
            (2, "cold", 5.0, 5.0), (2, "warm", nan, nan)]
    table = pd.DataFrame([{"seed": seed, "searcher": "evolution", "start": start, "final_best": 0.9,
                           "trials_to_reach": reach, "trials_to_within": within}
                          for seed, start, reach, within in rows])
    summary = bench.summarize(table, budget=16).set_index("start")
    assert summary.loc["cold", "trials_to_reach"] == 8.0  # median of 8, 17 (never), 5
    assert summary.loc["warm", "trials_to_reach"] == 2.0  # median of 2, 1, 17
    assert summary.loc["cold", "never"] == 1 and summary.loc["warm", "never_within"] == 1
    assert summary.loc["warm", "trials_to_reach_warm_sooner"] == 2  # seeds 0 and 1
    assert summary.loc["warm", "trials_to_reach_cold_sooner"] == 1  # seed 2
    assert summary.loc["cold", "trials_to_within_warm_sooner"] == 2
