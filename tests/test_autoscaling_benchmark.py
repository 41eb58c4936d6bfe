"""``benchmarks/autoscaling.py``: every searcher searches (no fixed list of configurations) with its
usual scheduler, and cost is normalised by the work each cluster's run actually did."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from efficient_search.api import plan_run

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCHEDULERS = {"asha": "RestorableASHA", "freeze_thaw": "FreezeThawScheduler"}


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports _common as the script does
    return importlib.import_module("autoscaling")


@pytest.mark.parametrize("searcher", ["random", "evolution", "quicktune"])
def test_every_searcher_searches_the_space_with_its_scheduler(bench: ModuleType, searcher: str,
                                                              tmp_path: Path) -> None:
    spec = bench.workload(searcher, bench.FULL, store=str(tmp_path / "store"),
                          storage=str(tmp_path / "runs"), seed=0)
    assert "points_to_evaluate" not in spec.get("searcher_options", {})
    assert spec["search_space"] == bench.SPACE
    assert {"depth", "width", "lr"} <= {k for k, v in spec["search_space"].items() if isinstance(v, dict)}
    assert "epochs" not in spec["search_space"]  # the scheduler sets the epochs
    plan = plan_run(spec)
    assert type(plan.scheduler).__name__ == SCHEDULERS[bench.PAIRINGS[searcher]]
    if searcher == "random":  # Ray's generator: seeded draws, checked on a real run below
        return
    plan.searcher.set_search_properties(plan.metric, plan.mode, plan.space)
    configs = [plan.searcher.suggest(f"t{i}") for i in range(4)]
    assert len({tuple(sorted(c.items())) for c in configs}) == 4
    assert len({c["lr"] for c in configs}) == 4
    assert all(0.01 <= c["lr"] <= 0.3 and c["width"] in (32, 48, 64) and 2 <= c["depth"] <= 4
               for c in configs)


def test_same_seed_same_first_suggestions(bench: ModuleType, tmp_path: Path) -> None:
    """Both clusters' runs of a searcher start from the same suggestions (the seed is shared)."""
    def first(name: str) -> list[dict]:
        spec = bench.workload("quicktune", bench.QUICK, store=str(tmp_path / name),
                              storage=str(tmp_path / "runs"), seed=3)
        plan = plan_run(spec)
        plan.searcher.set_search_properties(plan.metric, plan.mode, plan.space)
        return [plan.searcher.suggest(f"t{i}") for i in range(3)]

    assert first("a") == first("b")


def test_bad_input_names_field_value_and_fix(bench: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"`searcher` must be one of .*'bohb'.*Fix"):
        bench.workload("bohb", bench.QUICK, store="s", storage="r", seed=0)
    with pytest.raises(ValueError, match=r"Budget\.samples"):
        bench.Budget(samples=0, min_epochs=1, max_epochs=2, epoch_budget=4, slots=1)
    with pytest.raises(ValueError, match=r"Budget\.max_epochs.*Fix"):
        bench.Budget(samples=2, min_epochs=3, max_epochs=2, epoch_budget=4, slots=1)
    for text in ("a,b", "0,0", ""):
        with pytest.raises(ValueError, match=f"`--seeds`.*{text!r}.*Fix"):
            bench.parse_list("--seeds", text, int)
    with pytest.raises(ValueError, match=r"`--searchers`.*from random, evolution, quicktune"):
        bench.parse_list("--searchers", "random,bohb", str.strip, list(bench.PAIRINGS))
    assert bench.parse_list("--seeds", "0, 2", int) == [0, 2]


def test_epoch_seconds_grow_with_the_network(bench: ModuleType) -> None:
    seconds = bench.epoch_seconds
    assert seconds(4, 64, 32, repeats=1) > 1.5 * seconds(2, 32, 32, repeats=1) > 0


def _rows(trials: dict[str, tuple[int, int, float, int]]) -> pd.DataFrame:
    """Store-like rows: one per epoch of each trial (depth, width, lr, last epoch), epochs config
    rewritten by the scheduler as it goes."""
    rows = []
    for trial_id, (depth, width, lr, last) in trials.items():
        for epoch in range(1, last + 1):
            rows.append({"trial_id": trial_id, "config.depth": depth, "config.width": width,
                         "config.lr": lr, "config.batch_size": 32, "config.epochs": epoch,
                         "fidelity.epoch": epoch, "metric.val_accuracy": 0.5 + 0.01 * epoch})
    return pd.DataFrame(rows)


