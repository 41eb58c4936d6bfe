"""benchmarks/_common.py: what every benchmark shares."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_record_writes_every_row_and_releases_the_experiment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _common

    from efficient_search.store import ParquetStore

    table = pd.DataFrame({"method": ["a", "b"], "regret": [0.1, 0.2]})
    for _ in range(2):  # a second run of the benchmark finds the experiment free
        _common.record(str(tmp_path / "store"), "demo", [("runs", table)], quick=True)
    assert "taking over" not in capsys.readouterr().out
    rows = ParquetStore(str(tmp_path / "store")).results("bench-demo")
    assert len(rows) == 4 and sorted(rows["config.method"]) == ["a", "a", "b", "b"]
