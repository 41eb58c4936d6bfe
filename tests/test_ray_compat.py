"""Every private Ray name in ``efficient_search.ray_compat`` still exists in the installed Ray and
means what we assume (real Ray schedulers, a real Tune run), and the Ray version check."""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import (
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    TrialScheduler,
)

from efficient_search import ray_compat as rc
from efficient_search.testing.schedulers import WhitelistedController
from efficient_search.tune_state import drop_pending_pauses

ROOT = Path(__file__).resolve().parents[1]
METRIC, TIME = "acc", "training_iteration"


def trial(trial_id: str, status: str = Trial.RUNNING) -> Trial:
    made = Trial("fn", trial_id=trial_id, stub=True)
    made.set_status(status)
    return made


def result(time: float, value: float) -> dict[str, Any]:
    return {TIME: time, METRIC: value}


# -- the version range ----------------------------------------------------------------------------
def test_pyproject_declares_the_supported_range_and_the_installed_ray_is_in_it() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    declared = re.findall(r'"ray\[[a-z,]+\](.*?)"', text)
    assert declared == [rc.RAY_SUPPORTED]
    rc.check_ray_version()  # the installed one
    rc.check_ray_version(ray.__version__)


@pytest.mark.parametrize("version", ["2.60.0", "2.60.7", "2.60.1rc1"])
def test_versions_inside_the_range_pass(version: str) -> None:
    rc.check_ray_version(version)


@pytest.mark.parametrize("version", ["2.59.2", "2.61.0", "3.0.0.dev0", "2.6.0", "nightly"])
def test_versions_outside_the_range_are_refused_with_the_range_and_the_version(
        version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rc.SKIP_CHECK_ENV, raising=False)
    monkeypatch.setattr(rc.importlib.metadata, "version", lambda name: version)
    with pytest.raises(ImportError, match=rf"supports Ray {re.escape(rc.RAY_SUPPORTED)}, but got "
                                          rf"Ray {re.escape(version)}"):
        rc.check_ray_version()
    monkeypatch.setenv(rc.SKIP_CHECK_ENV, "1")
    rc.check_ray_version()


def test_importing_the_package_with_another_ray_fails_clearly_unless_skipped() -> None:
    code = textwrap.dedent("""
        import importlib.metadata
        importlib.metadata.version = lambda name: "2.61.0"
        import efficient_search
        print("imported")
    """)
    failed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert failed.returncode != 0
    assert f"ImportError: efficient-search supports Ray {rc.RAY_SUPPORTED}, but got Ray 2.61.0" \
        in failed.stderr
    skipped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                             env={"PATH": "/usr/bin:/bin", rc.SKIP_CHECK_ENV: "1"}, timeout=60)
    assert skipped.returncode == 0 and "imported" in skipped.stdout, skipped.stderr


# -- AsyncHyperBandScheduler ----------------------------------------------------------------------
def asha(mode: str = "max") -> AsyncHyperBandScheduler:
    return AsyncHyperBandScheduler(metric=METRIC, mode=mode, time_attr=TIME, max_t=9,
                                   grace_period=1, reduction_factor=3, brackets=2)


def test_asha_brackets_hold_rungs_of_milestones_and_signed_scores_by_trial_id() -> None:
    from ray.tune.schedulers.async_hyperband import _Bracket

    scheduler = asha(mode="min")
    brackets = rc.asha_brackets(scheduler)
    assert isinstance(brackets, list) and [type(b) for b in brackets] == [_Bracket, _Bracket]
    rungs = [rc.asha_rungs(b) for b in brackets]
    assert [[m for m, _ in r] for r in rungs] == [[9, 3, 1], [9, 3]]  # highest milestone first
    assert all(isinstance(recorded, dict) and not recorded for r in rungs for _, recorded in r)
    assert rc.has_objective(scheduler) and not rc.has_objective(AsyncHyperBandScheduler())
    assert rc.scheduler_mode(scheduler) == "min" and rc.scheduler_time_attr(scheduler) == TIME

    first = trial("a")
    scheduler.on_trial_add(None, first)  # type: ignore[arg-type]
    assigned = rc.trial_brackets(scheduler)
    assert set(assigned) == {"a"} and assigned["a"] in brackets  # keyed by trial id
    rc.trial_brackets(scheduler)["a"] = brackets[0]  # the map is Ray's own
    scheduler.on_trial_result(None, first, result(1, 0.25))  # type: ignore[arg-type]
    assert rc.asha_rungs(brackets[0])[-1] == (1, {"a": -0.25})  # metric x -1 for "min"