def test_work_and_ratios_of_known_runs(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "epoch_seconds", lambda depth, width, batch_size: depth * width / 64)
    fixed_rows = _rows({"a": (2, 32, 0.1, 2), "b": (4, 64, 0.05, 6)})
    auto_rows = _rows({"a": (2, 32, 0.1, 2), "c": (3, 48, 0.2, 2), "d": (2, 32, 0.02, 6)})
    work = bench.work_done(fixed_rows)
    assert work["trials"] == 2 and work["epochs"] == 8
    assert work["work_s"] == pytest.approx(2 * 1.0 + 6 * 4.0)  # epochs x seconds per epoch
    assert work["best_val_accuracy"] == pytest.approx(0.56)
    # The configurations as the searcher chose them: the scheduler's epochs are left out.
    assert bench.configs_of(fixed_rows) == {(32, 2, 0.1, 32), (32, 4, 0.05, 64)}
    assert bench.shared(bench.configs_of(fixed_rows), bench.configs_of(auto_rows)) == pytest.approx(1 / 4)

    fixed = {"makespan_s": 100.0, "resource_s": 300.0, "work_s": 20.0, "epochs": 10.0}
    auto = {"makespan_s": 110.0, "resource_s": 240.0, "work_s": 24.0, "epochs": 12.0}
    ratios = bench.compare(fixed, auto)
    assert ratios["resource_seconds_ratio_vs_fixed"] == pytest.approx(0.8)
    assert ratios["work_ratio_vs_fixed"] == pytest.approx(1.2)
    # More work for fewer resource-seconds: (240 / 24) / (300 / 20) per second of work.
    assert ratios["resource_seconds_per_work_ratio_vs_fixed"] == pytest.approx(2 / 3)
    assert ratios["resource_seconds_per_epoch_ratio_vs_fixed"] == pytest.approx(2 / 3)
    assert ratios["makespan_per_work_ratio_vs_fixed"] == pytest.approx(1.1 / 1.2)


def test_headline_carries_every_pair_and_searcher(bench: ModuleType) -> None:
    table = pd.DataFrame([{"searcher": s, "seed": seed, "mode": mode, "utilisation": u,
                           "scale_up_s_p50": 1.0, "scale_down_s_p50": 4.0, "time_to_first_trial_s": 5.0,
                           "pending_s_p50": 2.0}
                          for s in ("random", "quicktune") for seed in (0, 1)
                          for mode, u in (("fixed", 0.7), ("autoscale", 0.9))])
    keys = ["makespan_ratio_vs_fixed", "resource_seconds_ratio_vs_fixed", "work_ratio_vs_fixed",
            "epochs_ratio_vs_fixed", "resource_seconds_per_work_ratio_vs_fixed",
            "resource_seconds_per_epoch_ratio_vs_fixed", "makespan_per_work_ratio_vs_fixed"]
    ratios = pd.DataFrame([{"searcher": s, "seed": seed, "configs_shared": 0.5,
                            **{k: 0.8 + 0.1 * seed for k in keys}}
                           for s in ("random", "quicktune") for seed in (0, 1)])
    figures = bench.headline(table, ratios)
    assert figures["searchers"] == "random+quicktune" and figures["seeds"] == 2
    assert figures["utilisation"] == 0.9 and figures["utilisation_fixed"] == 0.7
    assert figures["resource_seconds_per_work_ratio_vs_fixed"] == pytest.approx(0.85)
    assert figures["resource_seconds_per_work_ratio_min"] == pytest.approx(0.8)
    assert figures["resource_seconds_per_work_ratio_max"] == pytest.approx(0.9)
    assert figures["resource_seconds_per_work_ratio_quicktune"] == pytest.approx(0.85)


@pytest.mark.slow
@pytest.mark.parametrize("searcher", ["random", "evolution", "quicktune"])
def test_a_real_run_searches(bench: ModuleType, searcher: str, ray_session: None, tmp_path: Path) -> None:
    """The benchmark's search on a local Ray: every trial a different configuration, the
    scheduler stopping some early, and the work counted from the store."""
    import efficient_search as es
    from efficient_search import ParquetStore

    budget = bench.Budget(samples=4, min_epochs=1, max_epochs=3, epoch_budget=6, slots=2)
    spec = bench.workload(searcher, budget, store=str(tmp_path / "store"),
                          storage=str(tmp_path / "runs"), seed=0)
    spec["search_space"] = {**bench.SPACE, "width": {"choice": [8, 16]}}  # cheap epochs
    es.run(spec)
    rows = ParquetStore(tmp_path / "store").results(spec["name"])
    configs = bench.configs_of(rows)
    work = bench.work_done(rows)
    assert work["trials"] == len(configs) >= 2  # no configuration repeated
    assert rows.groupby("trial_id")["config.lr"].first().nunique() == work["trials"]
    assert 0 < work["work_s"] and 0 < work["best_val_accuracy"] <= 1
    epochs = rows.groupby("trial_id")["fidelity.epoch"].max()
    assert epochs.max() <= budget.max_epochs
    if searcher == "quicktune":  # freeze-thaw stops at its epoch budget (running trials finish a step)
        assert work["epochs"] <= budget.epoch_budget + budget.slots * budget.min_epochs
        assert epochs.min() < budget.max_epochs
    else:
        assert work["trials"] == budget.samples
