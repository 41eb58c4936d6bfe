"""`warm_start`: earlier results of the same task and space seed a new search (evolution, optuna,
Quick-Tune)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ray import tune

import efficient_search as es
from efficient_search.cli import main as cli
from efficient_search.searchers import EvolutionarySearcher
from efficient_search.searchers.optuna_study import OptunaSearcher
from efficient_search.searchers.quicktune import QuickTuneSearcher
from efficient_search.store.rows import result_columns, result_from_columns
from efficient_search.warm_start import earlier_points

SPACE = {"lr": {"loguniform": [0.01, 0.5]}, "depth": {"randint": [1, 4]}, "width": 8, "batch_size": 64}
TUNE_SPACE = {"lr": tune.loguniform(0.01, 0.5), "depth": tune.randint(1, 4), "width": 8}
EARLIER = [({"lr": 0.05, "depth": 2, "width": 8}, 0.9), ({"lr": 0.3, "depth": 1, "width": 8}, 0.6),
           ({"lr": 0.02, "depth": 3, "width": 8}, 0.8)]


def spec(root: Path, name: str, searcher: str, num_samples: int, **fields: Any) -> dict[str, Any]:
    return {"name": name, "task_options": {"epochs": 1}, "search_space": SPACE, "searcher": searcher,
            "metric": "val_accuracy", "mode": "max", "num_samples": num_samples, "max_concurrent_trials": 1,
            "resources": {"num_workers": 0, "cpus_per_worker": 1}, "store": str(root / "store"), "verbose": 0,
            **fields}


def test_evolution_breeds_from_earlier_points_and_never_reruns_them() -> None:
    searcher = EvolutionarySearcher(TUNE_SPACE, metric="val_accuracy", mode="max", population_size=3, seed=0)
    for config, accuracy in EARLIER:
        searcher.add_evaluated_point(config, accuracy)
    assert len(searcher._population) == 3  # the population is full: children from the start
    suggested = [searcher.suggest(f"t{i}") for i in range(6)]
    earlier = {(c["lr"], c["depth"]) for c, _ in EARLIER}
    assert not earlier & {(s["lr"], s["depth"]) for s in suggested}
    restored = EvolutionarySearcher(TUNE_SPACE, metric="val_accuracy", mode="max", population_size=3, seed=0)
    restored.set_state(searcher.get_state())  # plain data keeps them
    assert len(restored._population) == 3
    with pytest.raises(ValueError, match=r"lacks axes the space searches"):
        searcher.add_evaluated_point({"lr": 0.1}, 0.5)


def test_optuna_adds_earlier_points_to_its_study() -> None:
    searcher = OptunaSearcher(TUNE_SPACE, metric="val_accuracy", mode="max", sampler="tpe", seed=0)
    for config, accuracy in EARLIER:
        searcher.add_evaluated_point(config, {"val_accuracy": accuracy})
    trials = searcher.study.get_trials()
    assert [t.value for t in trials] == [0.9, 0.6, 0.8]
    assert trials[0].params == {"lr": 0.05, "depth": 2}
    assert searcher.suggest("t0") is not None


def curve(accuracy: float, epochs: int = 3) -> list[dict[str, float]]:
    """Results as a digits trial reports them: rising to ``accuracy``, 2 s per epoch."""
    return [{"val_accuracy": accuracy * (0.7 + 0.1 * e), "fidelity/epoch": e + 1,
             "cost/seconds": 2.0 * (e + 1), "training_iteration": e + 1} for e in range(epochs)]


def test_quicktune_fine_tunes_its_surrogate_on_earlier_curves_and_never_reruns_them() -> None:
    space = {"lr": tune.choice([0.01, 0.02, 0.05, 0.1, 0.3]), "depth": tune.choice([1, 2, 3]), "width": 8}
    searcher = QuickTuneSearcher(space, metric="val_accuracy", mode="max", seed=0, initial_random=3)
    for config, accuracy in EARLIER:
        searcher.add_evaluated_point(config, {"val_accuracy": accuracy}, intermediate_values=curve(accuracy))
    searcher.add_evaluated_point({"lr": 0.1, "depth": 3, "width": 8}, 0.7,
                                 intermediate_values=[0.5, 0.6, 0.7])
    searcher.add_evaluated_point({"lr": 0.01, "depth": 1, "width": 8}, float("nan"), error=True)
    observations = searcher.model.observations
    assert observations.trials["warm-start-0"].values == pytest.approx({1: 0.63, 2: 0.72, 3: 0.81})
    assert observations.trials["warm-start-0"].costs == {1: 2.0, 2: 2.0, 3: 2.0}  # cumulative -> per epoch
    assert observations.trials["warm-start-3"].values == {1: 0.5, 2: 0.6, 3: 0.7}
    assert observations.trials["warm-start-4"].failed
    assert observations.spent_s == 0.0  # the earlier search's seconds are not this one's budget
    assert searcher.model.ready  # the online surrogate is fitted on the earlier curves: no random start
    assert {f"warm-start-{i}" for i in range(4)} <= set(searcher.model._cond["marks"])
    suggested = [searcher.suggest(f"t{i}") for i in range(10)]  # the 10 configs nobody ran yet
    earlier = {(0.05, 2), (0.3, 1), (0.02, 3), (0.1, 3), (0.01, 1)}
    assert not earlier & {(s["lr"], s["depth"]) for s in suggested}
    assert len({(s["lr"], s["depth"]) for s in suggested}) == 10
    restored = QuickTuneSearcher(space, metric="val_accuracy", mode="max", seed=0)
    restored.set_state(searcher.get_state())  # plain data keeps them
    kept = restored.model.observations.trials["warm-start-2"]
    assert kept.values == observations.trials["warm-start-2"].values
    assert restored._warm == 5
    with pytest.raises(ValueError, match=r"lacks axes the space searches"):
        searcher.add_evaluated_point({"lr": 0.1}, 0.5)


def test_stored_trials_come_back_as_points_a_searcher_takes(tmp_path: Path) -> None:
    """Store rows hold numpy scalars; a choice axis takes only the values of its categories."""
    store = es.ParquetStore(str(tmp_path))
    rows = [{"trial_id": t, "iteration": i, "status": "RUNNING", "config.width": width, "config.lr": lr,
             "config.epochs": 2, "metric.val_accuracy": accuracy * i / 2, "fidelity.epoch": i}
            for t, width, lr, accuracy in (("a", 16, 0.1, 0.8), ("b", 8, 0.3, 0.6)) for i in (1, 2)]
    store.append("earlier", rows)
    store.write_metadata("earlier", {"spec": {"task": "digits"}})
    points = earlier_points({"experiments": ["earlier"]}, str(tmp_path), "digits", ["val_accuracy"], None)
    # Worst first, best last: an aging population keeps the last points it is given.
    assert [p[:2] for p in points] == [({"width": 8, "lr": 0.3}, {"val_accuracy": 0.6}),
                                       ({"width": 16, "lr": 0.1}, {"val_accuracy": 0.8})]
    assert points[1][2] == [{"training_iteration": 1, "val_accuracy": 0.4, "fidelity/epoch": 1},
                            {"training_iteration": 2, "val_accuracy": 0.8, "fidelity/epoch": 2}]
    lowest = earlier_points({"experiments": ["earlier"]}, str(tmp_path), "digits", ["val_accuracy"], None,
                            mode="min")
    assert [p[1]["val_accuracy"] for p in lowest] == [0.8, 0.6]
    searcher = EvolutionarySearcher({"width": tune.choice([8, 16]), "lr": tune.loguniform(0.01, 0.5)},
                                    metric="val_accuracy", mode="max", population_size=2, seed=0)
    for config, values, results in [*points[:1], *points]:  # the scheduler's `epochs` key was left out
        searcher.add_evaluated_point(config, values, intermediate_values=results)
    assert searcher._population.members == [1, 2]  # the worst aged out


def test_a_space_written_in_another_order_is_the_same_space() -> None:
    from efficient_search.api import describe_space
    from efficient_search.warm_start import _differences

    python = describe_space(TUNE_SPACE)
    assert _differences(python, describe_space({"width": 8, "depth": tune.randint(1, 4),
                                                "lr": tune.loguniform(0.01, 0.5)})) == []
    assert _differences(python, describe_space({**TUNE_SPACE, "depth": tune.randint(1, 9)})) == ["depth"]
    assert _differences(python, describe_space({**TUNE_SPACE, "width": 16})) == ["the constants"]


def test_a_stored_row_gives_back_the_result_it_came_from() -> None:
    result = curve(0.9)[1]
    row = {"iteration": 2, **result_columns(result), "metric.other": float("nan")}
    assert result_from_columns(row) == result


@pytest.mark.usefixtures("ray_session")
def test_a_warm_started_search_runs_only_new_trials(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    es.run(spec(tmp_path, "earlier", "evolution", 3, searcher_options={"population_size": 3}))
    store = es.ParquetStore(str(tmp_path / "store"))
    before = store.results("earlier")
    earlier = {(round(lr, 9), d) for lr, d in zip(before["config.lr"], before["config.depth"], strict=True)}
    for searcher, options in (("evolution", {"population_size": 3}), ("optuna", {"sampler": "tpe"}),
                              ("quicktune", {"initial_random": 3})):
        name = f"warm-{searcher}"
        warm = spec(tmp_path, name, searcher, 2, searcher_options=options,
                    warm_start={"experiments": ["earlier"]})
        if searcher == "quicktune":  # from the command line, which says what seeds the search
            path = tmp_path / "warm.yaml"
            path.write_text(yaml.safe_dump({**warm, "verbose": 1}))
            assert cli(["run", str(path)]) == 0
            assert "warm start: 3 earlier trial(s) of earlier seed searcher QuickTuneSearcher" in \
                capsys.readouterr().out
        else:  # from Python
            es.run(warm)
        rows = store.results(name)
        assert rows["trial_id"].nunique() == 2  # only its own trials run and land in the store
        assert not earlier & {(round(lr, 9), d) for lr, d in zip(rows["config.lr"], rows["config.depth"],
                                                                 strict=True)}


@pytest.mark.usefixtures("ray_session")
def test_bad_warm_starts_are_refused_before_any_trial(tmp_path: Path) -> None:
    es.run(spec(tmp_path, "earlier", "evolution", 1, searcher_options={"population_size": 2}))
    earlier = {"warm_start": {"experiments": ["earlier"]}}
    cases = [
        ({"warm_start": {"experiments": ["nope"]}}, r"names 'nope', which is not in the store"),
        ({"search_space": {**SPACE, "depth": {"randint": [1, 9]}}, **earlier},
         r"'earlier' searched another space: depth differ"),
        ({"task": "subnetwork", "search_space": {"n_layer": {"randint": [1, 3]}}, "metric": None,
          "mode": None, "task_options": {}, **earlier}, r"ran task 'digits', not 'subnetwork'"),
        ({"searcher": "random", **earlier},
         r"searcher 'random' cannot take evaluated points. Fix: searcher evolution, optuna or quicktune"),
    ]
    for fields, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            es.run({**spec(tmp_path, "warm", "evolution", 2), **fields})
