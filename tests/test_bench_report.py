"""benchmarks/bench_report.py: README regions regenerated from summary files, `--check`, bad markers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from benchmark_modules import load_benchmark_module

ROOT = Path(__file__).resolve().parents[1]


bench_report = load_benchmark_module("bench_report")
PERCENTS = (10, 25, 50, 100)


def write_summary(results: Path, scenario: str, regret_50: dict[str, float]) -> Path:
    """An hpo_suite summary as ``_hpo_run.write_summaries`` writes it (index ``method``)."""
    rows = []
    order = sorted(regret_50, key=regret_50.__getitem__)
    for method, value in regret_50.items():
        row: dict[str, float | str] = {"method": method}
        for p in PERCENTS:
            row[f"regret_{p}_mean"] = value * 50 / p
            row[f"regret_{p}_se"] = value / 10
            row[f"rank_{p}"] = 1.0 + order.index(method)
        row.update(overhead_share=0.0123, runs=170)
        rows.append(row)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"hpo_suite_{scenario}_summary.csv"
    pd.DataFrame(rows).set_index("method").to_csv(path, float_format="%.4g")
    return path


README = """# Project

## Benchmarks

LCBench:

<!-- bench-report:hpo_suite_lcbench -->
stale text written by hand
<!-- /bench-report -->

After the table.
"""


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A README with one lcbench region beside ``benchmarks/results/`` holding its summary."""
    readme, results = tmp_path / "README.md", tmp_path / "benchmarks" / "results"
    readme.write_text(README, encoding="utf-8")
    write_summary(results, "lcbench", {"random": 0.05, "quicktune+freeze_thaw": 0.01, "bohb": 0.03})
    return readme, results


def run(readme: Path, results: Path, *extra: str) -> int:
    return int(bench_report.main(["--readme", str(readme), "--results", str(results), *extra]))


def test_generate_replaces_only_the_region(tree: tuple[Path, Path]) -> None:
    readme, results = tree
    assert run(readme, results) == 0
    text = readme.read_text(encoding="utf-8")
    assert "stale text" not in text
    assert text.startswith("# Project\n\n## Benchmarks\n\nLCBench:\n\n"
                           "<!-- bench-report:hpo_suite_lcbench -->\n")
    assert text.endswith("<!-- /bench-report -->\n\nAfter the table.\n")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| method | regret @ 10 % |") and "rank @ 10 / 25 / 50 / 100 %" in table[0]
    # Best rank first; the lowest mean and the best rank in bold; overhead in percent.
    assert [row.split(" | ")[0] for row in table[1:]] == ["| quicktune+freeze_thaw", "| bohb", "| random"]
    assert "**0.0100** ± 0.0010" in table[1] and "**1.00**" in table[1] and "1.23 %" in table[1]
    assert "**" not in table[3]
    assert ("Source: [`benchmarks/results/hpo_suite_lcbench_summary.csv`]"
            "(benchmarks/results/hpo_suite_lcbench_summary.csv), written by "
            "`python benchmarks/hpo_suite.py --scenario lcbench --seeds 3` (full mode); "
            "table by `make bench-report`.") in text


def test_generate_is_idempotent(tree: tuple[Path, Path]) -> None:
    readme, results = tree
    run(readme, results)
    first = readme.read_text(encoding="utf-8")
    assert run(readme, results) == 0
    assert readme.read_text(encoding="utf-8") == first
    assert bench_report.update(first, results, readme.parent)[1] == []


