"""A real Ray Tune run at high concurrency: what ``efficient_search.run`` adds per trial.

Part 3 of issue 18. The same search (a millisecond trainable: 3 results of ~2 ms of work each,
random search with one seed, ASHA) runs through ``efficient_search.run`` (our Parquet store
callback, our restorable ASHA and its state callback, our Tune settings) and through a plain
``tune.Tuner`` with Ray's defaults and Ray's own ``ASHAScheduler``, side by side on one local Ray
with fake CPUs (one logical CPU per trial, as many as trials run at once), alternating which
goes first. Figures: driver wall time and driver CPU time per trial, the extra that ours costs
(ms and %), and the store's rows, checked to be exactly one per reported result plus one end
row per trial. Two runs' wall times differ by more than the target on a loaded 2-core machine, so
the run through ``efficient_search.run`` also times every Tune hook of our own callbacks (the store
callback and the scheduler-state callback) in the driver, wall and CPU: ``hooks_ms_per_trial`` is
what they add per trial, read against the plain run's driver CPU per trial (``hooks_pct``).

``tune_overhead`` is imported by ``benchmarks/scale.py``; ``python benchmarks/_scale_tune.py``
runs it alone (``--quick``: 16 trials x 8 at once; full: 1,000 x 64).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from efficient_search.task_registry import Task, register_task
from efficient_search.train.session import TrialSession

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS_DIR, print_result, record  # noqa: E402

NAME = "scale_tune"
TASK_NAME = "bench-millisecond"
#: Results each trial reports, and the busy-wait per result.
RESULTS_PER_TRIAL = 3
WORK_S = 0.002
QUICK = {"trials": 16, "concurrency": 8, "repeats": 1}
FULL = {"trials": 1000, "concurrency": 64, "repeats": 1}
SEED = 0
ASHA = {"max_t": RESULTS_PER_TRIAL, "grace_period": 1, "reduction_factor": 2}


def spin(seconds: float) -> None:
    """Busy-wait ``seconds`` (the trial's work: CPU time, not sleep)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def loss(x: float, step: int) -> float:
    """The objective a trial reports at ``step`` (1-based): falls with steps, best at x = 0.3."""
    return (x - 0.3) ** 2 + 1.0 / step


def millisecond_loop(params: Mapping[str, Any], options: Mapping[str, Any], session: TrialSession,
                     seed: int) -> None:
    """The task's training loop: ``results`` reports of ``work_s`` seconds of work each."""
    for step in range(1, int(options["results"]) + 1):
        spin(float(options["work_s"]))
        session.report({"loss": loss(float(params["x"]), step)})


def _check_options(options: Mapping[str, Any]) -> None:
    if not 0 <= options["work_s"] <= 10:
        raise ValueError(f"`task_options.work_s` must lie in [0, 10] seconds, but got {options['work_s']!r}.")


TASK = register_task(Task(
    name=TASK_NAME, train_loop=millisecond_loop, metrics={"loss": "min"}, default_metric="loss",
    default_space="", options={"results": RESULTS_PER_TRIAL, "work_s": WORK_S},
    positive_options=("results",), check=_check_options,
))


def plain_trainable(config: dict[str, Any]) -> None:
    """The same work reported straight through ``tune.report`` (the plain-Tune side)."""
    from ray import tune

    for step in range(1, RESULTS_PER_TRIAL + 1):
        spin(WORK_S)
        tune.report({"loss": loss(float(config["x"]), step)})


def _space() -> dict[str, Any]:
    from ray import tune

    return {"x": tune.uniform(0.0, 1.0)}


def _reported(grid: Any) -> tuple[int, int, int]:
    """(trials, finished trials, results reported) of a Tune ``ResultGrid``."""
    finished = results = 0
    for result in grid:
        if result.error is None:
            finished += 1
        results += int((result.metrics or {}).get("training_iteration", 0) or 0)
    return len(grid), finished, results


#: Tune's callback hooks (``ray.tune.Callback``) that can run in the driver for every trial.
HOOKS = ("setup", "on_step_begin", "on_step_end", "on_trial_start", "on_trial_restore", "on_trial_save",
         "on_trial_result", "on_trial_complete", "on_trial_recover", "on_trial_error", "on_checkpoint",
         "on_experiment_end", "get_state", "set_state")


@contextlib.contextmanager
def timed_hooks(classes: Sequence[type]) -> Iterator[dict[str, float]]:
    """Time every hook of ``classes`` while inside (wall and process CPU seconds, summed over all
    calls); the class methods are wrapped for the duration and restored after."""
    spent = {"wall_s": 0.0, "cpu_s": 0.0, "calls": 0.0}
    saved: list[tuple[type, str, Any]] = []

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent["wall_s"] += time.perf_counter() - wall
                spent["cpu_s"] += time.process_time() - cpu
                spent["calls"] += 1
        return timed

    for cls in classes:
        for hook in HOOKS:
            if hook in vars(cls):  # only what the class itself defines: inherited no-ops cost nothing
                saved.append((cls, hook, vars(cls)[hook]))
                setattr(cls, hook, wrap(vars(cls)[hook]))
    try:
        yield spent
    finally:
        for cls, hook, method in saved:
            setattr(cls, hook, method)


def run_ours(trials: int, concurrency: int, store_root: str, name: str) -> dict[str, float]:
    """One search through ``efficient_search.run``; its figures and store row counts."""
    import efficient_search as es
    from efficient_search.store.rows import ERROR, RUNNING, TERMINATED

    spec = {
        "name": name, "task": TASK_NAME, "search_space": _space(), "searcher": "random",
        "scheduler": "asha", "scheduler_options": dict(ASHA), "num_samples": trials,
        "max_concurrent_trials": concurrency, "seed": SEED, "store": store_root, "verbose": 0,
        "resources": {"num_workers": 0, "cpus_per_worker": 1.0},
    }
    from efficient_search.schedulers.state import SchedulerStateCallback
    from efficient_search.store.callback import ParquetStoreCallback

    with timed_hooks([ParquetStoreCallback, SchedulerStateCallback]) as hooks:
        wall, cpu = time.perf_counter(), time.process_time()
        result = es.run(spec)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n, finished, reported = _reported(result.grid)
    rows = result.results()
    keys = rows[["trial_id", "iteration", "status"]]
    return {
        "wall_s": wall, "driver_cpu_s": cpu, "trials": n, "finished": finished, "results": reported,
        "hooks_wall_s": hooks["wall_s"], "hooks_cpu_s": hooks["cpu_s"], "hook_calls": hooks["calls"],
        "rows": len(rows), "result_rows": int((rows["status"] == RUNNING).sum()),
        "end_rows": int(rows["status"].isin([TERMINATED, ERROR]).sum()),
        "duplicate_rows": int(keys.duplicated().sum()),
        "row_trials": int(rows["trial_id"].nunique()),
    }


def run_plain(trials: int, concurrency: int, storage_path: str, name: str) -> dict[str, float]:
    """The same search with a plain ``tune.Tuner``: Ray's defaults, Ray's ASHA, no callbacks."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    wall, cpu = time.perf_counter(), time.process_time()
    tuner = tune.Tuner(
        tune.with_resources(plain_trainable, {"cpu": 1.0}),
        param_space=_space(),
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", num_samples=trials, max_concurrent_trials=concurrency,
            search_alg=BasicVariantGenerator(random_state=SEED),
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=ASHA["max_t"],
                                    grace_period=ASHA["grace_period"],
                                    reduction_factor=ASHA["reduction_factor"])),
        run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=0),
    )
    grid = tuner.fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n, finished, reported = _reported(grid)
    return {"wall_s": wall, "driver_cpu_s": cpu, "trials": n, "finished": finished, "results": reported}


def check_rows(figures: Mapping[str, float]) -> None:
    """Raise ``AssertionError`` unless the store holds exactly one row per reported result and
    one end row per trial, none twice."""
    problems = []
    if figures["result_rows"] != figures["results"]:
        problems.append(f"{figures['result_rows']} result rows for {figures['results']} reported results")
    if figures["end_rows"] != figures["trials"]:
        problems.append(f"{figures['end_rows']} end rows for {figures['trials']} trials")
    if figures["duplicate_rows"]:
        problems.append(f"{figures['duplicate_rows']} rows stored twice")
    if problems:
        raise AssertionError("store rows disagree with what Tune reported: " + "; ".join(problems))


def _start_ray(concurrency: int) -> bool:
    """A local Ray with ``concurrency`` logical CPUs (started here: True), or the running one if it
    has that many (False)."""
    import ray

    from efficient_search.local_ray import start_local_ray

    if ray.is_initialized():
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < concurrency:
            raise ValueError(f"The running Ray has {cpus:g} CPUs, fewer than `concurrency` {concurrency}. "
                             "Fix: ray.shutdown() first, or lower concurrency.")
        return False
    temp_dir = tempfile.mkdtemp(prefix="es-scale-tune-", dir="/tmp")  # short: Ray's socket paths
    start_local_ray(concurrency, temp_dir=temp_dir, address="local", log_to_driver=False)
    return True


def tune_overhead(quick: bool, store_root: str, *, trials: int | None = None,
                  concurrency: int | None = None, repeats: int | None = None,
                  ours_first: bool = False) -> dict[str, float]:
    """Run ours and plain Tune side by side (``repeats`` pairs, alternating which goes first,
    plain first unless ``ours_first``) and return the headline figures; per-run rows go to the
    store (experiment ``bench-scale_tune``).

    Quick: 16 trials x 8 at once; full: 1,000 x 64. Raises ``AssertionError`` when a run leaves a
    trial unfinished or the store's rows disagree with the results Tune saw.
    """
    size = {**(QUICK if quick else FULL),
            **{k: v for k, v in (("trials", trials), ("concurrency", concurrency), ("repeats", repeats))
               if v is not None}}
    for key, value in size.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{key}` must be a positive integer, but got {value!r}.")
    if not isinstance(store_root, (str, os.PathLike)) or not os.fspath(store_root):
        raise ValueError(f"`store_root` must be a non-empty path, but got {store_root!r}.")
    n, width = size["trials"], size["concurrency"]
    root = os.fspath(store_root)
    import ray
    from ray import cloudpickle

    # Trial processes get the task's loop by value: they may not find benchmarks/ (pytest loads
    # this file by path); a script's __main__ goes by value anyway.
    module = sys.modules[__name__]
    by_value = __name__ != "__main__"
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    started = _start_ray(width)
    tag = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    runs = []
    try:
        for rep in range(size["repeats"]):
            order = ("plain", "ours") if (rep % 2 == 0) != ours_first else ("ours", "plain")
            for side in order:
                name = f"scale-tune-{tag}-{side}-{rep}"
                print(f"[{NAME}] rep {rep}: {side}, {n} trials x {width} at once ...", flush=True)
                if side == "ours":
                    figures = run_ours(n, width, root, name)
                    check_rows(figures)
                else:
                    figures = run_plain(n, width, str(Path(root).resolve() / "_ray"), name)
                if figures["trials"] != n or figures["finished"] != n:
                    raise AssertionError(f"{side} finished {figures['finished']} of {n} trials "
                                         f"({figures['trials']} started)")
                print(f"[{NAME}]   {1000 * figures['wall_s'] / n:.1f} ms wall and "
                      f"{1000 * figures['driver_cpu_s'] / n:.2f} ms driver CPU per trial, "
                      f"{figures['results']:.0f} results", flush=True)
                runs.append({"side": side, "rep": rep, "first": side == order[0],
                             "trials_requested": n, "concurrency": width, **figures})
    finally:
        if started:
            ray.shutdown()
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)
    table = pd.DataFrame(runs)
    record(root, NAME, [("runs", table)], quick)
    return summarise(table, n, width)


def summarise(table: pd.DataFrame, trials: int, concurrency: int) -> dict[str, float]:
    """Headline figures from the per-run table: medians over repeats, per trial, and the spread."""
    def per_trial_ms(side: str, column: str) -> list[float]:
        return [1000 * v / trials for v in table.loc[table["side"] == side, column]]

    ours_wall, plain_wall = per_trial_ms("ours", "wall_s"), per_trial_ms("plain", "wall_s")
    ours_cpu, plain_cpu = per_trial_ms("ours", "driver_cpu_s"), per_trial_ms("plain", "driver_cpu_s")
    ours_ms, plain_ms = statistics.median(ours_wall), statistics.median(plain_wall)
    extra_ms = ours_ms - plain_ms
    ours = table[table["side"] == "ours"]
    return {
        "trials": float(trials),
        "concurrency": float(concurrency),
        "repeats": float(len(ours)),
        "ours_ms_per_trial": ours_ms,
        "plain_ms_per_trial": plain_ms,
        "extra_ms_per_trial": extra_ms,
        "overhead_pct": 100 * extra_ms / plain_ms if plain_ms > 0 else math.nan,
        "ours_ms_min": min(ours_wall), "ours_ms_max": max(ours_wall),
        "plain_ms_min": min(plain_wall), "plain_ms_max": max(plain_wall),
        "ours_driver_cpu_ms_per_trial": statistics.median(ours_cpu),
        "plain_driver_cpu_ms_per_trial": statistics.median(plain_cpu),
        "driver_cpu_overhead_pct": 100 * (statistics.median(ours_cpu) / statistics.median(plain_cpu) - 1),
        **hook_figures(ours, trials, statistics.median(plain_cpu)),
        "results": float(ours["results"].sum()),
        "result_rows": float(ours["result_rows"].sum()),
        "end_rows": float(ours["end_rows"].sum()),
        "rows_match": float(bool((ours["result_rows"] == ours["results"]).all()
                                 and (ours["end_rows"] == ours["trials"]).all())),
    }


def hook_figures(ours: pd.DataFrame, trials: int, plain_cpu_ms: float) -> dict[str, float]:
    """Our callbacks' own time per trial (median over runs), wall and CPU, and the CPU as a share of
    plain Tune's driver CPU per trial; nothing for runs made before hooks were timed."""
    if "hooks_wall_s" not in ours or ours["hooks_wall_s"].isna().all():
        return {}
    wall = statistics.median(1000 * ours["hooks_wall_s"] / trials)
    cpu = statistics.median(1000 * ours["hooks_cpu_s"] / trials)
    return {"hooks_ms_per_trial": wall, "hooks_cpu_ms_per_trial": cpu,
            "hook_calls_per_trial": statistics.median(ours["hook_calls"] / trials),
            "hooks_pct": 100 * cpu / plain_cpu_ms if plain_cpu_ms > 0 else math.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 trials x 8 at once (~1 min)")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"), help="Parquet store root")
    parser.add_argument("--repeats", type=int, default=None, help="pairs of runs (default 1)")
    parser.add_argument("--ours-first", action="store_true", help="start each pair with ours")
    args = parser.parse_args()
    figures = tune_overhead(args.quick, args.store, repeats=args.repeats, ours_first=args.ours_first)
    for key, value in figures.items():
        print(f"  {key}: {value:.4g}")
    if not args.quick:
        keep_run(figures, ours_first=args.ours_first)
    print_result(NAME, figures, args.quick)


SUMMARY = "scale_tune.csv"


def keep_run(figures: Mapping[str, float], *, ours_first: bool, folder: Path = RESULTS_DIR) -> Path:
    """Append a full run's figures to the committed ``results/scale_tune.csv`` (one row per run: each
    run is one pair, so the spread over runs is read from the rows)."""
    order = "ours first" if ours_first else "plain first"
    row = pd.DataFrame([{"date": time.strftime("%Y-%m-%d"), "order": order, **figures}])
    path = folder / SUMMARY
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.concat([pd.read_csv(path), row], ignore_index=True) if path.is_file() else row
    frame.to_csv(path, index=False, float_format="%.4g")
    print(f"wrote {path} ({len(frame)} runs)")
    return path


if __name__ == "__main__":
    main()
