"""benchmarks/scale.py: its arguments, its speed-up arithmetic, and its quick and full paths on LCBench
(skipped where the YAHPO data or yahpo-gym is missing), down to the README table made from its summary."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmark_modules import load_benchmark_module
from test_replay_blackbox import YAHPO_DATA, needs_lcbench

from efficient_search.blackbox.sampling import ReferenceValues
from efficient_search.testing.replay import ReplayOutcome

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def scale(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setenv("EFFICIENT_SEARCH_YAHPO_DATA", str(YAHPO_DATA))
    import _common

    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path / "results")
    module = load_benchmark_module("scale")
    yield module
    sys.modules.pop("scale", None)


def test_bad_arguments_name_the_argument(scale: Any) -> None:
    for argv, name in ((["--workers", "8,1"], "--workers"), (["--workers", "0"], "--workers"),
                       (["--blackboxes", "nasbench"], "--blackboxes"), (["--parts", "all"], "--parts"),
                       (["--seeds", "-1"], "--seeds")):
        with pytest.raises(ValueError, match=name):
            scale.parse_args(["--quick", *argv])


def test_instances_are_spread_evenly(scale: Any) -> None:
    assert scale.spread(list("abcdefghi"), 3) == ["a", "e", "i"]
    assert scale.spread(["a", "b"], 4) == ["a", "b"]


def test_time_to_target_reads_the_first_step_at_or_below_it() -> None:
    runs = load_benchmark_module("_scale_runs")
    outcome = ReplayOutcome(mode="max")
    for clock, value in ((10.0, 0.5), (20.0, 0.8), (30.0, 0.7), (40.0, 0.9)):
        outcome.record("t", 1, value, 10.0, clock)
    ref = ReferenceValues(best=1.0, worst=0.0, full_run_s=100.0, samples=10)
    assert runs.time_to(outcome, ref, target=0.2) == 20.0  # regret 0.2 after the second step
    assert runs.time_to(outcome, ref, target=0.1) == 40.0
    assert math.isinf(runs.time_to(outcome, ref, target=0.05))


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    return ["--instances", "1", "--seeds", "1", "--workers", "1,4", "--budget-runs", "1",
            "--meta-steps", "20", "--methods", "quicktune+freeze_thaw,random+asha", "--jobs", "1",
            "--store", str(tmp_path / "store"), *extra]


@needs_lcbench
def test_quick_path_prints_scaling_and_latency_figures(scale: Any, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    figures = scale.main(["--quick", *tiny(tmp_path), "--parts", "scaling,latency", "--latency-trials", "30",
                          "--latency-calls", "30", "--latency-workers", "8"])
    out = capsys.readouterr().out
    result = [line for line in out.splitlines() if line.startswith("RESULT scale ")]
    assert len(result) == 1 and "mode=quick" in result[0]
    assert figures["best_peer_at_4"] == "random+asha"
    assert 0.0 < figures["utilisation_4"] <= 1.0 and -0.1 <= figures["regret_50_at_4"] <= 1.0
    assert figures["latency_trials_reached"] >= 30 and figures["decide_ms_p95_8"] >= 0.0
    assert (tmp_path / "results" / "scale_lcbench-quick.png").is_file()
    assert not (tmp_path / "results" / "scale_lcbench.csv").exists()  # summaries are full-mode only


@needs_lcbench
def test_full_path_writes_the_summary_the_readme_table_is_made_from(scale: Any, tmp_path: Path) -> None:
    import pandas as pd

    scale.main([*tiny(tmp_path), "--parts", "scaling"])
    runs = pd.read_csv(tmp_path / "results" / "scale_lcbench.csv")
    assert len(runs) == 2 * 2 and set(runs["workers"]) == {1, 4}
    assert (runs.loc[runs["workers"] == 1, "speedup"].dropna() == 1.0).all()  # one worker against itself
    summary_path = tmp_path / "results" / "scale_lcbench_summary.csv"
    report = load_benchmark_module("bench_report")
    table = report.render_scale(summary_path)
    assert "quicktune+freeze_thaw" in table and "random+asha" in table and "regret @ 50 %, N = 4" in table
    kept = tmp_path / "results" / ".partial"
    assert not kept.exists() or not any(kept.iterdir())  # the kept instances go once written