def test_asha_decides_from_rungs_written_through_the_compat_functions() -> None:
    scheduler = asha()
    bracket = rc.asha_brackets(scheduler)[0]
    rc.set_asha_rungs(bracket, [(9, {}), (3, {}), (1, {"x": 0.9, "y": 0.8, "z": 0.7})])
    late = trial("late")
    scheduler.on_trial_add(None, late)  # type: ignore[arg-type]
    rc.trial_brackets(scheduler)["late"] = bracket
    assert scheduler.on_trial_result(None, late, result(1, 0.1)) == TrialScheduler.STOP  # type: ignore[arg-type]
    assert rc.stopped_count(scheduler) == 1
    rc.set_stopped_count(scheduler, 5)
    assert "num_stopped=5" in scheduler.debug_string()


# -- HyperBandScheduler ---------------------------------------------------------------------------
def hyperband() -> HyperBandScheduler:
    return HyperBandScheduler(metric=METRIC, mode="max", time_attr=TIME, max_t=9, reduction_factor=3)


def filled_hyperband(count: int) -> tuple[HyperBandScheduler, WhitelistedController]:
    scheduler, controller = hyperband(), WhitelistedController()
    controller.scheduler = scheduler
    for i in range(count):
        made = trial(f"t{i}", Trial.PENDING)
        controller.trials.append(made)
        scheduler.on_trial_add(controller, made)  # type: ignore[arg-type]
    return scheduler, controller


def test_hyperband_bands_positions_and_brackets_are_what_we_save() -> None:
    from ray.tune.schedulers.hyperband import _Bracket

    scheduler, controller = filled_hyperband(10)
    bands = rc.hyperband_bands(scheduler)
    assert isinstance(bands, list) and all(isinstance(band, list) for band in bands)
    made = [b for band in bands for b in band if b is not None]
    assert made and all(type(b) is _Bracket for b in made)
    band_idx, current = rc.hyperband_position(scheduler)
    assert current is bands[band_idx][-1]
    for t in controller.trials:
        bracket, band = rc.trial_brackets(scheduler)[t]  # keyed by Trial
        assert bracket is bands[band][bands[band].index(bracket)]
        assert t in rc.bracket_live_trials(bracket) and t in rc.bracket_all_trials(bracket)
    for band in bands:
        for s, bracket in enumerate(band):
            if bracket is not None:  # a band's s-th bracket is made with s halvings
                fresh = rc.new_hyperband_bracket(scheduler, s)
                assert rc.bracket_progress(bracket) == rc.bracket_progress(fresh)
                assert rc.bracket_progress(bracket)["halves"] == s
    first = bands[0][0]
    assert first is not None
    assert rc.bracket_live_trials(first) == {t: None for t in rc.bracket_all_trials(first)}
    assert rc.bracket_milestone(first) == rc.bracket_progress(first)["cumul_r"]
    assert rc.bracket_result_time(first, result(3, 0.5)) == 3
    assert rc.bracket_result_time(first, None) == 0


