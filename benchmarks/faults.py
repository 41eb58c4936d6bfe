"""Fault-tolerance benchmark: seeded searches whose driver is SIGKILLed and resumed, audited.

For each searcher/scheduler pair and seed: one uninterrupted run of a digits search (trials in
the trial process, local Ray), then the same spec in a driver subprocess that is SIGKILLed each
time the store reaches a share of the uninterrupted run's rows, resumed with
``efficient-search resume`` until it finishes. The store is audited after each run: lost rows
(an iteration below a trial's last with no row, or a trial missing), duplicated rows (a key
written twice, or a trial too many), trials that did not end exactly once, and whether the
configurations equal the uninterrupted run's. Also: the wall time the faults cost.

    python benchmarks/faults.py            # 7 pairs x 2 seeds x 3 kills (~26 min on 2 cores)
    python benchmarks/faults.py --quick    # 1 pair x 1 seed x 2 kills (~2 min)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import pandas as pd
from _common import RESULTS_DIR, print_result, save_figure  # benchmarks/ is on sys.path when run
from _common import record as record_rows

import efficient_search as es
from efficient_search.local_ray import start_local_ray
from efficient_search.store import ParquetStore
from efficient_search.testing.faults import audit, kill_and_resume

NAME = "faults"
SPACE = {"depth": {"randint": [1, 3]}, "width": {"choice": [8, 16]}, "lr": {"loguniform": [0.01, 0.5]},
         "batch_size": 64}
#: (searcher, scheduler, concurrency, extra spec fields). Adaptive searchers run one trial at a
#: time: with several, their suggestions depend on which result lands first, killed or not.
PAIRS: list[tuple[str, str, int, dict[str, Any]]] = [
    ("evolution", "asha", 1, {"searcher_options": {"population_size": 3},
                              "scheduler_options": {"max_t": 3, "grace_period": 1}}),
    ("random", "fifo", 2, {}),
    ("optuna", "asha", 1, {"scheduler_options": {"max_t": 3}}),
    # Cost in epochs (not wall seconds): the surrogate's decisions must not depend on machine load.
    ("quicktune", "freeze_thaw", 1, {
        "searcher_options": {"pool_size": 32, "initial_random": 2, "cost_attr": "fidelity/epoch"},
        "scheduler_options": {"max_t": 3, "cost_attr": "fidelity/epoch"}}),
    ("random", "median", 2, {"scheduler_options": {"grace_period": 1, "min_samples_required": 2}}),
    ("random", "hyperband", 2, {"scheduler_options": {"max_t": 3}}),
    ("evolution", "layer_freezing", 1, {
        "search_space": {"depth": 2, "width": 8, "lr": {"loguniform": [0.01, 0.5]}, "batch_size": 32},
        "task_options": {"epochs": 1}, "searcher_options": {"population_size": 3},
        "scheduler_options": {"max_trainable_layers": 4, "epochs": 1, "reduction_factor": 2,
                              "promotion": "continue"}}),
]


def spec(name: str, store: str, searcher: str, scheduler: str, concurrency: int, seed: int,
         samples: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "task": "digits", "task_options": {"epochs": 3}, "search_space": SPACE,
            "searcher": searcher, "scheduler": scheduler, "num_samples": samples,
            "max_concurrent_trials": concurrency, "resources": {"num_workers": 0, "cpus_per_worker": 1},
            "store": store, "seed": seed, "verbose": 0, **extra}


def one_run(store: str, pair: tuple[str, str, int, dict[str, Any]], seed: int, kills: int,
            samples: int) -> dict[str, Any]:
    searcher, scheduler, concurrency, extra = pair
    name = f"{searcher}-{scheduler}-s{seed}"
    base = spec(name, store, searcher, scheduler, concurrency, seed, samples, extra)
    start = time.monotonic()
    es.run({**base, "name": f"{name}-ref"})
    reference_s = time.monotonic() - start
    total = len(ParquetStore(store).keys(f"{name}-ref"))
    points = sorted({max(1, round(total * (i + 1) / (kills + 1))) for i in range(kills)})
    outcome = kill_and_resume(base, points, log_dir=f"{store}/_logs/{name}")
    report = audit(outcome.store, name, num_samples=samples, reference=f"{name}-ref")
    row = {"pair": f"{searcher}+{scheduler}", "seed": seed, "kill_points": str(points),
           "cycles": len(outcome.kills), "drivers": outcome.drivers, "rows": total,
           "reference_s": reference_s, "faulted_s": outcome.seconds,
           "time_ratio": outcome.seconds / reference_s, **report}
    print(f"{row['pair']} seed {seed}: {row['cycles']} kills at {outcome.kills} rows, "
          f"lost {report['lost_rows']}, duplicated {report['duplicated_rows']}, unfinished "
          f"{report['unfinished']}, identical suggestions {report['identical_suggestions']}, "
          f"{outcome.seconds:.0f} s vs {reference_s:.0f} s", flush=True)
    return row


def plot(table: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(7.0, 0.75 * len(table)), 3.8))
    labels = [f"{r.pair.replace('+', chr(10) + '+')}\nseed {r.seed}" for r in table.itertuples()]
    x = range(len(table))
    ax.bar([i - 0.2 for i in x], table["reference_s"], width=0.4, label="uninterrupted")
    ax.bar([i + 0.2 for i in x], table["faulted_s"], width=0.4, label="killed and resumed")
    for i, r in enumerate(table.itertuples()):
        ok = r.lost_rows == 0 and r.duplicated_rows == 0 and r.identical_suggestions
        ax.annotate(f"{r.cycles} kills\n{'ok' if ok else 'MISMATCH'}", (i + 0.2, r.faulted_s),
                    ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.margins(y=0.15)
    ax.set_ylabel("wall time (s)")
    ax.set_title("Driver SIGKILL + resume: same trials, no lost or duplicated rows")
    ax.legend(fontsize=8)
    save_figure(fig, NAME, quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (~2 minutes)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--kills", type=int, default=3, help="driver kills per run")
    parser.add_argument("--samples", type=int, default=8, help="trials per search")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    args = parser.parse_args()
    pairs = PAIRS[:1] if args.quick else PAIRS
    seeds = 1 if args.quick else args.seeds
    kills = 2 if args.quick else args.kills
    samples = 5 if args.quick else args.samples
    start_local_ray(4, temp_dir=tempfile.mkdtemp(prefix="es-ray-", dir="/tmp"), log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="es-faults-") as scratch:
        rows = [one_run(scratch, pair, seed, kills, samples) for pair in pairs for seed in range(seeds)]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    record_rows(args.store, NAME, [("runs", table)], args.quick)
    plot(table, args.quick)
    figures = {
        "cycles": int(table["cycles"].sum()),
        "lost_rows": int(table["lost_rows"].sum()),
        "duplicated_rows": int(table["duplicated_rows"].sum()),
        "unfinished": int(table["unfinished"].sum()),
        "identical_suggestions": f"{int(table['identical_suggestions'].sum())}/{len(table)}",
        "time_ratio_p50": f"{statistics.median(table['time_ratio']):.2f}",
    }
    print_result("faults", figures, args.quick)


if __name__ == "__main__":
    main()