def test_check_passes_when_current_and_fails_on_a_stale_readme(tree: tuple[Path, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    readme, results = tree
    assert run(readme, results, "--check") == 1  # still the hand-written text
    run(readme, results)
    assert run(readme, results, "--check") == 0
    write_summary(results, "lcbench", {"random": 0.05, "quicktune+freeze_thaw": 0.02, "bohb": 0.03})
    before = readme.read_text(encoding="utf-8")
    capsys.readouterr()
    assert run(readme, results, "--check") == 1
    assert "out of date in hpo_suite_lcbench" in capsys.readouterr().out
    assert readme.read_text(encoding="utf-8") == before  # --check writes nothing


def test_missing_summary_says_no_full_run_yet(tree: tuple[Path, Path]) -> None:
    readme, results = tree
    (results / "hpo_suite_lcbench_summary.csv").unlink()
    assert run(readme, results) == 0
    text = readme.read_text(encoding="utf-8")
    assert ("_No full run committed yet: `python benchmarks/hpo_suite.py --scenario lcbench --seeds 3` "
            "writes") in text
    assert run(readme, results, "--check") == 0
    write_summary(results, "lcbench", {"random": 0.05, "bohb": 0.03})
    assert run(readme, results, "--check") == 1  # the run arrived: README must be regenerated


def test_any_scenario_and_several_regions(tree: tuple[Path, Path]) -> None:
    readme, results = tree
    write_summary(results, "rbv2_glmnet", {"random": 0.2, "asha": 0.1})
    readme.write_text(README + "\n<!-- bench-report:hpo_suite_rbv2_glmnet -->\n<!-- /bench-report -->\n",
                      encoding="utf-8")
    new, changed = bench_report.update(readme.read_text(encoding="utf-8"), results, readme.parent)
    assert changed == ["hpo_suite_lcbench", "hpo_suite_rbv2_glmnet"]
    assert "| asha | **0.5000** ± 0.0100" in new and "--scenario rbv2_glmnet" in new


@pytest.mark.parametrize(("text", "pattern"), [
    ("<!-- bench-report:nope -->\n<!-- /bench-report -->\n",
     r"line 1: marker `<!-- bench-report:nope -->` names no report "
     r"\(known: quicktune_replay, [^)]*hpo_suite_\{scenario\}, [^)]*\); "
     r"fix the name or add an entry to REPORTS"),
    ("x\n<!-- bench-report:hpo_suite_lcbench -->\n",
     r"line 2: .* is not closed; add `<!-- /bench-report -->`"),
    ("<!-- bench-report:hpo_suite_a -->\n<!-- bench-report:hpo_suite_b -->\n<!-- /bench-report -->\n",
     r"line 1: .*hpo_suite_a -->` is not closed before .*hpo_suite_b"),
    ("<!-- /bench-report -->\n", r"line 1: `<!-- /bench-report -->` closes no region"),
    ("<!-- bench-report: hpo_suite_lcbench -->\n<!-- /bench-report -->\n",
     r"line 1: marker `<!-- bench-report: hpo_suite_lcbench -->` is malformed; "
     r"write `<!-- bench-report:NAME -->`"),
])
def test_bad_markers_name_the_marker_and_the_fix(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        bench_report.update(text, tmp_path, tmp_path)


def test_summary_without_a_column_is_refused(tree: tuple[Path, Path]) -> None:
    readme, results = tree
    path = results / "hpo_suite_lcbench_summary.csv"
    pd.read_csv(path).drop(columns=["rank_50"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"must have columns \['rank_50'\]"):
        run(readme, results)


def test_numbers_keep_small_regrets_visible() -> None:
    assert [bench_report.number(v) for v in (0.0, 0.01234, 0.00042, -0.0021, float("nan"))] == [
        "0.0000", "0.0123", "4.2e-04", "-0.0021", "–"]


def test_readme_matches_the_committed_summaries() -> None:
    assert bench_report.main(["--check"]) == 0, "run `make bench-report` and commit README.md"


def test_paired_comparison_from_the_per_run_file(tree: tuple[Path, Path]) -> None:
    """With ``hpo_suite_<scenario>.csv`` beside the summary, the table is followed by the paired
    difference of ours against the best peer (lowest regret at 50 %) and against the ablation."""
    readme, results = tree
    rows = []
    for instance in ("a", "b"):
        for seed in (0, 1):
            for method, value in (("quicktune+freeze_thaw", 0.01), ("bohb", 0.03), ("random", 0.05),
                                  ("quicktune_no_meta+freeze_thaw", 0.02 if seed else 0.0)):
                rows.append({"scenario": "lcbench", "instance": instance, "seed": seed, "method": method,
                             **{f"regret_{p}": value for p in PERCENTS}})
    pd.DataFrame(rows).to_csv(results / "hpo_suite_lcbench.csv", index=False)
    write_summary(results, "lcbench", {"random": 0.05, "quicktune+freeze_thaw": 0.01, "bohb": 0.03,
                                       "quicktune_no_meta+freeze_thaw": 0.01})
    assert run(readme, results) == 0
    text = readme.read_text(encoding="utf-8")
    # Against bohb: -0.02 in every cell (s.e. 0, so beyond two of them), ours wins every cell.
    assert ("quicktune+freeze_thaw − the best peer at 50 % (bohb), paired over 4 (instance, seed) cells: "
            "10 %: -0.0200 ± 0.0000 (> 2 s.e.), wins 1.00") in text
    # Against the ablation: +0.01 and -0.01, half the cells each.
    assert ("the ablation (quicktune_no_meta+freeze_thaw), paired over 4 (instance, seed) cells: "
            "10 %: 0.0000") in text
    assert "wins 0.50" in text


def test_layer_freezing_regions_from_per_seed_and_per_scheduler_files(tmp_path: Path) -> None:
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    pd.DataFrame([{"task": "deep", "layers": 12, "z": z, "seed": s, "spearman": v, "kendall": v,
                   "top_k_overlap": 1.0, "cross_seed_spearman": v - 0.1, "ceiling": 0.95, "ceiling_se": 0.01}
                  for z, values in ((5, (0.8, 0.9, 1.0)), (12, (1.0, 1.0, 1.0)))
                  for s, v in enumerate(values)]).to_csv(results / "layer_freezing_quality.csv", index=False)
    pd.DataFrame([{"scheduler": name, "seed": s, "trials": 9, "results": 20, "compute_epochs": 10.0,
                   "compute_seconds": 30.0, "best_full": 3.2, "asha_best": 3.2, "reach_ratio_vs_asha": r,
                   "total_ratio_vs_asha": 1.0, "best_within_asha_compute": 3.2}
                  for name, ratios in (("asha", (1.0, 1.0, 1.0)), ("ours", (0.4, float("inf"), 0.5)))
                  for s, r in enumerate(ratios)]).to_csv(results / "layer_freezing_e2e.csv", index=False)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench-report:layer_freezing_quality -->\n<!-- /bench-report -->\n"
                      "<!-- bench-report:layer_freezing_e2e -->\n<!-- /bench-report -->\n", encoding="utf-8")
    assert run(readme, results) == 0
    text = readme.read_text(encoding="utf-8")
    assert "| deep (12) | 5/12 | 0.90 ± 0.06 |" in text  # mean and standard error over 3 seeds
    assert "ceiling (full fidelity under one seed against another" in text and "deep 0.95 ± 0.01" in text
    assert ("| ours | 10.0 (1.00x) | 3.2000 | 0.50x (0.40x, not reached, 0.50x) | 3.2000, 3.2000, 3.2000 |"
            in text)


def test_quicktune_diagnosis_tables_render_from_their_summaries(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame({"method": ["quicktune+freeze_thaw", "random+asha"], "started": [21.4, 22.1],
                  "resumes": [5.9, 0.0], "epochs_per_trial": [1.4, 1.9], "max_epochs_trial": [8.8, 9.8],
                  "continued": [8.4, 5.6], "continued_below_median": [0.34, 0.27]}).to_csv(
        results / "quicktune_replay_lcbench-short_allocation.csv", index=False)
    calibration = {"observed_steps": [0, 1, 3]}
    for name in ("nll_next", "cover68_next", "cover95_next", "nll_last", "cover68_last", "cover95_last",
                 "spearman_last"):
        calibration[name] = [0.5, 0.6, 0.7]
    calibration["nll_last_se"] = [0.1, 0.1, 0.1]
    pd.DataFrame(calibration).to_csv(results / "quicktune_replay_lcbench-short_calibration.csv", index=False)
    text = ("<!-- bench-report:quicktune_replay_lcbench-short_allocation -->\n<!-- /bench-report -->\n"
            "<!-- bench-report:quicktune_replay_lcbench-short_calibration -->\n<!-- /bench-report -->\n")
    new, changed = bench_report.update(text, results, tmp_path)
    assert changed == ["quicktune_replay_lcbench-short_allocation",
                       "quicktune_replay_lcbench-short_calibration"]
    assert "| quicktune+freeze_thaw | 21.4 | 5.9 | 1.4 | 8.8 | 8.4 | 0.34 |" in new
    assert "| 3 | 0.70 | 0.70 / 0.70 | 0.70 ± 0.10 | 0.70 / 0.70 | 0.70 |" in new
    assert "--meta-dataset lcbench --datasets all --regime short" in new
