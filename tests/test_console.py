"""The quiet console: a live view of the search, Ray's worker chatter in a log file, errors shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from efficient_search.console import LiveView, WorkerLog, quiet_console


def trial(trial_id: str, status: str, **config: float) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status, config=config, last_result={},
                           error_file=f"/runs/{trial_id}/error.txt")


def test_the_view_counts_trials_keeps_the_best_and_estimates_the_time_left(
        capsys: pytest.CaptureFixture[str]) -> None:
    view = LiveView("demo", "val_accuracy", "max", 4, interactive=False, every_s=0.0)
    view.setup()
    a, b = trial("a", "RUNNING", lr=0.1), trial("b", "PENDING", lr=0.3)
    view.on_trial_result(1, [a, b], a, {"val_accuracy": 0.8})
    view.on_trial_result(2, [a, b], a, {"val_accuracy": 0.7})
    a.status, a.last_result = "TERMINATED", {"val_accuracy": 0.7, "training_iteration": 2}
    view.on_trial_complete(2, [a, b], a)
    b.status = "RUNNING"
    view.on_step_end(3, [a, b])
    status = view.status([a, b])
    assert "trials 2/4: 1 running, 0 paused, 1 done, 0 failed" in status
    assert "best val_accuracy 0.8 (lr=0.1)" in status and "left" in status
    from rich.console import Console  # the terminal's table says the same

    terminal = Console(record=True, width=120)
    terminal.print(view._table([a, b]))
    drawn = terminal.export_text()
    assert "2/4: 1 running, 0 paused, 1 done, 0 failed" in drawn and "0.8  lr=0.1" in drawn
    b.status = "ERROR"
    view.on_trial_error(4, [a, b], b)
    out, err = capsys.readouterr()
    assert "efficient-search: demo: 4 trial(s), best val_accuracy (max)" in out
    assert "trial a finished: val_accuracy 0.7 after 2 training_iteration" in out
    assert "trial b FAILED; its error: /runs/b/error.txt" in err
    # Tune pickles its callbacks with the experiment; a restored view starts afresh.
    import pickle

    restored = pickle.loads(pickle.dumps(view))
    restored.setup()
    assert restored.best is None and restored.reported == 0


def test_worker_lines_go_to_the_file_and_errors_also_to_the_console(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = WorkerLog(tmp_path / "logs" / "workers.log")
    log({"pid": 7, "actor_name": "RayTrainWorker", "is_err": True,
         "lines": ["INFO Reporting training result 3", "Traceback (most recent call last):",
                   "ValueError: depth must be >= 0"]})
    log({"pid": 8, "lines": ["ValueError: depth must be >= 0"]})  # another rank: shown once
    log.close()
    text = (tmp_path / "logs" / "workers.log").read_text()
    assert "(RayTrainWorker pid=7) INFO Reporting training result 3" in text
    err = capsys.readouterr().err
    assert err.count("ValueError: depth must be >= 0") == 1
    assert "Reporting training result" not in err and "Traceback" not in err
    assert "(pid=8) ValueError" in text


@pytest.mark.usefixtures("ray_session")
def test_the_quiet_console_turns_info_logs_off_and_back_on(tmp_path: Path) -> None:
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO)  # Optuna's default: a line per study and trial
    names = ("ray.tune", "ray.train", "optuna")
    with quiet_console(tmp_path / "workers.log"):
        assert not any(logging.getLogger(n).isEnabledFor(logging.INFO) for n in names)
        assert logging.getLogger("optuna").isEnabledFor(logging.WARNING)
    assert logging.getLogger("optuna").isEnabledFor(logging.INFO)  # its own level came back


def test_a_train_worker_search_prints_a_short_live_view(tmp_path: Path) -> None:
    import ray

    spec = {"name": "quiet", "task": "digits", "task_options": {"epochs": 2},
            "search_space": {"depth": {"grid": [1, -1]}, "width": 8, "lr": 0.1, "batch_size": 32},
            "num_samples": 1, "max_concurrent_trials": 1,
            "resources": {"num_workers": 2, "cpus_per_worker": 1}, "store": str(tmp_path / "store")}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    out = subprocess.run([sys.executable, "-m", "efficient_search.cli", "run", str(path)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = (out.stdout + out.stderr).splitlines()
    assert len(printed) <= 30, "\n".join(printed)
    assert any("finished: val_accuracy" in line for line in printed)
    assert any("FAILED; its error:" in line for line in printed)  # depth -1 raises in its workers
    chatty = ("Reporting training result", "Checkpoint successfully")
    assert not any(words in line for line in printed for words in chatty)
    chatter = (tmp_path / "store" / "_ray" / "quiet" / "logs" / "workers.log").read_text()
    assert "RayTrainWorker" in chatter or "TrainController" in chatter
