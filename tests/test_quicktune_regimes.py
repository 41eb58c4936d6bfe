"""Quick-Tune on short horizons: the regime cuts of a meta-dataset, the acquisition on the latent curve,
the ``final`` horizon, the successive-halving guard, the diagnosis and the regime options of the replay."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from efficient_search.schedulers import FreezeThawScheduler
from efficient_search.searchers import QuickTuneSearcher
from efficient_search.searchers.quicktune_model import QuickTuneModel
from efficient_search.surrogate import DeepKernelSurrogate, MetaDataset, SurrogateSettings
from efficient_search.surrogate.acquisition import expected_improvement
from efficient_search.testing.replay import ReplayOutcome

ROOT = Path(__file__).resolve().parents[1]
QUICKTUNE_DATA = ROOT.parent / "shared" / "data" / "quicktune-mtlbm-extended"
LCBENCH_DATA = ROOT.parent / "shared" / "data" / "yahpo" / "lcbench"
TINY = SurrogateSettings(hidden=16, features=4, curve_channels=2, cost_hidden=8, meta_train_steps=60,
                         cost_train_steps=40, batch_size=32, max_train_points=600)


def toy_data(*, datasets: int = 3, runs: int = 12, steps: int = 6, seed: int = 0) -> MetaDataset:
    """Saturating curves whose ceiling grows with ``x`` and whose speed grows with ``lr``."""
    rng = np.random.default_rng(seed)
    n = datasets * runs
    x, lr = rng.uniform(0, 1, n), rng.uniform(0.1, 1, n)
    t = np.arange(1, steps + 1)[None, :]
    curves = 40 + 50 * x[:, None] * (1 - np.exp(-lr[:, None] * t)) + rng.normal(0, 0.5, (n, steps))
    curves[0, 4:] = np.nan  # a run that stopped early
    costs = np.repeat((1 + 3 * x)[:, None], steps, axis=1)
    names = np.repeat([f"d{i}" for i in range(datasets)], runs)
    meta = pd.DataFrame({"size": [100.0 * (i + 1) for i in range(datasets)]},
                        index=[f"d{i}" for i in range(datasets)])
    return MetaDataset(configs=pd.DataFrame({"x": x, "lr": lr}), curves=curves, costs=costs, datasets=names,
                       budgets=np.arange(1, steps + 1), metric="accuracy", mode="max", meta_features=meta)


@pytest.fixture(scope="module")
def toy() -> MetaDataset:
    return toy_data()


@pytest.fixture(scope="module")
def surrogate(toy: MetaDataset) -> DeepKernelSurrogate:
    return DeepKernelSurrogate(settings=TINY, seed=0).fit(toy.drop(["d0"]).without_meta_features())


# -- regime cuts --------------------------------------------------------------------------------------


def test_truncate_subsample_and_drop_meta_features(toy: MetaDataset) -> None:
    short = toy.truncate(3)
    assert short.n_steps == 3 and short.budgets.tolist() == [1.0, 2.0, 3.0]
    assert np.array_equal(short.curves, toy.curves[:, :3], equal_nan=True)
    assert np.array_equal(short.costs, toy.costs[:, :3])
    assert toy.truncate(99).n_steps == toy.n_steps

    few = toy.subsample(5, seed=1)
    counts = {name: int((few.datasets == name).sum()) for name in few.dataset_names}
    assert counts == {"d0": 5, "d1": 5, "d2": 5}
    assert few.subsample(5, seed=1).n_rows == 15 and toy.subsample(100, seed=0).n_rows == toy.n_rows
    again = toy.subsample(5, seed=1)
    assert again.configs.equals(few.configs)  # seeded
    assert not toy.subsample(5, seed=2).configs.equals(few.configs)
    rows = [int(np.flatnonzero((toy.configs["x"] == x).to_numpy())[0]) for x in few.configs["x"]]
    assert rows == sorted(rows)  # the original order is kept

    bare = toy.without_meta_features()
    assert bare.meta_features.shape[1] == 0 and bare.n_rows == toy.n_rows
    assert toy.meta_features.shape[1] == 1  # the original is untouched


@pytest.mark.parametrize(("call", "match"), [
    (lambda d: d.truncate(0), r"`steps` must be an integer >= 1 .* got 0"),
    (lambda d: d.truncate(2.5), r"`steps` must be an integer"),
    (lambda d: d.subsample(0, seed=0), r"`per_dataset` must be an integer >= 1 runs, but got 0"),
])
def test_bad_cuts_name_the_field(toy: MetaDataset, call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(toy)


# -- the acquisition ----------------------------------------------------------------------------------


def test_latent_variance_leaves_the_observation_noise_out(toy: MetaDataset,
                                                          surrogate: DeepKernelSurrogate) -> None:
    held = toy.select(["d0"])
    model = surrogate.copy().fine_tune(held.configs.iloc[:4], held.curves[:4, :2])
    mean, noisy = model.predict(held.configs, budgets=6.0)
    same_mean, latent = model.predict(held.configs, budgets=6.0, latent=True)
    noise = float(model.performance.gp.likelihood.noise.detach()) * model.y_std ** 2
    np.testing.assert_allclose(same_mean, mean, rtol=1e-5)
    np.testing.assert_allclose(noisy - latent, noise, rtol=1e-3)
    # At an observed point the latent variance is what training it again could still teach us: less
    # than the noise, so the acquisition stops re-proposing the incumbent's neighbourhood.
    _, at_seen = model.predict(held.configs.iloc[:1], budgets=1.0, latent=True)
    assert at_seen[0] < noise


def _model(surrogate: DeepKernelSurrogate, **options: Any) -> QuickTuneModel:
    model = QuickTuneModel(surrogate=surrogate, alpha=options.pop("alpha", 0.0), **options)
    model.set_objective("accuracy", "max")
    model.max_steps = 6
    return model


def _observe(model: QuickTuneModel, trial_id: str, config: dict[str, float], values: list[float]) -> None:
    model.register(trial_id, config)
    for step, value in enumerate(values, start=1):
        model.observations.observe(trial_id, step, value, seconds=1.0)


def test_acquisition_uses_the_latent_curve(surrogate: DeepKernelSurrogate) -> None:
    model = _model(surrogate)
    _observe(model, "a", {"x": 0.9, "lr": 0.5}, [60.0, 70.0])
    candidates = [{"x": 0.2, "lr": 0.3}, {"x": 0.8, "lr": 0.9}]
    scores = model.score_new(candidates, 1)
    base = model.base()
    mean, variance = base.predict(pd.DataFrame(candidates), budgets=1.0, latent=True)
    np.testing.assert_allclose(scores, expected_improvement(mean, variance, 60.0), rtol=1e-4, atol=1e-9)


def test_online_fits_take_the_given_number_of_steps() -> None:
    model = QuickTuneModel(online_steps=7, seed=0)
    model.set_objective("accuracy", "max")
    for i in range(4):
        _observe(model, f"t{i}", {"x": 0.2 * i, "lr": 0.1 + 0.1 * i}, [0.3 + 0.1 * i, 0.4 + 0.1 * i])
    assert model.ready
    assert model.base().settings.meta_train_steps == 7
    assert QuickTuneModel().online_steps == 40
    with pytest.raises(ValueError, match="online_steps"):
        QuickTuneModel(online_steps=0)


def test_predict_new_is_the_mean_and_variance_the_acquisition_scores(surrogate: DeepKernelSurrogate) -> None:
    model = _model(surrogate)
    _observe(model, "a", {"x": 0.9, "lr": 0.5}, [60.0, 70.0])
    candidates = [{"x": 0.2, "lr": 0.3}, {"x": 0.8, "lr": 0.9}]
    mean, variance = model.predict_new(candidates, 1)
    expected = model.base().predict(pd.DataFrame(candidates), budgets=1.0, latent=True)
    np.testing.assert_allclose(mean, expected[0], rtol=1e-5)
    np.testing.assert_allclose(variance, np.maximum(expected[1], 0.0), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(model.score_new(candidates, 1), expected_improvement(mean, variance, 60.0),
                               rtol=1e-4, atol=1e-9)


def test_final_horizon_scores_the_last_step_against_the_best_value_seen(
        surrogate: DeepKernelSurrogate) -> None:
    model = _model(surrogate, horizon="final")
    _observe(model, "a", {"x": 0.9, "lr": 0.5}, [60.0, 75.0, 70.0])
    candidates = [{"x": 0.2, "lr": 0.3}, {"x": 0.8, "lr": 0.9}]
    scores = model.score_new(candidates, 1)
    mean, variance = model.base().predict(pd.DataFrame(candidates), budgets=6.0, latent=True)
    np.testing.assert_allclose(scores, expected_improvement(mean, variance, 75.0), rtol=1e-4, atol=1e-9)
    with pytest.raises(ValueError, match=r"`horizon` must be one of \('next', 'final'\), but got 'last'"):
        QuickTuneModel(surrogate=surrogate, horizon="last")
    with pytest.raises(ValueError, match="horizon"):
        QuickTuneSearcher({"x": [0, 1]}, horizon="end")


# -- the successive-halving guard ------------------------------------------------------------------


def test_guard_lets_only_the_best_third_continue_at_a_rung(surrogate: DeepKernelSurrogate) -> None:
    model = _model(surrogate)
    model.max_steps = 10
    values = {"a": 50.0, "b": 61.0, "c": 55.0, "d": 70.0, "e": 40.0, "f": 58.0}
    for trial_id, value in values.items():
        _observe(model, trial_id, {"x": 0.5, "lr": 0.5}, [value])
    ids = list(values)
    assert model.promotable(ids).all()  # no guard by default
    model.eta = 3
    assert model.rungs() == {1, 3, 9}
    assert model.promotable(ids).tolist() == [False, True, False, True, False, False]  # top ceil(6/3) = 2
    _observe(model, "g", {"x": 0.5, "lr": 0.5}, [45.0, 46.0])  # between rungs: free to go on
    assert model.promotable(["g"]).tolist() == [True]
    minimise = QuickTuneModel(alpha=0.0)  # online surrogate: values are signed, larger is better
    minimise.set_objective("loss", "min")
    minimise.max_steps, minimise.eta = 10, 3
    for trial_id, value in {"a": -1.0, "b": -3.0, "c": -2.0}.items():
        _observe(minimise, trial_id, {"x": 0.5}, [value])
    assert minimise.promotable(["a", "b", "c"]).tolist() == [True, False, False]


def test_scheduler_hands_eta_to_the_shared_model() -> None:
    searcher = QuickTuneSearcher({"x": [0, 1]}, metric="score", mode="max", seed=0)
    scheduler = FreezeThawScheduler(searcher=searcher, max_t=9, eta=3)
    assert searcher.model.eta == 3 and searcher.model.rungs() == {1, 3}
    assert FreezeThawScheduler(max_t=9).eta is None  # the default: the acquisition alone
    with pytest.raises(ValueError, match=r"`eta` must be an integer >= 2 or None \(no guard\), but got 1"):
        FreezeThawScheduler(max_t=9, eta=1)
    assert scheduler.model is searcher.model


# -- the diagnosis ------------------------------------------------------------------------------------


@pytest.fixture()
def diagnosis(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _hpo_diagnosis

    return _hpo_diagnosis


def test_allocation_counts_starts_resumes_and_continued_trials_below_the_median(diagnosis: Any) -> None:
    outcome = ReplayOutcome(mode="max")
    for clock, (trial_id, step, value) in enumerate([("a", 1, 50.0), ("a", 2, 52.0), ("b", 1, 70.0),
                                                     ("a", 3, 53.0), ("c", 1, 40.0), ("b", 2, 75.0)]):
        outcome.record(trial_id, step, value, 1.0, float(clock))
    medians = np.array([55.0, 60.0, 65.0])
    out = diagnosis.allocation(outcome, medians, "max")
    assert out["started"] == 3 and out["resumes"] == 2  # a after b, b after c
    assert out["epochs_per_trial"] == 2 and out["max_epochs_trial"] == 3 and out["continued"] == 2
    assert out["continued_below_median"] == 0.5  # a ends at 53 < 65 at step 3; b at 75 > 60
    assert diagnosis.allocation(outcome, medians, "min")["continued_below_median"] == 0.5
    assert np.allclose(diagnosis.step_medians(np.array([[1.0, np.nan], [3.0, np.nan]])), [2.0, np.nan],
                       equal_nan=True)


def test_calibration_reports_likelihood_coverage_and_rank_correlation(diagnosis: Any, toy: MetaDataset,
                                                                      surrogate: DeepKernelSurrogate) -> None:
    held = toy.select(["d0"])
    checks = diagnosis.calibration(surrogate, held, None)
    for k in (0, 1, 3):
        for name in ("nll_next", "nll_last", "cover68_next", "cover95_last", "spearman_last"):
            assert math.isfinite(checks[f"{name}_{k}"]), f"{name}_{k}"
        assert 0 <= checks[f"cover68_last_{k}"] <= checks[f"cover95_last_{k}"] <= 1
    # The curves' last values are known from step 3 on far better than from nothing.
    assert checks["spearman_last_3"] > checks["spearman_last_0"]
    assert surrogate.n_observations == 0  # the caller's surrogate is not conditioned


# -- the replay's regimes -----------------------------------------------------------------------------


@pytest.mark.skipif(not QUICKTUNE_DATA.is_dir(), reason=f"Quick-Tune meta-dataset not at {QUICKTUNE_DATA}")
def test_short_regime_replay_prints_the_diagnosis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _common
    import quicktune_replay

    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path / "results")
    args = quicktune_replay.parse_args([
        "--quick", "--regime", "short", "--datasets", "APL", "--budget-runs", "1", "--jobs", "1",
        "--methods", "quicktune+freeze_thaw,random+asha", "--store", str(tmp_path / "store")])
    data, label = quicktune_replay.load_table(args)
    assert label == "quicktune-mtlbm-extended-short" and data.n_steps == 10
    assert data.meta_features.shape[1] == 0 and max(np.unique(data.datasets, return_counts=True)[1]) == 60
    figures = quicktune_replay.run(args)
    out = capsys.readouterr().out
    assert "10 epoch steps" in out and "0 meta-features" in out
    assert "where the budget went" in out and "conditioned on the first k steps" in out
    assert "RESULT quicktune_replay scenario=quicktune-mtlbm-extended-short mode=quick" in out
    assert figures["scenario"] == "quicktune-mtlbm-extended-short"
    plot = "quicktune_replay_quicktune-mtlbm-extended-short_allocation-quick.png"
    assert (tmp_path / "results" / plot).is_file()
    custom = quicktune_replay.parse_args(["--horizon", "5", "--no-meta-features"])
    assert quicktune_replay.load_table(custom)[1] == "quicktune-mtlbm-extended-h5-nometa"
    with pytest.raises(ValueError, match=r"`--max-configs` must be >= 0 \(0: not cut\), but got -1"):
        quicktune_replay.load_table(quicktune_replay.parse_args(["--max-configs", "-1"]))


@pytest.mark.skipif(not LCBENCH_DATA.is_dir(), reason=f"LCBench data not at {LCBENCH_DATA}")
def test_lcbench_table_is_sampled_and_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import quicktune_replay

    data, label = quicktune_replay.load_table(quicktune_replay.parse_args(["--meta-dataset", "lcbench",
                                                                           "--regime", "short"]))
    assert label == "lcbench-short" and data.n_steps == 10 and len(data.dataset_names) == 34
    counts = np.unique(data.datasets, return_counts=True)[1]
    assert counts.max() == quicktune_replay.LCBENCH_CONFIGS


@pytest.mark.skipif(not LCBENCH_DATA.is_dir(), reason=f"LCBench data not at {LCBENCH_DATA}")
def test_short_horizon_cuts_the_fidelity_and_the_suite_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    from efficient_search.blackbox import ShortHorizon, YahpoBenchmark
    from efficient_search.blackbox.sampling import reference_values, sample_meta_dataset
    from efficient_search.testing.replay_blackbox import BlackboxReplay

    full = YahpoBenchmark("lcbench")
    short = ShortHorizon(full, 10)
    assert short.fidelity.max == 10 and short.fidelity.min == full.fidelity.min
    assert short.instances == full.instances
    config = {name: domain.sample() for name, domain in full.space().items()}
    assert short.evaluate(config, "3945", 7) == full.evaluate(config, "3945", 7)
    with pytest.raises(ValueError, match=r"must be in \[1, 10\], but got 11"):
        short.evaluate(config, "3945", 11)
    with pytest.raises(ValueError, match=r"`maximum` must be a epoch value in \[1, 52\], but got 60"):
        ShortHorizon(full, 60)
    assert BlackboxReplay(short, "3945").max_steps == 10
    assert sample_meta_dataset(short, ["3945"], configs_per_instance=3, seed=0).n_steps == 10
    ref = reference_values(short, "3945", samples=50)
    assert ref.full_run_s < reference_values(full, "3945", samples=50).full_run_s

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import hpo_suite

    suite = hpo_suite.build_suite(hpo_suite.parse_args(["--quick", "--horizon", "10", "--meta-configs", "8",
                                                        "--methods", "quicktune+freeze_thaw,random+asha"]),
                                  announce=False)
    assert suite.label == "lcbench-h10" and suite.file_stem == "hpo_suite_lcbench-h10"
    assert suite.meta_data.n_steps == 10
    with pytest.raises(ValueError, match=r"`--horizon` must be >= 0"):
        hpo_suite.build_suite(hpo_suite.parse_args(["--quick", "--horizon", "-2"]), announce=False)
