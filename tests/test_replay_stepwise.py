"""StepwiseReplay (another library's own loop on the simulated clock) and the hpo_suite peers that run
through it: Optuna's ask/tell with its pruner, syne-tune's ASHA and BOHB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray.tune.schedulers import FIFOScheduler
from test_replay_blackbox import ToyBox, check_clock, steps_of

from efficient_search.searchers import OptunaSearcher
from efficient_search.testing.replay import ReplaySimulation
from efficient_search.testing.replay_blackbox import BlackboxReplay
from efficient_search.testing.replay_stepwise import StepwiseReplay

ROOT = Path(__file__).resolve().parents[1]


class Scripted:
    """Proposes x = 0.1, 0.2, ...; stops each trial after ``keep`` steps (None: never)."""

    def __init__(self, keep: int | None = None, trials: int = 1000):
        self.keep, self.left, self.count = keep, trials, 0
        self.ended: list[tuple[int, int, bool]] = []

    def ask(self) -> tuple[int, dict[str, Any]] | None:
        if self.left == 0:
            return None
        self.left -= 1
        self.count += 1
        return self.count, {"x": 0.1 * self.count}

    def report(self, handle: int, step: int, result: dict[str, Any]) -> bool:
        assert result["training_iteration"] == step and "score" in result and "cost/seconds" in result
        return self.keep is None or step < self.keep

    def end(self, handle: int, result: dict[str, Any], completed: bool) -> None:
        self.ended.append((handle, int(result["training_iteration"]), completed))


def test_stepwise_charges_match_the_tune_simulation_on_the_same_trials() -> None:
    """Without stopping, the stepwise loop and ReplaySimulation + FIFO run the same steps at the same
    charges: same clock, same incumbents."""
    source = BlackboxReplay(ToyBox(continuable=True), "a")
    replay = StepwiseReplay(source, Scripted(), budget_s=350.0)
    ours = replay.run()
    check_clock(replay, ours)  # type: ignore[arg-type]  (same clock attributes)
    searcher = OptunaSearcher(source.space(), metric="score", mode="max", sampler="random", seed=0,
                              points_to_evaluate=[{"x": 0.1 * k} for k in range(1, 5)])
    theirs = ReplaySimulation(source, searcher, FIFOScheduler(), budget_s=350.0).run()
    assert [s.charge for s in ours.log] == pytest.approx([s.charge for s in theirs.log])
    assert ours.incumbents == pytest.approx(theirs.incumbents)
    assert ours.trials == 4 and ours.epochs == len(ours.log) == 32  # 350 s at 100/9 s a step


def test_a_stopped_trial_ends_not_completed_and_the_next_one_starts() -> None:
    method = Scripted(keep=3, trials=5)
    source = BlackboxReplay(ToyBox(continuable=True), "a")
    outcome = StepwiseReplay(source, method, budget_s=10_000.0).run()
    assert outcome.trials == 5 and method.ended == [(k, 3, False) for k in range(1, 6)]
    assert all(steps_of(outcome, f"s{k:05d}") == [1, 2, 3] for k in range(5))
    full = Scripted(trials=1)
    StepwiseReplay(source, full, budget_s=10_000.0).run()
    assert full.ended == [(1, 9, True)]


def test_a_non_continuable_fidelity_pays_every_step_in_full() -> None:
    source = BlackboxReplay(ToyBox(continuable=False), "a", points=10)
    outcome = StepwiseReplay(source, Scripted(keep=4), budget_s=1000.0).run()
    assert all(s.charge == pytest.approx(10.0 * s.step) for s in outcome.log)


def test_bad_budget_names_the_field() -> None:
    source = BlackboxReplay(ToyBox(continuable=True), "a")
    with pytest.raises(ValueError, match="`budget_s` must be > 0"):
        StepwiseReplay(source, Scripted(), budget_s=0.0)


# -- the peers of benchmarks/_hpo_native.py -------------------------------------------------------------

@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _hpo_native

    return _hpo_native


def test_spaces_convert_with_the_same_bounds(native: Any) -> None:
    from ray import tune

    space = {"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.randint(1, 6),
             "units": tune.lograndint(8, 513), "drop": tune.uniform(0.0, 0.5),
             "act": tune.choice(["relu", "tanh"])}
    optuna = native.optuna_distributions(space)
    assert (optuna["layers"].low, optuna["layers"].high) == (1, 5)  # Ray's upper bound is exclusive
    assert optuna["lr"].log and optuna["units"].log and not optuna["drop"].log
    assert list(optuna["act"].choices) == ["relu", "tanh"]
    pytest.importorskip("syne_tune", reason="syne-tune is not installed (`peers` extra + --no-deps)")
    synetune = native.synetune_space(space)
    assert (synetune["layers"].lower, synetune["layers"].upper) == (1, 5)
    assert (synetune["units"].lower, synetune["units"].upper) == (8, 512)
    assert synetune["act"].categories == ["relu", "tanh"]
    with pytest.raises(TypeError, match="space\\['c'\\]"):
        native.optuna_distributions({"c": tune.sample_from(lambda _: 1)})


def test_optuna_pruner_stops_some_trials_and_finds_the_peak(native: Any) -> None:
    source = BlackboxReplay(ToyBox(continuable=True), "a")
    method = native.OptunaPruned(source, seed=0)
    outcome = StepwiseReplay(source, method, budget_s=3000.0).run()
    states = [t.state.name for t in method.study.trials]
    assert "PRUNED" in states and "COMPLETE" in states
    lengths = [len(steps_of(outcome, f"s{k:05d}")) for k in range(outcome.trials)]
    assert min(lengths) < 9 and max(lengths) == 9
    assert outcome.incumbents[-1] > 0.95  # the toy's best is 1.0 at x = 0.3


@pytest.mark.parametrize("kind", ["asha", "bohb"])
def test_synetune_stops_trials_on_its_rungs(native: Any, kind: str) -> None:
    pytest.importorskip("syne_tune", reason="syne-tune is not installed (`peers` extra + --no-deps)")
    pytest.importorskip("statsmodels", reason="syne-tune's BOHB needs statsmodels")
    source = BlackboxReplay(ToyBox(continuable=True, mode="min"), "a")
    outcome = StepwiseReplay(source, native.synetune(source, seed=0, kind=kind), budget_s=3000.0).run()
    lengths = np.asarray([len(steps_of(outcome, f"s{k:05d}")) for k in range(outcome.trials)])
    assert outcome.trials > 10 and (lengths == 1).any() and (lengths > 1).any()
    assert set(lengths[:-1]) <= {1, 3, 9}  # its rungs (grace 1, factor 3); the last may be cut by the budget
    assert outcome.incumbents[-1] < -0.9  # min mode: the toy's scores are negated


def test_synetune_proposals_outside_their_domain_are_clipped_and_counted(native: Any) -> None:
    pytest.importorskip("syne_tune", reason="syne-tune is not installed (`peers` extra + --no-deps)")
    from syne_tune import config_space as st
    from syne_tune.optimizer.scheduler import TrialSuggestion

    class Proposes:
        config_space = {"units": st.lograndint(64, 1024), "lr": st.loguniform(1e-4, 1e-1),
                        "act": st.choice(["relu", "tanh"])}

        def suggest(self) -> TrialSuggestion:
            return TrialSuggestion.start_suggestion({"units": 53, "lr": 0.5, "act": "relu"})

        def on_trial_add(self, trial: Any) -> None:
            pass

    loop = native.SyneTuneLoop(Proposes())
    _, config = loop.ask()
    assert config == {"units": 64, "lr": 0.1, "act": "relu"} and isinstance(config["units"], int)
    assert loop.clipped == 2
