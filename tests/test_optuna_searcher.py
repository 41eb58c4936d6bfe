"""OptunaSearcher beyond the contract: Optuna's own tools read its journal, Tune can pickle it, bad
options are named."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from efficient_search.registry import make_searcher
from efficient_search.searchers import OptunaSearcher
from efficient_search.testing.searchers import SCORE, SIZE, SPACE, objective, tune_view


def _run(searcher: OptunaSearcher, start: int, stop: int) -> list[dict]:
    configs = []
    for i in range(start, stop):
        config = searcher.suggest(f"t{i}")
        assert config is not None
        configs.append(config)
        searcher.on_trial_complete(f"t{i}", objective(tune_view(config)))
    return configs


def test_optunas_own_file_backend_reads_the_journal(tmp_path: Path) -> None:
    searcher = OptunaSearcher(SPACE, metric=[SCORE, SIZE], mode=["max", "min"], sampler="nsga2",
                              population_size=4, seed=1)
    _run(searcher, 0, 10)
    searcher.suggest("pending")
    searcher.write_journal(tmp_path / "study.journal")
    study = optuna.load_study(study_name="efficient-search",
                              storage=JournalStorage(JournalFileBackend(str(tmp_path / "study.journal"))))
    ours = searcher.study.get_trials(deepcopy=False)
    theirs = study.get_trials(deepcopy=False)
    assert [t.params for t in theirs] == [t.params for t in ours]
    assert [t.values for t in theirs] == [t.values for t in ours]
    assert theirs[-1].state == optuna.trial.TrialState.RUNNING


def test_pickled_and_saved_searchers_continue_like_the_original(tmp_path: Path) -> None:
    """Tune pickles the searcher with the Tuner and saves it with ``save``: neither pickles the
    sampler (Optuna 5.1's NSGA-II sampler holds a thread lock)."""
    straight = OptunaSearcher(SPACE, metric=[SCORE, SIZE], mode=["max", "min"], sampler="nsga2",
                              population_size=4, seed=5)
    first = _run(straight, 0, 6)
    copy = pickle.loads(pickle.dumps(straight))
    straight.save(str(tmp_path / "state.json"))
    assert json.loads((tmp_path / "state.json").read_text())["journal"]
    restored = OptunaSearcher(metric=[SCORE, SIZE], mode=["max", "min"], sampler="nsga2",
                              population_size=4)
    restored.restore(str(tmp_path / "state.json"))
    expected = _run(straight, 6, 14)
    assert _run(copy, 6, 14) == expected
    assert _run(restored, 6, 14) == expected
    assert first != expected[:6]


def test_bad_options_name_the_field() -> None:
    with pytest.raises(ValueError, match="searcher 'optuna'.*`sampler` 'cmaes'.*Valid samplers"):
        make_searcher("optuna", seed=0, options={"sampler": "cmaes"})
    with pytest.raises(ValueError, match="`population_size` applies to sampler 'nsga2' only"):
        make_searcher("optuna", seed=0, options={"sampler": "tpe", "population_size": 8})
    with pytest.raises(ValueError, match="`population_size` must be an integer >= 2"):
        make_searcher("optuna", seed=0, options={"sampler": "nsga2", "population_size": True})
    with pytest.raises(ValueError, match="names \\['zzz'\\], which the space does not sample"):
        OptunaSearcher(SPACE, metric=SCORE, mode="max", points_to_evaluate=[{"zzz": 1}])
    restored = OptunaSearcher(SPACE, metric=SCORE, mode="min")
    saved = OptunaSearcher(SPACE, metric=SCORE, mode="max").get_state()
    with pytest.raises(ValueError, match="optimises mode='max'.*Fix: create it with mode='max'"):
        restored.set_state(saved)