def test_hyperband_halves_in_on_trial_result_and_through_the_compat_step() -> None:
    scheduler, controller = filled_hyperband(17)  # brackets of 3, 5 and 9 trials
    bracket = rc.hyperband_bands(scheduler)[0][2]
    assert bracket is not None and rc.bracket_progress(bracket)["halves"] == 2
    before = rc.bracket_progress(bracket)
    members = list(rc.bracket_live_trials(bracket))
    milestone = rc.bracket_milestone(bracket)
    for i, t in enumerate(members):
        t.set_status(Trial.RUNNING)
        decision = scheduler.on_trial_result(controller, t, result(milestone, i / 10))  # type: ignore[arg-type]
        if decision == TrialScheduler.PAUSE:
            t.set_status(Trial.PAUSED)
    after = rc.bracket_progress(bracket)  # the last result halved the bracket inside Ray's hook
    assert after["halves"] == before["halves"] - 1 and after["n"] < before["n"]
    assert after["cumul_r"] == after["r"] > before["r"]
    assert len(rc.bracket_live_trials(bracket)) == after["n"]
    assert rc.stopped_count(scheduler) == before["n"] - after["n"]

    # The compat step is the same halving (here: the bracket is not done, so PAUSE).
    second = rc.hyperband_bands(scheduler)[0][1]
    assert second is not None
    assert rc.process_hyperband_bracket(scheduler, controller, second) == TrialScheduler.PAUSE


def test_hyperband_state_written_through_the_compat_functions_is_what_ray_reads() -> None:
    scheduler, controller = filled_hyperband(3)
    bracket = rc.new_hyperband_bracket(scheduler, 1)
    a, b = trial("a", Trial.PAUSED), trial("b", Trial.PENDING)
    rc.set_bracket_live_trials(bracket, {a: result(3, 0.5), b: None})
    rc.set_bracket_all_trials(bracket, [a, b])
    progress = {**rc.bracket_progress(bracket), "n": 2, "completed_progress": 3}
    rc.set_bracket_progress(bracket, progress)
    assert rc.bracket_progress(bracket) == progress
    assert bracket.filled() and not bracket.cur_iter_done()  # b has not reached the milestone
    assert bracket.completion_percentage() > 0
    rc.set_hyperband_bands(scheduler, [[None, bracket]])
    rc.set_hyperband_position(scheduler, 0, bracket)
    rc.trial_brackets(scheduler).clear()
    rc.trial_brackets(scheduler).update({a: (bracket, 0), b: (bracket, 0)})
    assert scheduler.choose_trial_to_run(controller) is b  # type: ignore[arg-type]
    assert scheduler.state() == {"num_brackets": 2, "num_stopped": 0}
    scheduler.on_trial_remove(controller, b)  # type: ignore[arg-type]
    assert b not in rc.bracket_live_trials(bracket)


# -- MedianStoppingRule ---------------------------------------------------------------------------
def test_median_rule_keeps_results_stops_and_pauses_where_we_read_and_restore_them() -> None:
    rule = MedianStoppingRule(metric=METRIC, mode="max", time_attr=TIME, grace_period=1,
                              min_samples_required=1, hard_stop=True)
    good, bad = trial("good"), trial("bad")
    assert rc.scheduler_time_attr(rule) == TIME and rc.scheduler_mode(rule) == "max"
    assert rc.median_last_pause(rule)[good] == -math.inf  # default for a trial never paused
    # What a restore writes (time and metric only) is enough for Ray's median.
    rc.median_results(rule)[good] = [result(1, 0.9), result(2, 0.9)]
    assert rule.on_trial_result(None, bad, {**result(2, 0.1), "other": 1}) == TrialScheduler.STOP  # type: ignore[arg-type]
    assert rc.median_results(rule)[bad][-1]["other"] == 1
    assert rc.median_stopped(rule) == {bad}
    rc.median_stopped(rule).add(good)
    assert rule.debug_string() == "Using MedianStoppingRule: num_stopped=2."


