"""The pure rung logic of the layer-freezing scheduler, and its bad-input errors."""

from __future__ import annotations

import math

import pytest

from efficient_search.schedulers import Decision, LayerFreezingScheduler, Rung, RungLadder, make_rungs


def test_geometric_rungs_over_layers_and_epochs() -> None:
    assert make_rungs(min_layers=1, max_layers=6, eta=2, epochs=4) == [
        Rung(1, 4), Rung(2, 4), Rung(4, 4), Rung(6, 4)]
    assert make_rungs(min_layers=1, max_layers=9, eta=3, epochs=9, min_epochs=1) == [
        Rung(1, 1), Rung(3, 3), Rung(9, 9)]
    assert make_rungs(min_layers=4, max_layers=4, eta=2, epochs=2) == [Rung(4, 2)]


def test_top_one_over_eta_is_promoted_asynchronously() -> None:
    ladder = RungLadder(make_rungs(min_layers=1, max_layers=4, eta=2, epochs=1), eta=2, sign=1.0)
    for trial in "abcd":
        ladder.add(trial)
    assert ladder.end_rung("a", 0.5) is Decision.PROMOTE  # alone: best so far
    assert ladder.end_rung("b", 0.4) is Decision.STOP  # 2 results, keep 1
    assert ladder.end_rung("c", 0.9) is Decision.PROMOTE
    assert ladder.end_rung("d", math.nan) is Decision.STOP  # NaN never recorded
    assert ladder.scores[0] == {"a": 0.5, "b": 0.4, "c": 0.9}
    assert ladder.current("c") == Rung(2, 1)
    minimise = RungLadder(ladder.rungs, eta=2, sign=-1.0)
    minimise.add("x"), minimise.add("y")
    assert minimise.end_rung("x", 0.5) is Decision.PROMOTE
    assert minimise.end_rung("y", 0.2) is Decision.PROMOTE  # lower is better


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"max_trainable_layers": 0, "epochs": 1}, r"`max_trainable_layers` must be an integer >= 1"),
    ({"max_trainable_layers": 4, "min_trainable_layers": 5, "epochs": 1},
     r"`min_trainable_layers <= max_trainable_layers` must hold, but got \(min_trainable_layers=5"),
    ({"max_trainable_layers": 4, "epochs": 1, "reduction_factor": 1},
     r"`reduction_factor` must be a number > 1"),
    ({"max_trainable_layers": 4, "epochs": 2, "min_epochs": 3}, r"`min_epochs` must be an integer"),
    ({"max_trainable_layers": 4, "epochs": 1, "promotion": "thaw"},
     r"`promotion` must be one of continue, restart, but got 'thaw'"),
])
def test_bad_scheduler_arguments(kwargs, pattern) -> None:
    with pytest.raises(ValueError, match=pattern):
        LayerFreezingScheduler(**kwargs)


def test_missing_metric_is_explained_like_ray_does() -> None:
    from efficient_search.testing.schedulers import Simulation, grid, learning_curve

    with pytest.raises(ValueError, match="pass them when instantiating the scheduler, or to"):
        Simulation(LayerFreezingScheduler(max_trainable_layers=4, epochs=1), grid(2),
                   learning_curve)


def test_state_rejects_a_different_ladder() -> None:
    state = LayerFreezingScheduler(max_trainable_layers=4, epochs=1, metric="m",
                                   mode="max").get_state()
    other = LayerFreezingScheduler(max_trainable_layers=6, epochs=1, metric="m", mode="max")
    with pytest.raises(ValueError, match="saved rungs .* differ"):
        other.set_state(state)
