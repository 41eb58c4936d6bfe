"""Fault tolerance: SIGKILLed drivers resume with nothing lost or doubled; dead Train workers retry.

Drivers run as subprocesses joined to the session's Ray (see efficient_search.testing.faults).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import efficient_search as es
from efficient_search.store import ParquetStore
from efficient_search.store.callback import rows_to_redo
from efficient_search.testing.faults import InterruptAfterResults, audit, driver_env, kill_and_resume
from efficient_search.tune_state import drop_pending_pauses

pytestmark = pytest.mark.usefixtures("ray_session")

SPACE = {"depth": {"randint": [1, 3]}, "width": {"choice": [8, 16]}, "lr": {"loguniform": [0.01, 0.5]},
         "batch_size": 64}


def spec(tmp_path: Path, name: str, searcher: str, scheduler: str, concurrency: int,
         **fields: Any) -> dict[str, Any]:
    return {"name": name, "task": "digits", "task_options": {"epochs": 3}, "search_space": SPACE,
            "searcher": searcher, "scheduler": scheduler, "num_samples": 6,
            "max_concurrent_trials": concurrency, "resources": {"num_workers": 0, "cpus_per_worker": 1},
            "store": str(tmp_path / "store"), "seed": 3, "verbose": 0, **fields}


def check_kill_and_resume(tmp_path: Path, searcher: str, scheduler: str, concurrency: int,
                          kill_at_rows: list[int], **fields: Any) -> dict[str, Any]:
    base = spec(tmp_path, "faults", searcher, scheduler, concurrency, **fields)
    # The killed drivers (subprocesses) and the uninterrupted reference run side by side on the
    # session's Ray: both searches are seeded, and the sequential ones (concurrency 1) decide on
    # results in trial order, never on time, so running together changes neither (measured: the
    # faults tests took 866 s instead of 1,128 s on 2 cores).
    with ThreadPoolExecutor(1) as pool:
        faulted = pool.submit(kill_and_resume, base, kill_at_rows, log_dir=tmp_path / "logs", timeout_s=600)
        es.run({**base, "name": "faults-ref"})
        outcome = faulted.result()
    report = audit(outcome.store, "faults", num_samples=base["num_samples"], reference="faults-ref")
    assert outcome.kills, "the search ended before the first kill point"
    expected = {"trials": base["num_samples"], "unfinished": 0, "lost_rows": 0, "duplicated_rows": 0,
                "identical_suggestions": True}
    assert report == expected, report
    return report


@pytest.mark.slow
@pytest.mark.parametrize(("searcher", "scheduler", "concurrency", "options"), [
    ("evolution", "asha", 1, {"searcher_options": {"population_size": 3},
                              "scheduler_options": {"max_t": 3, "grace_period": 1}}),
    ("random", "fifo", 2, {}),
    ("optuna", "asha", 1, {"searcher_options": {"sampler": "tpe"}, "scheduler_options": {"max_t": 3}}),
    # NSGA-II's sampler cannot be pickled (Optuna 5.1): the searcher's state is Optuna's journal.
    ("optuna", "fifo", 1, {"searcher_options": {"sampler": "nsga2", "population_size": 2}}),
    ("random", "median", 2, {"scheduler_options": {"grace_period": 1, "min_samples_required": 2}}),
    ("random", "hyperband", 2, {"num_samples": 8, "scheduler_options": {"max_t": 3}}),
    # Cost in epochs (not wall seconds), so that runs decide alike whatever the machine's load. Four
    # trials (every pause restarts a trial process: the costliest pair of CI), killed at 3 and 7 rows.
    ("quicktune", "freeze_thaw", 1, {
        "num_samples": 4, "kill_at_rows": [3, 7],
        "searcher_options": {"pool_size": 32, "initial_random": 2, "cost_attr": "fidelity/epoch"},
        "scheduler_options": {"max_t": 3, "cost_attr": "fidelity/epoch"}}),
])
def test_every_searcher_and_scheduler_survives_driver_kills(tmp_path: Path, searcher: str, scheduler: str,
                                                            concurrency: int, options: dict) -> None:
    options = dict(options)
    kill_at_rows = options.pop("kill_at_rows", [3, 9])
    check_kill_and_resume(tmp_path, searcher, scheduler, concurrency, kill_at_rows, **options)


def test_an_unfinished_search_under_rays_own_hyperband_is_not_resumed(tmp_path: Path) -> None:
    """Ray's HyperBandScheduler loses its brackets on restore and would never resume its paused
    trials; `scheduler: hyperband` is our RestorableHyperBand, which resumes (tested below)."""
    from ray.tune.schedulers import HyperBandScheduler

    base = spec(tmp_path, "hb", "random", "fifo", 3, num_samples=3, task_options={"epochs": 2})
    base["scheduler"] = HyperBandScheduler(time_attr="training_iteration", max_t=2)
    es.run(base)
    es.run(base, resume=True)  # a finished search resumes to the same results
    store = ParquetStore(base["store"])
    assert len(store.trials("hb")) == 3
    store.append("hb", [{"trial_id": "extra", "iteration": 1, "status": "RUNNING"}])  # no end row
    with pytest.raises(ValueError, match="HyperBandScheduler.*cannot be resumed"):
        es.run(base, resume=True)


@pytest.mark.slow
def test_layer_freezing_survives_driver_kills(tmp_path: Path) -> None:
    check_kill_and_resume(
        tmp_path, "evolution", "layer_freezing", 1, [3, 7], num_samples=4,
        search_space={"depth": 2, "width": 8, "lr": {"loguniform": [0.01, 0.5]}, "batch_size": 32},
        task_options={"epochs": 1}, searcher_options={"population_size": 3},
        scheduler_options={"max_trainable_layers": 4, "epochs": 1, "reduction_factor": 2,
                           "promotion": "continue"})


def test_pending_pauses_saved_by_ray_are_dropped_before_a_restore(tmp_path: Path) -> None:
    state = {"trial_data": [["{}", "{}"]], "stats": {"start_time": 1.0},
             "runner_data": {"_cached_trial_decisions": {"t1": "PAUSE", "t3": "STOP"},
                             "_queued_trial_decisions": {"t2": "PAUSE"}, "_iteration": 7}}
    older = tmp_path / "experiment_state-2026-01-01_00-00-00.json"
    newest = tmp_path / "experiment_state-2026-01-02_00-00-00.json"
    for path in (older, newest):
        path.write_text(json.dumps(state))
    assert drop_pending_pauses(tmp_path) == 2
    runner = json.loads(newest.read_text())["runner_data"]
    assert runner == {"_cached_trial_decisions": {"t3": "STOP"}, "_queued_trial_decisions": {},
                      "_iteration": 7}
    assert json.loads(older.read_text()) == state  # Ray restores the newest only
    assert drop_pending_pauses(tmp_path) == 0
    assert drop_pending_pauses(tmp_path / "missing") == 0
    assert not list(tmp_path.glob("*.partial"))
    newest.write_text('{"runner_data": {"_cached')  # killed while Ray wrote it
    with pytest.raises(ValueError, match="not readable JSON.*move that file aside"):
        drop_pending_pauses(tmp_path)


@pytest.mark.slow
def test_a_stale_pause_saved_by_ray_does_not_strand_a_restored_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray saves the PAUSE a trial was saving for when the driver died and applies it after the
    trial's first save in the resumed run; layer_freezing resumes only trials it paused itself, so
    the search hung (measured: a benchmark driver spun for minutes). Resume drops such decisions."""
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    base = spec(tmp_path, "stale", "random", "layer_freezing", 1, num_samples=3,
                search_space={"depth": 2, "width": 8, "lr": {"loguniform": [0.01, 0.5]}, "batch_size": 32},
                task_options={"epochs": 1},
                scheduler_options={"max_trainable_layers": 4, "epochs": 1, "reduction_factor": 2,
                                   "promotion": "continue"})
    marker = tmp_path / "interrupt"
    marker.touch()
    with pytest.raises(RuntimeError, match="interrupted on purpose"):
        es.run(base, callbacks=[InterruptAfterResults(marker, 2)])
    experiment = tmp_path / "store" / "_ray" / "stale"
    state_file = max(experiment.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    unfinished = [json.loads(t)["trial_id"] for t, _ in state["trial_data"]
                  if json.loads(t)["status"] not in ("TERMINATED", "ERROR")]
    assert unfinished, "every trial ended before the interruption"
    state["runner_data"]["_cached_trial_decisions"] = {unfinished[0]: "PAUSE"}
    state_file.write_text(json.dumps(state))
    done = subprocess.run([sys.executable, "-m", "efficient_search.cli", "resume", "--store",
                           base["store"], "--experiment", "stale"], env=driver_env(),
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = audit(ParquetStore(base["store"]), "stale", num_samples=3)
    assert report == {"trials": 3, "unfinished": 0, "lost_rows": 0, "duplicated_rows": 0}, report


@dataclass
class Restored:
    """What rows_to_redo reads of a restored Tune trial."""

    trial_id: str
    status: str
    latest_checkpoint_result: Any = None


@dataclass
class Result:
    metrics: dict[str, Any]


def test_rows_after_the_saved_state_are_redone() -> None:
    keys = {("done", 1, "RUNNING"), ("done", 2, "RUNNING"), ("done", 2, "TERMINATED"),
            ("paused", 1, "RUNNING"), ("paused", 2, "RUNNING"), ("paused", 3, "RUNNING"),
            ("paused", 3, "TERMINATED"), ("fresh", 1, "RUNNING"), ("unknown", 1, "RUNNING")}
    trials = [Restored("done", "TERMINATED"),
              Restored("paused", "PENDING", Result({"training_iteration": 2})),
              Restored("fresh", "PENDING")]
    keys |= {("retried", 1, "RUNNING"), ("retried", 1, "ERROR")}
    trials.append(Restored("retried", "PENDING"))  # an errored trial restarted from scratch
    assert rows_to_redo(keys, trials) == {  # type: ignore[arg-type]
        ("paused", 3, "RUNNING"), ("paused", 3, "TERMINATED"), ("fresh", 1, "RUNNING"),
        ("unknown", 1, "RUNNING"), ("retried", 1, "RUNNING")}


def test_store_remove_rewrites_without_the_keys(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    rows = [{"trial_id": t, "iteration": i, "status": "RUNNING", "metric.x": float(i)}
            for t in ("a", "b") for i in (1, 2, 3)]
    store.append("e", rows[:3])
    store.append("e", rows[3:])
    assert store.remove("e", {("a", 3, "RUNNING"), ("b", 1, "RUNNING"), ("z", 1, "RUNNING")}) == 2
    assert store.keys("e") == {("a", 1, "RUNNING"), ("a", 2, "RUNNING"), ("b", 2, "RUNNING"),
                               ("b", 3, "RUNNING")}
    assert store.remove("e", set()) == 0


def test_resume_refuses_an_unknown_experiment_and_python_objects(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no recorded spec"):
        es.resume(tmp_path, "nothing-here")
    store = ParquetStore(tmp_path)
    store.write_metadata("objects", {"spec": {"name": "objects", "searcher": "<MySearcher>"}})
    with pytest.raises(ValueError, match="Python object as `searcher`"):
        es.resume(tmp_path, "objects")


def _train_workers() -> list[int]:
    import ray
    from ray.util.state import list_actors

    actors = list_actors(address=ray.get_runtime_context().gcs_address,
                         filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    return [int(a.pid) for a in actors if a.pid]


@pytest.mark.slow
def test_a_killed_train_worker_is_retried_from_its_checkpoint(tmp_path: Path) -> None:
    """SIGKILL one of two DDP workers after the first checkpoint: Train restarts the group
    (max_failures), the workers resume from that checkpoint, and every epoch is reported once."""
    epochs = 6
    run_spec = spec(tmp_path, "worker-kill", "random", "fifo", 1, num_samples=1, max_failures=1,
                    task_options={"epochs": epochs}, search_space={**SPACE, "depth": 2, "width": 16},
                    resources={"num_workers": 2, "cpus_per_worker": 1})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(run_spec))
    log = tmp_path / "driver.log"
    with open(log, "wb") as handle:
        driver = subprocess.Popen([sys.executable, "-m", "efficient_search.cli", "run", str(spec_file)],
                                  env=driver_env(), stdout=handle, stderr=subprocess.STDOUT)
    train_root = tmp_path / "store" / "_ray" / "_train" / "worker-kill"
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and driver.poll() is None:
        if any(train_root.glob("*/checkpoint_*/")) and (workers := _train_workers()):
            killed = workers[-1]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    assert driver.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert killed is not None, "the trial finished before a worker could be killed"
    rows = ParquetStore(run_spec["store"]).results("worker-kill")
    reported = rows[rows["status"] == "RUNNING"].sort_values("iteration")
    # Restarted from scratch, the workers would report epoch 1 again (as iteration epochs + 1).
    assert reported["fidelity.epoch"].astype(int).tolist() == list(range(1, epochs + 1))
    assert reported["iteration"].tolist() == list(range(1, epochs + 1))
    assert rows["status"].iloc[-1] == "TERMINATED"
    # The restarted group's first epoch continued from a checkpoint: its cumulative time is not reset.
    assert reported["cost.seconds"].is_monotonic_increasing
