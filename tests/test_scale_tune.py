"""benchmarks/_scale_tune.py: ours and plain Tune run side by side at a small size; every trial
finishes, the store holds exactly one row per reported result, and the figures are finite. Also
the fixes this benchmark needed: a task registered by the driver's code runs in trial processes
that never imported it, and such a trial process imports no torch."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from benchmark_modules import load_benchmark_module

from efficient_search.store import ParquetStore

scale_tune = load_benchmark_module("_scale_tune")


def test_ours_and_plain_tune_finish_every_trial_and_the_store_has_one_row_per_result(tmp_path) -> None:
    figures = scale_tune.tune_overhead(True, str(tmp_path), trials=8, concurrency=4)

    assert figures["trials"] == 8 and figures["concurrency"] == 4 and figures["repeats"] == 1
    # ASHA (max_t 3, grace 1, factor 2) lets every trial report at least once, some three times.
    assert 8 <= figures["results"] <= 24
    assert figures["result_rows"] == figures["results"]
    assert figures["end_rows"] == 8
    assert figures["rows_match"] == 1.0
    for key in ("ours_ms_per_trial", "plain_ms_per_trial", "extra_ms_per_trial", "overhead_pct",
                "ours_driver_cpu_ms_per_trial", "plain_driver_cpu_ms_per_trial"):
        assert math.isfinite(figures[key]), key
    assert figures["ours_ms_per_trial"] > 0 and figures["plain_ms_per_trial"] > 0
    # Our callbacks' hooks were timed: at least one call per reported result (the store's
    # on_trial_result), their time is positive and a finite share of plain Tune's driver CPU.
    assert figures["hook_calls_per_trial"] >= figures["results"] / 8
    assert figures["hooks_ms_per_trial"] > 0 and figures["hooks_cpu_ms_per_trial"] >= 0
    assert math.isfinite(figures["hooks_pct"])

    runs = ParquetStore(str(tmp_path)).results("bench-scale_tune")
    assert sorted(runs["config.side"]) == ["ours", "plain"]
    assert (runs["metric.finished"] == 8).all()  # both runs finished all trials
    ours = runs[runs["config.side"] == "ours"].iloc[0]
    assert ours["metric.result_rows"] == ours["metric.results"] >= 8
    assert ours["metric.duplicate_rows"] == 0 and ours["metric.row_trials"] == 8


def test_timed_hooks_counts_only_the_class_own_hooks_and_restores_them() -> None:
    from ray.tune import Callback

    class Mine(Callback):
        def on_trial_result(self, **info) -> None:
            scale_tune.spin(0.001)

    original = Mine.on_trial_result
    with scale_tune.timed_hooks([Mine]) as spent:
        for _ in range(3):
            Mine().on_trial_result(iteration=1)
        Mine().on_step_end(iteration=1, trials=[])  # inherited from Callback: not timed
    assert spent["calls"] == 3 and spent["wall_s"] >= 0.003
    assert Mine.on_trial_result is original and "on_step_end" not in vars(Mine)


def test_check_rows_names_a_mismatch() -> None:
    good = {"results": 5, "result_rows": 5, "trials": 2, "end_rows": 2, "duplicate_rows": 0}
    scale_tune.check_rows(good)
    with pytest.raises(AssertionError, match="4 result rows for 5 reported results"):
        scale_tune.check_rows({**good, "result_rows": 4})
    with pytest.raises(AssertionError, match="3 end rows for 2 trials"):
        scale_tune.check_rows({**good, "end_rows": 3})


@pytest.mark.parametrize("bad", [{"trials": 0}, {"concurrency": -1}, {"repeats": 1.5}, {"trials": True}])
def test_bad_sizes_raise_before_ray_starts(tmp_path, bad) -> None:
    with pytest.raises(ValueError, match=f"`{next(iter(bad))}` must be a positive integer"):
        scale_tune.tune_overhead(True, str(tmp_path), **bad)


def test_summary_takes_medians_per_trial() -> None:
    table = pd.DataFrame([
        {"side": "plain", "wall_s": 10.0, "driver_cpu_s": 1.0, "results": 30, "result_rows": 0,
         "end_rows": 0, "trials": 10},
        {"side": "ours", "wall_s": 10.5, "driver_cpu_s": 1.1, "results": 30, "result_rows": 30,
         "end_rows": 10, "trials": 10},
    ])
    figures = scale_tune.summarise(table, 10, 4)
    assert figures["plain_ms_per_trial"] == pytest.approx(1000)
    assert figures["extra_ms_per_trial"] == pytest.approx(50)
    assert figures["overhead_pct"] == pytest.approx(5)
    assert figures["driver_cpu_overhead_pct"] == pytest.approx(10)
    assert figures["rows_match"] == 1.0


TRIAL_PROCESS = textwrap.dedent("""
    import pickle, sys
    pickle.loads(bytes.fromhex(sys.stdin.read()))  # the trainable carries its task
    from efficient_search.task_registry import TASKS
    assert "bench-millisecond" not in TASKS, TASKS
    print("torch" in sys.modules)
