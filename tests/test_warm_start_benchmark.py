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
