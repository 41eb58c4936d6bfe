"""The compute-axis report: trend fit, table, open-sci-ref positions, plot, CLI and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from efficient_search.cli import main
from efficient_search.reference import (
    OPEN_SCI_REF,
    Trend,
    compute_axis_table,
    fit_trend,
    reference_points,
    reference_trend,
    save_compute_plot,
)
from efficient_search.store import ParquetStore
from efficient_search.store.rows import RUNNING, TERMINATED

E, A, ALPHA = 2.0, 2000.0, 0.2
TOKENS = (1e7, 2.5e7, 5e7, 1e8, 2.5e8, 5e8, 1e9)
SHIFT = 4.0
"""The searched+KD run reaches at compute C the loss the reference reaches at SHIFT * C."""


def law(flops: float) -> float:
    return E + A * flops ** -ALPHA


def write_run(store: ParquetStore, experiment: str, trial_id: str, *, params: float, init: str,
              distill: str, shift: float = 1.0, teacher_params: float = 0.0) -> None:
    rows = []
    for i, tokens in enumerate(TOKENS, start=1):
        flops = 6 * params * tokens
        loss = law(shift * flops)
        row = {"trial_id": trial_id, "iteration": i, "timestamp": 1000.0 + i, "status": RUNNING,
               "metric.val_loss": loss, "metric.val_perplexity": math.exp(loss), "metric.params": params,
               "fidelity.tokens": tokens, "cost.flops": flops, "metric.init": init, "metric.distill": distill}
        if teacher_params:
            row["cost.teacher_flops"] = 2 * teacher_params * tokens
        rows.append(row)
    rows.append({**rows[-1], "status": TERMINATED, "timestamp": 2000.0})  # the trial's end row
    store.append(experiment, rows)
    store.write_metadata(experiment, {"spec": {"name": experiment, "task": "pretrain",
                                               "task_options": {"init": init, "distill": distill}}})


@pytest.fixture
def store(tmp_path: Path) -> ParquetStore:
    store = ParquetStore(tmp_path / "store")
    write_run(store, "lm-random", "small", params=1e6, init="random", distill="none")
    write_run(store, "lm-random", "large", params=2e6, init="random", distill="none")
    write_run(store, "lm-searched-kd", "kd", params=1e6, init="searched", distill="online", shift=SHIFT,
              teacher_params=4e6)
    return store


def test_fit_trend_recovers_a_noiseless_power_law() -> None:
    flops = np.geomspace(1e13, 1e17, 25)
    trend = fit_trend(flops, [law(c) for c in flops])
    assert trend.kind == "power" and trend.n_points == 25
    assert trend.E == pytest.approx(E, rel=1e-3)
    assert trend.A == pytest.approx(A, rel=2e-2)
    assert trend.alpha == pytest.approx(ALPHA, rel=2e-3)
    assert trend.loss(1e15) == pytest.approx(law(1e15), rel=1e-6)
    assert trend.flops_for(law(3e15)) == pytest.approx(3e15, rel=1e-3)
    assert math.isnan(trend.flops_for(E - 0.1))  # below the irreducible loss: never reached
    assert Trend.from_dict(trend.to_dict()) == trend


def test_fit_trend_falls_back_to_a_line_in_log_compute() -> None:
    trend = fit_trend([1e15, 1e16, 1e17], [4.0, 3.5, 3.0])
    assert trend.kind == "log-linear"
    assert trend.loss(1e16) == pytest.approx(3.5)
    assert trend.flops_for(3.25) == pytest.approx(10 ** 16.5, rel=1e-9)
    assert math.isnan(Trend("log-linear", intercept=3.0, slope=0.1).flops_for(2.0))


@pytest.mark.parametrize(("flops", "losses", "match"), [
    ([1e15, 1e16], [3.0], "same length"),
    ([1e15, 1e15, -1.0], [3.0, 2.9, 2.8], "two or more distinct `flops`"),
])
def test_fit_trend_rejects_unusable_points(flops: list[float], losses: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_trend(flops, losses)


def test_table_reads_each_run_off_the_reference_trend(store: ParquetStore) -> None:
    table = compute_axis_table(store, ["lm-random", "lm-searched-kd"])
    assert list(table["trial_id"]) == ["large", "small", "kd"]
    assert list(table["label"]) == ["random", "random", "searched+KD"]
    assert list(table["reference"]) == [True, True, False]
    kd = table.set_index("trial_id").loc["kd"]
    assert kd["flops"] == 6 * 1e6 * TOKENS[-1] and kd["tokens"] == TOKENS[-1] and kd["params"] == 1e6
    assert kd["val_loss"] == pytest.approx(law(SHIFT * kd["flops"]))
    assert kd["reference_loss_at_flops"] == pytest.approx(law(kd["flops"]), rel=1e-4)
    assert kd["compute_multiplier"] == pytest.approx(SHIFT, rel=1e-2)
    # The teacher's forward passes (2 * 4e6 per token) are paid on top of the student's 6 * 1e6.
    assert kd["compute_multiplier_with_teacher"] == pytest.approx(SHIFT * 6 / 14, rel=1e-2)
    # The best reference final loss is the large run's, at 1.2e16 FLOPs: the KD run gets there at
    # 1.2e16 / (SHIFT * 6 * 1e6) = 5e8 tokens.
    assert kd["tokens_to_reference_final"] == pytest.approx(5e8, rel=1e-3)
    assert table.set_index("trial_id").loc["small", "compute_multiplier"] == pytest.approx(1.0, rel=1e-2)
    assert table.attrs["trend"]["kind"] == "power"


def test_explicit_reference_experiments_give_the_same_trend(store: ParquetStore) -> None:
    by_tag = reference_trend(store, ["lm-searched-kd", "lm-random"])
    by_name = reference_trend(store, "lm-searched-kd", reference="lm-random")
    assert by_name.to_dict() == pytest.approx(by_tag.to_dict(), nan_ok=True)
    table = compute_axis_table(store, "lm-searched-kd", reference="lm-random")
    assert set(table["experiment"]) == {"lm-searched-kd", "lm-random"}  # the reference joins the table


def test_reference_points_place_open_sci_ref_on_the_compute_axis() -> None:
    points = reference_points()
    assert len(points) == 3 * len(OPEN_SCI_REF)
    row = points[(points["recipe"] == "open-sci-ref-0.13b") & (points["tokens"] == 50e9)].iloc[0]
    n = OPEN_SCI_REF["open-sci-ref-0.13b"].n_params
    assert row["n_params"] == n and row["flops"] == 6 * n * 50e9
    assert not row["scaled_down"]
    assert points.loc[points["recipe"] == "open-sci-ref-cpu-tiny", "scaled_down"].all()
    with pytest.raises(ValueError, match="token_budgets"):
        reference_points(())


def test_plot_is_saved_under_the_first_experiment(store: ParquetStore, tmp_path: Path) -> None:
    path = save_compute_plot(store, ["lm-searched-kd", "lm-random"], tmp_path / "plots")
    assert path == tmp_path / "plots" / "lm-searched-kd-compute-axis.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_compare_prints_the_table_and_saves_the_plot(store: ParquetStore, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "--store", store.root, "--experiments", "lm-random,lm-searched-kd",
                 "--reference", "lm-random", "--out", str(tmp_path / "plots")])
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["experiment", "trial_id", "label"]
    assert "searched+KD" in out and "compute_multiplier" in out
    assert "reference trend: L(C) =" in out
    assert f"saved {tmp_path / 'plots' / 'lm-random-compute-axis.png'}" in out


def test_unknown_experiment_names_the_store_contents(store: ParquetStore,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"'lm-nope' is not in the store .*lm-random"):
        compute_axis_table(store, ["lm-random", "lm-nope"])
    assert main(["compare", "--store", store.root, "--experiments", "lm-nope"]) == 2
    assert "efficient-search: error: `experiment` 'lm-nope'" in capsys.readouterr().err


def test_missing_column_names_it_and_the_task_that_reports_it(store: ParquetStore) -> None:
    store.append("digits", [{"trial_id": "t", "iteration": 1, "status": RUNNING, "metric.val_loss": 1.0,
                             "fidelity.tokens": 10.0}])
    store.write_metadata("digits", {"spec": {"task": "digits", "task_options": {}}})
    with pytest.raises(ValueError, match=r"no column 'cost.flops'.*'digits'.*`task: pretrain`.*`cost/flops`"):
        compute_axis_table(store, ["lm-random", "digits"])


def test_no_reference_runs_says_how_to_name_them(store: ParquetStore) -> None:
    with pytest.raises(ValueError, match=r"No reference runs .*metric.init.*reference='<experiment>'"):
        compute_axis_table(store, ["lm-searched-kd"])
    with pytest.raises(ValueError, match="`reference` must be one or more experiment names"):
        compute_axis_table(store, ["lm-searched-kd"], reference=[])
