"""Store benchmark: ingest result rows through the Tune callback path and load them back.

Side by side in one process, on the same rows: our ``ParquetStoreCallback`` + ``ParquetStore``
against Ray Tune's own per-trial result files (``JsonLoggerCallback``/``CSVLoggerCallback``,
loaded back by ``ExperimentAnalysis``, which ``ResultGrid`` uses).

    python benchmarks/store.py            # 100k rows (200 trials x 500 results)
    python benchmarks/store.py --quick    # 10k rows

Ends with ``RESULT store ingest_rows_per_s=... append_ms_per_result=... load_speedup_vs_ray=...``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import RESULTS_DIR, print_result, save_figure  # benchmarks/ is on sys.path when run

from efficient_search.ray_compat import storage_context, trial_dataframe
from efficient_search.store import ParquetStore, ParquetStoreCallback


def make_trials(root: Path, n_trials: int, name: str) -> list[Any]:
    from ray.tune.experiment import Trial

    trials = []
    for i in range(n_trials):
        storage = storage_context(storage_path=str(root), experiment_dir_name=name)
        trial = Trial("bench", config={"lr": 10 ** -(i % 4), "depth": i % 5, "opt": "sgd"},
                      trial_id=f"t{i:05d}", storage=storage, stub=True)
        trial.init_local_path()
        trials.append(trial)
    return trials


def make_results(n_trials: int, n_iters: int, seed: int) -> list[list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    start = time.time()
    return [
        [
            {"training_iteration": it, "timestamp": start + it, "time_total_s": 0.1 * it,
             "val_accuracy": float(v), "val_loss": float(1 - v), "fidelity/epoch": it,
             "cost/seconds": 0.1 * it, "done": False, "trial_id": f"t{t:05d}"}
            for it, v in enumerate(np.sort(rng.random(n_iters)), start=1)
        ]
        for t in range(n_trials)
    ]


def ingest(callbacks: list[Any], trials: list[Any], results: list[list[dict]]) -> float:
    """Feed results round-robin, as Tune would; returns seconds."""
    started = time.perf_counter()
    for cb in callbacks:
        cb.setup()
        for trial in trials:
            cb.on_trial_start(iteration=0, trials=trials, trial=trial)
    for it in range(len(results[0])):
        for trial, rows in zip(trials, results, strict=True):
            for cb in callbacks:
                cb.on_trial_result(iteration=it, trials=trials, trial=trial, result=rows[it])
    for cb in callbacks:
        for trial in trials:
            cb.on_trial_complete(iteration=0, trials=trials, trial=trial)
        cb.on_experiment_end(trials=trials)
    return time.perf_counter() - started


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k rows instead of 100k")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"),
                        help="where the benchmark's own rows go")
    args = parser.parse_args()
    n_trials, n_iters = (50, 200) if args.quick else (200, 500)
    n_rows = n_trials * n_iters

    import ray
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    # Ray's trial objects need a running Ray for their folders; nothing is scheduled on it.
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = make_results(n_trials, n_iters, seed=0)
        print(f"store benchmark: {n_rows} rows ({n_trials} trials x {n_iters} results)", flush=True)

        ours = ParquetStoreCallback(root / "parquet", experiment="bench", searcher="random")
        trials = make_trials(root, n_trials, "ours")
        ours_s = ingest([ours], trials, results)
        print(f"  ours: ingest {ours_s:.2f} s", flush=True)

        ray_trials = make_trials(root, n_trials, "ray-files")
        ray_s = ingest([JsonLoggerCallback(), CSVLoggerCallback()], ray_trials, results)
        print(f"  ray json+csv: ingest {ray_s:.2f} s", flush=True)

        store = ParquetStore(root / "parquet")
        ours_load, frame = median_seconds(lambda: store.results("bench"), args.repeats)
        running = frame[frame["status"] == "RUNNING"]
        if len(running) != n_rows:
            raise SystemExit(f"store lost rows: {len(running)} of {n_rows}")
        print(f"  ours: load {ours_load * 1e3:.1f} ms (median of {args.repeats})", flush=True)

        # Tune syncs the driver's staging folder to storage at experiment end; do the same.
        for trial in ray_trials:
            if trial.local_path != trial.storage.trial_fs_path:
                shutil.copytree(trial.local_path, trial.storage.trial_fs_path, dirs_exist_ok=True)

        def ray_load() -> pd.DataFrame:
            # ExperimentAnalysis's own per-trial reader (what ResultGrid's dataframes use); the
            # analysis object itself would also want an experiment snapshot file.
            frames = [trial_dataframe(t) for t in ray_trials]
            return pd.concat(frames, ignore_index=True)

        ray_load_s, ray_frame = median_seconds(ray_load, args.repeats)
        if len(ray_frame) != n_rows:
            raise SystemExit(f"ray files hold {len(ray_frame)} of {n_rows} rows")
        print(f"  ray ExperimentAnalysis: load {ray_load_s * 1e3:.1f} ms", flush=True)

    figures = {
        "rows": n_rows,
        "ingest_rows_per_s": n_rows / ours_s,
        "append_ms_per_result": ours_s / n_rows * 1e3,
        "ray_ingest_rows_per_s": n_rows / ray_s,
        "load_s": ours_load,
        "ray_load_s": ray_load_s,
        "load_speedup_vs_ray": ray_load_s / ours_load,
    }
    record(args.store, figures, quick=args.quick)
    plot(figures, quick=args.quick)
    print_result("store", {k: v for k, v in figures.items() if k in
                           ("ingest_rows_per_s", "append_ms_per_result", "load_speedup_vs_ray", "rows")},
                 args.quick)


def record(store_root: str, figures: dict[str, float], quick: bool) -> None:
    """Write the figures to the Parquet store as one row of experiment ``bench-store``."""
    callback = ParquetStoreCallback(store_root, experiment="bench-store", searcher="-",
                                    scheduler="-", hardware=platform.platform())
    callback.setup()
    trial_id = f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    callback.add(trial_id, {"quick": quick, "rows": figures["rows"]},
                 {"training_iteration": 1, "timestamp": time.time(), **figures}, "TERMINATED")
    callback.flush()


def plot(figures: dict[str, float], quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    names = ["efficient-search\nParquet", "Ray Tune\nresult files"]
    left.bar(names, [figures["load_s"], figures["ray_load_s"]], color=["C0", "C7"])
    left.set(ylabel="seconds", title=f"load {int(figures['rows']):,} rows "
             f"({figures['load_speedup_vs_ray']:.0f}x faster)")
    per_result = [figures["append_ms_per_result"], 1e3 / figures["ray_ingest_rows_per_s"]]
    right.bar(names, per_result, color=["C0", "C7"])
    right.set(ylabel="ms per reported result", title="callback cost per result")
    save_figure(fig, "store", quick)


if __name__ == "__main__":
    main()