""")


def test_a_trial_process_unpickles_a_driver_registered_task_without_torch(tmp_path) -> None:
    """The trainable of a task registered by the driver (not importable by trial processes)
    unpickles in a fresh interpreter that knows no such task, without importing torch."""
    from ray import cloudpickle

    from efficient_search.spec import Resources
    from efficient_search.trial import make_trainable

    trainable = make_trainable(task=scale_tune.TASK_NAME, options=scale_tune.TASK.options,
                               resources=Resources(num_workers=0), seed=0,
                               storage_path=str(tmp_path), experiment="x")
    cloudpickle.register_pickle_by_value(scale_tune)
    try:
        data = cloudpickle.dumps(trainable).hex()
    finally:
        cloudpickle.unregister_pickle_by_value(scale_tune)
    done = subprocess.run([sys.executable, "-c", TRIAL_PROCESS], input=data, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"  # no torch in the trial process


class _EndedTrial:
    """What the store callback reads of a Tune trial."""

    def __init__(self, index: int) -> None:
        self.trial_id = f"t{index:05d}"
        self.config = {"x": index / 1000}
        self.last_result: dict[str, float] | None = None


def test_a_thousand_short_trials_do_not_write_a_file_each(tmp_path) -> None:
    """Trial ends flush at the callback's interval, not one fsynced file (and merges) per trial;
    a snapshot (``get_state``) and the experiment's end still land every row, once."""
    from efficient_search.store import ParquetStoreCallback

    callback = ParquetStoreCallback(str(tmp_path), experiment="many", flush_interval_s=3600)
    callback.setup()
    folder = tmp_path / "experiment=many"
    for i in range(1000):
        trial = _EndedTrial(i)
        for step in (1, 2, 3):
            trial.last_result = {"training_iteration": step, "loss": 1 / step, "timestamp": float(i)}
            callback.on_trial_result(step, [], trial, trial.last_result)  # type: ignore[arg-type]
        callback.on_trial_complete(3, [], trial)  # type: ignore[arg-type]
        if i == 499:
            callback.get_state()  # Tune saves the experiment: everything so far lands
            assert len(ParquetStore(str(tmp_path)).results("many")) == 500 * 4
    assert len(list(folder.glob("*.parquet"))) == 1  # nothing more until the next flush
    callback.on_experiment_end(trials=[])
    rows = ParquetStore(str(tmp_path)).results("many")
    assert len(rows) == 1000 * 4
    assert (rows["status"] == "RUNNING").sum() == 3000 and (rows["status"] == "TERMINATED").sum() == 1000
    assert not rows.duplicated(["trial_id", "iteration", "status"]).any()
    assert len(list(folder.glob("*.parquet"))) == 2
