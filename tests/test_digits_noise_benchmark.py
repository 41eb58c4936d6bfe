"""benchmarks/digits_noise.py: noise (one configuration over seeds) against signal (configurations)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_spreads_separate_seed_noise_from_configuration_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports _common as the script does
    bench = importlib.import_module("digits_noise")
    rows = pd.DataFrame([{"schedule": "cosine", "config": c, "seed": s, "epoch": 1, "val_accuracy": v}
                         for c, values in ((0, (0.5, 0.7)), (1, (0.9, 0.9))) for s, v in enumerate(values)])
    row = bench.spreads(rows).iloc[0]
    assert row["noise"] == pytest.approx((0.1414214 + 0.0) / 2, rel=1e-5)  # mean of per-config stds
    assert row["signal"] == pytest.approx(0.2121320, rel=1e-5)  # std of the means 0.6 and 0.9
    assert row["noise_over_signal"] == pytest.approx(row["noise"] / row["signal"])
    drawn = bench.configs(3, seed=123)
    assert drawn == bench.configs(3, seed=123) and len({c["lr"] for c in drawn}) == 3
    assert all(0.005 <= c["lr"] <= 0.5 and c["depth"] in (1, 2, 3) for c in drawn)