# -- our subclasses' conventions ------------------------------------------------------------------
def test_metric_and_mode_properties_read_the_attributes_our_subclasses_set() -> None:
    """LayerFreezingScheduler, FreezeThawScheduler and our searchers keep metric/mode in
    ``_metric``/``_mode``, which Ray's public properties read."""
    from ray.tune.search import Searcher

    scheduler = FIFOScheduler()
    scheduler._metric = METRIC
    assert scheduler.metric == METRIC
    searcher = Searcher()
    searcher._metric, searcher._mode = METRIC, "min"
    assert (searcher.metric, searcher.mode) == (METRIC, "min")


def test_the_simulated_controller_offers_exactly_what_ray_lets_schedulers_use() -> None:
    from ray.tune.execution.tune_controller import TuneController

    tree = ast.parse(textwrap.dedent(inspect.getsource(TuneController._wrapped)))
    allowed = next(ast.literal_eval(k.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
                   for k in node.keywords if k.arg == "runner_whitelist_attr")
    offered = {name for name in dir(WhitelistedController) if not name.startswith("__")}
    assert offered == allowed


# -- Tune's experiment folder ---------------------------------------------------------------------
def report_once(config: dict[str, Any]) -> None:
    tune.report({METRIC: config["x"]})


def test_experiment_state_layout_tune_state_rewrites_and_the_restored_scheduler(
        ray_session: None, tmp_path: Path) -> None:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search import BasicVariantGenerator, SearchGenerator

    assert TuneController.CKPT_FILE_TMPL.format("*") == rc.EXPERIMENT_STATE_GLOB
    assert SearchGenerator.CKPT_FILE_TMPL.format("*") == rc.SEARCH_GENERATOR_STATE_GLOB
    assert BasicVariantGenerator.CKPT_FILE_TMPL.format("*") == rc.BASIC_VARIANT_STATE_GLOB
    assert rc.PAUSE_DECISION == TrialScheduler.PAUSE
    scheduler = asha()
    tune.Tuner(report_once, param_space={"x": tune.uniform(0, 1)},
               tune_config=tune.TuneConfig(num_samples=1, scheduler=scheduler),
               run_config=tune.RunConfig(name="compat", storage_path=str(tmp_path), verbose=0)).fit()
    experiment = tmp_path / "compat"
    files = sorted(experiment.glob(rc.EXPERIMENT_STATE_GLOB))
    assert files
    state = json.loads(files[-1].read_text())
    runner = state[rc.RUNNER_DATA_KEY]
    for key in rc.PENDING_DECISION_KEYS:
        assert runner[key] == {}  # {trial id: decision}, empty after a clean end
    trial_id = json.loads(state["trial_data"][0][0])["trial_id"]
    runner[rc.PENDING_DECISION_KEYS[0]] = {trial_id: rc.PAUSE_DECISION}
    files[-1].write_text(json.dumps(state))
    assert drop_pending_pauses(experiment) == 1

    # The random generator's saved state grows (tests/test_grow.py runs grown searches).
    assert rc.grow_saved_search(experiment, 1) == 0
    assert rc.grow_saved_search(experiment, 3) == 2
    assert rc.grow_saved_search(tmp_path, 3) is None  # no search state there

    restored = tune.Tuner.restore(str(experiment), report_once)
    found = rc.restored_scheduler(restored)
    assert isinstance(found, AsyncHyperBandScheduler) and found is not scheduler
    assert rc.restored_callbacks(restored) == []


def test_trial_dataframe_reads_a_trials_result_file(ray_session: None, tmp_path: Path) -> None:
    storage = rc.storage_context(storage_path=str(tmp_path), experiment_dir_name="frames")
    made = Trial("fn", trial_id="t0", storage=storage, stub=True)
    made.init_local_path()
    assert made.storage is not None
    rows = [{**result(i, i / 10), "trial_id": "t0"} for i in (1, 2)]
    folder = Path(made.storage.trial_fs_path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    made.update_last_result(rows[-1])
    frame = rc.trial_dataframe(made)
    assert frame[[TIME, METRIC]].to_dict("records") == [result(1, 0.1), result(2, 0.2)]


# -- ray core and the autoscaler ------------------------------------------------------------------
def test_cluster_mode_off_makes_address_look_ups_loopback() -> None:
    code = textwrap.dedent("""
        from ray._private import ray_constants, services
        from efficient_search.ray_compat import ray_cluster_mode_off
        assert ray_constants.ENABLE_RAY_CLUSTER is True
        with ray_cluster_mode_off():
            assert ray_constants.ENABLE_RAY_CLUSTER is False
            print(services.get_node_ip_address())
        assert ray_constants.ENABLE_RAY_CLUSTER is True
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "127.0.0.1"


def test_token_auth_follows_an_explicit_auth_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert rc.enable_token_auth_if_token_available() is True
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert rc.enable_token_auth_if_token_available() is False


@ray.remote(num_cpus=0)
class NodeReporter:
    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


def test_actor_node_id(ray_session: None) -> None:
    actor = NodeReporter.remote()  # type: ignore[attr-defined]
    node_id = ray.get(actor.node_id.remote())  # the actor runs now
    assert rc.actor_node_id(actor) == node_id
    ray.kill(actor)


def test_cluster_config_helpers() -> None:
    ray_cluster = {"metadata": {"name": "x", "namespace": "default"}, "spec": {
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [
            {"name": "ray-head", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}},
        "workerGroupSpecs": [{"groupName": "w", "minReplicas": 0, "maxReplicas": 2, "rayStartParams": {},
                              "template": {"spec": {"containers": [
                                  {"name": "ray-worker", "resources": {"limits": {"cpu": "2"}}}]}}}]}}
    config = rc.derive_kuberay_autoscaling_config(ray_cluster)
    worker = config["available_node_types"]["w"]
    assert worker["max_workers"] == 2 and worker["resources"]["CPU"] == 2
    rc.validate_cluster_config(config)
    with pytest.raises(jsonschema.ValidationError, match="'provider' is a required property"):
        rc.validate_cluster_config({"cluster_name": "x"})
    prepared = rc.prepare_cluster_config({
        "cluster_name": "x", "provider": {"type": "aws", "region": "us-west-2"},
        "available_node_types": {"head": {"node_config": {}, "resources": {"CPU": 0},
                                          "max_workers": 0}},
        "head_node_type": "head", "max_workers": 0})
    assert prepared["available_node_types"]["head"]["min_workers"] == 0  # Ray's defaults merged in
    rc.validate_cluster_config(prepared)


# -- Ray's searcher peers -------------------------------------------------------------------------
def test_optuna_search_study_is_the_study_ray_reports_to() -> None:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch({"x": tune.uniform(0, 1)}, metric=METRIC, mode="max", seed=0)
    config = searcher.suggest("t0")
    assert config is not None
    searcher.on_trial_complete("t0", {METRIC: 0.5, **config})
    study = rc.optuna_search_study(searcher)
    assert isinstance(study, optuna.Study)
    assert [t.value for t in study.trials] == [0.5] and study.trials[0].params == config



def test_worker_lines_are_routed_through_the_driver_dispatcher() -> None:
    import inspect

    from ray._private import worker

    assert f'"{rc.WORKER_LOG_HANDLER}"' in inspect.getsource(worker.connect)  # the console handler's name
    seen: list[dict] = []
    dispatcher = worker.global_worker_stdstream_dispatcher
    original = list(dispatcher.handlers)
    dispatcher.add_handler(rc.WORKER_LOG_HANDLER, lambda data: None)
    try:
        with rc.worker_lines_to(seen.append):
            dispatcher.emit({"lines": ["hello"], "pid": 1, "is_err": False})
            assert rc.WORKER_LOG_HANDLER not in [name for name, _ in dispatcher.handlers]
        assert rc.WORKER_LOG_HANDLER in [name for name, _ in dispatcher.handlers]
    finally:
        dispatcher.handlers = original
    assert seen == [{"lines": ["hello"], "pid": 1, "is_err": False}]
