"""Search at cluster scale on a simulated clock: every HPO-suite method on N = 1, 8, 32, 128 workers.

Each method of ``hpo_suite.py`` (see ``_hpo_methods.py``: ours, the library peers, the ablation) searches
instances of LCBench (YAHPO Gym) and held-out data sets of the Quick-Tune meta-dataset through
``ReplaySimulation`` / ``StepwiseReplay`` on a simulated cluster
(``efficient_search.testing.replay_cluster``): N trials train at once, each result arrives when its
simulated cost says so (results interleave as on a real cluster), every start or resume of a trial
waits a start-up latency, step times carry straggler noise, and workers are preempted at random (the
trial restarts from its last per-step checkpoint after a recovery delay). The same Ray
Searcher/TrialScheduler objects face it through the calls Tune's controller makes (one pending trial at
a time, ``choose_trial_to_run`` whenever a worker is free).

- **Budget**: every search gets the same compute, ``--budget-runs`` full runs of the instance (median
  seconds of one full-fidelity run), so N workers get ``1/N`` of it as simulated wall-clock. Regret (as
  in ``hpo_suite.py``) is read at 10/25/50/100 % of that wall-clock budget.
- **Speed-up**: each method's target is the regret it reaches with one worker at 25 % of its budget;
  speed-up = one worker's time to reach it / N workers' time (ideal = N). A run that does not reach it
  within its budget counts as 0 (``reached`` gives the share that did). Median and quartiles over the
  (instance, seed) cells where one worker needed more than its first result to get there
  (``speedup_cells``; where the first result already did, no number of workers can be faster).
- **Utilisation**: training seconds / (N x makespan); start-up, recovery and idle workers are not training.
- **Decisions at scale** (``--latency-trials``): on the first LCBench instance with 128 workers and no time
  budget, each method runs until that many trials have started (10,000 in full mode); then the wall time
  of its next ``--latency-calls`` decision calls (``suggest``, ``on_trial_result``,
  ``choose_trial_to_run``; ``ask``/``report``/``end`` for the native loops) is taken (median, p95, max),
  and the memory the process holds then (resident set after minus before the search). Each method runs in
  a fresh process; one still short of the trial count after ``--latency-wall`` seconds is measured where
  it got to (``trials`` says where).
- **A real Tune run** (``_scale_tune.py``): 1,000 millisecond trials through ``efficient_search.run`` with
  64 in flight, against plain Ray Tune: the controller time our callbacks, store and state add per trial.

    python benchmarks/scale.py --quick     # LCBench, 2 instances x 2 seeds, N = 1, 8, 32 (< 3 min)
    python benchmarks/scale.py             # LCBench + Quick-Tune data, 4 instances each x 5 seeds, N = 1..128

A full run writes, per blackbox, ``results/scale_<blackbox>.csv`` (one row per instance x seed x method
x N), ``results/scale_<blackbox>_summary.csv`` (per method x N) and the plot ``results/scale_<blackbox>.png``,
and ``results/scale_latency.csv``; every run records its rows to the store (experiment ``bench-scale``).
Parts run alone with ``--parts`` (e.g. ``--parts scaling --blackboxes quicktune``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import _common  # benchmarks/ is on sys.path when run
import numpy as np
import pandas as pd
from _hpo_methods import OURS
from _hpo_metrics import CURVE, KEYS, standard_error
from _hpo_run import Suite, partial_folder
from _scale_runs import Noise, instance_task, latency_task

from efficient_search.durable import atomic_write

NAME = "scale"
BLACKBOXES = ("lcbench", "quicktune")
QUICK: dict[str, Any] = {"blackboxes": "lcbench", "instances": 2, "seeds": 2, "workers": "1,8,32",
                         "budget_runs": 6.0, "latency_trials": 300, "latency_calls": 300,
                         "latency_wall": 20.0,
                         "methods": "quicktune+freeze_thaw,random+asha,tpe+asha,synetune_asha"}
FULL: dict[str, Any] = {"blackboxes": "lcbench,quicktune", "instances": 4, "seeds": 5,
                        "workers": "1,8,32,128",
                        "budget_runs": 10.0, "latency_trials": 10_000, "latency_calls": 2000,
                        "latency_wall": 240.0, "methods": ""}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blackboxes", default="", help="comma-separated of lcbench, quicktune")
    parser.add_argument("--instances", type=int, default=0, help="instances per blackbox, evenly spread")
    parser.add_argument("--seeds", type=int, default=0, help="seeds 0..N-1")
    parser.add_argument("--workers", default="", help="comma-separated worker counts, the first one alone "
                                                       "sets the speed-up's reference (default 1,8,32,128)")
    parser.add_argument("--budget-runs", type=float, default=0.0,
                        help="compute per search in full runs (default 6 quick, 10 full)")
    parser.add_argument("--methods", default=None, help="comma-separated subset (default: all full, 4 quick)")
    parser.add_argument("--startup-epochs", type=float, default=0.2,
                        help="start-up (and recovery) latency per trial start or resume, in median epochs")
    parser.add_argument("--jitter", type=float, default=0.1, help="log-normal sigma of step times")
    parser.add_argument("--stragglers", type=float, default=0.02, help="share of steps that straggle")
    parser.add_argument("--slowdown", type=float, default=4.0, help="a straggling step's slowdown")
    parser.add_argument("--preemptions-per-hour", type=float, default=0.5,
                        help="per busy worker and simulated hour")
    parser.add_argument("--latency-trials", type=int, default=0, help="trials started before timing")
    parser.add_argument("--latency-calls", type=int, default=0, help="decision calls timed")
    parser.add_argument("--latency-wall", type=float, default=0.0, help="wall seconds per latency run")
    parser.add_argument("--latency-workers", type=int, default=128)
    parser.add_argument("--parts", default="scaling,latency,tune", help="comma-separated parts to run")
    parser.add_argument("--data-path", default=None, help="YAHPO data folder (as hpo_suite.py)")
    parser.add_argument("--meta-steps", type=int, default=0,
                        help="LCBench meta-training steps (default: hpo_suite.py's)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--quick", action="store_true", help="smoke run (< 3 minutes on 2 cores)")
    parser.add_argument("--store", default=str(_common.RESULTS_DIR / "store"))
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) in (None, "", 0, 0.0):
            setattr(args, name, value)
    return check(args)


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def check(args: argparse.Namespace) -> argparse.Namespace:
    """ValueError naming the argument for bad input."""
    unknown = [b for b in names(args.blackboxes) if b not in BLACKBOXES]
    if unknown:
        raise ValueError(f"`--blackboxes` names {unknown}; known: {', '.join(BLACKBOXES)}.")
    workers = names(args.workers)
    if not all(w.isdigit() and int(w) >= 1 for w in workers) or workers != sorted(workers, key=int):
        raise ValueError(f"`--workers` must be increasing integers >= 1, but got {args.workers!r}. "
                         "Fix: e.g. --workers 1,8,32,128.")
    parts = names(args.parts)
    if not parts or any(p not in ("scaling", "latency", "tune") for p in parts):
        raise ValueError(f"`--parts` must name some of scaling, latency, tune, but got {args.parts!r}.")
    for name in ("instances", "seeds", "jobs", "latency_trials", "latency_calls", "latency_workers"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 1, but got {getattr(args, name)}.")
    return args


def spread(items: list[str], count: int) -> list[str]:
    """``count`` items evenly spread over ``items`` (all of them if fewer)."""
    if count >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def build_suite(blackbox: str, args: argparse.Namespace) -> Suite:
    """The hpo_suite (LCBench) or quicktune_replay (Quick-Tune meta-dataset) suite of this run."""
    common = ["--jobs", "1", "--methods", args.methods, *(["--quick"] if args.quick else [])]
    if blackbox == "lcbench":
        import hpo_suite

        extra = ["--data-path", args.data_path] if args.data_path else []
        extra += ["--meta-steps", str(args.meta_steps)] if args.meta_steps else []
        suite = hpo_suite.build_suite(hpo_suite.parse_args([*common, *extra, "--seeds", str(args.seeds)]),
                                      announce=False)
    else:
        import quicktune_replay

        seeds = ",".join(str(s) for s in range(args.seeds))
        suite = quicktune_replay.build_suite(
            quicktune_replay.parse_args([*common, "--datasets", "all", "--seeds", seeds]), announce=False)
    return dataclasses.replace(suite, label=blackbox, instances=spread(suite.instances, args.instances))


_SUITES: dict[str, Suite] = {}


def suite_of(blackbox: str, args: argparse.Namespace) -> Suite:
    if blackbox not in _SUITES:
        import torch

        torch.set_num_threads(1)  # one core per worker process, in every path
        _SUITES[blackbox] = build_suite(blackbox, args)
    return _SUITES[blackbox]


def noise_of(args: argparse.Namespace) -> Noise:
    return Noise(args.startup_epochs, args.jitter, args.stragglers, args.slowdown, args.preemptions_per_hour)


def scaling_task(args: argparse.Namespace, folder: Path | None, task: tuple[str, str]) -> dict[str, Any]:
    blackbox, instance = task
    path = folder / f"{blackbox}-{instance}.json" if folder is not None else None
    if path is not None and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    rows, curves = instance_task(suite_of(blackbox, args), instance, [int(w) for w in names(args.workers)],
                                 args.budget_runs, noise_of(args))
    part = {"rows": rows, "curves": curves}
    if path is not None:
        atomic_write(path, json.dumps(part))
    return part


def latency_of(args: argparse.Namespace, method: str) -> dict[str, Any]:
    suite = suite_of("lcbench", args)
    return latency_task(suite, next(m for m in suite.methods if m.name == method), args)


def pool(args: argparse.Namespace, tasks: int, fresh: bool = False) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(min(args.jobs, tasks), mp_context=multiprocessing.get_context("spawn"),
                               max_tasks_per_child=1 if fresh else None)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per blackbox x method x workers: regret mean ± s.e., rank at 50 %, speed-up median and quartiles,
    reached share, utilisation, trials and preemptions."""
    ranked = frame.groupby(["blackbox", "instance", "seed", "workers"])["regret_50"].rank()
    rows = []
    for (blackbox, method, workers), part in frame.groupby(["blackbox", "method", "workers"], sort=False):
        row: dict[str, Any] = {"blackbox": blackbox, "method": method, "workers": workers,
                               "ours": part["ours"].iloc[0], "runs": len(part)}
        for column in KEYS:
            row[f"{column}_mean"], row[f"{column}_se"] = part[column].mean(), standard_error(part[column])
        row["rank_50"] = ranked.loc[part.index].mean()
        telling = part["speedup"].dropna()
        row["speedup_median"] = telling.median()
        row["speedup_q25"], row["speedup_q75"] = telling.quantile([0.25, 0.75])
        row["speedup_cells"] = len(telling)
        row["reached"] = part.loc[telling.index, "reached"].mean()
        for column in ("utilisation", "trials", "preemptions", "lost_share", "wall_s"):
            row[column] = part[column].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def plot(summary: pd.DataFrame, curves: dict[str, list[list[float]]], blackbox: str,
         workers: list[int]) -> Any:
    """Mean regret over wall-clock per worker count, and median speed-up against N (ideal dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(workers) + 1, figsize=(4.0 * (len(workers) + 1), 4.0))
    palette = plt.get_cmap("tab20").colors
    methods = list(dict.fromkeys(summary.loc[summary["blackbox"] == blackbox, "method"]))
    for axis, n in zip(axes[:-1], workers, strict=False):
        for index, method in enumerate(methods):
            runs = curves.get(f"{blackbox}|{method}|{n}")
            if runs:
                axis.plot(CURVE * 100, np.mean(runs, axis=0), color=palette[index % len(palette)],
                          linewidth=2.5 if method == OURS else 1.2, linestyle="-" if index % 2 == 0 else "--",
                          label=method)
        axis.set_title(f"{blackbox}, N = {n}")
        axis.set_xlabel(f"wall-clock (% of its budget = 1/{n} of the compute)")
        axis.set_yscale("symlog", linthresh=1e-3)
    axes[0].set_ylabel("normalised regret (mean)")
    right = axes[-1]
    for index, method in enumerate(methods):
        part = summary[(summary["blackbox"] == blackbox) & (summary["method"] == method)]
        right.plot(part["workers"], part["speedup_median"], marker="o", color=palette[index % len(palette)],
                   linewidth=2.5 if method == OURS else 1.2, label=method)
    right.plot(workers, workers, color="grey", linestyle=":", label="ideal")
    right.set_xscale("log", base=2)
    right.set_yscale("symlog", linthresh=1.0)
    right.set_ylim(bottom=0.0)
    right.set_xlabel("workers N")
    right.set_ylabel("time-to-target speed-up (median)")
    right.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def report_scaling(frame: pd.DataFrame, curves: dict[str, list[list[float]]], args: argparse.Namespace,
                   figures: dict[str, Any]) -> pd.DataFrame:
    summary = summarise(frame)
    print(f"\n{'blackbox':10s} {'method':30s} {'N':>4s} {'regret@50%':>16s} {'rank@50':>7s} "
          f"{'speed-up (q25-q75)':>22s} {'reached':>7s} {'util':>6s} {'trials':>7s}")
    for row in summary.itertuples():
        print(f"{row.blackbox:10s} {row.method:30s} {row.workers:4.0f} {row.regret_50_mean:8.4f}±"
              f"{row.regret_50_se:<7.4f} {row.rank_50:7.2f} {row.speedup_median:7.1f} "
              f"({row.speedup_q25:5.1f}-{row.speedup_q75:5.1f}) {row.reached:7.2f} {row.utilisation:6.3f} "
              f"{row.trials:7.0f}")
    workers = [int(w) for w in names(args.workers)]
    for blackbox in frame["blackbox"].unique():
        _common.save_figure(plot(summary, curves, blackbox, workers), f"{NAME}_{blackbox}", args.quick)
    probe = 32 if 32 in workers else workers[-1]
    lc = summary[(summary["blackbox"] == summary["blackbox"].iloc[0]) & (summary["workers"] == probe)]
    lc = lc.set_index("method")
    peers = lc[lc["ours"] == 0]
    best = str(peers["regret_50_mean"].idxmin())
    figures.update({f"speedup_{probe}": lc.loc[OURS, "speedup_median"],
                    f"utilisation_{probe}": lc.loc[OURS, "utilisation"],
                    f"regret_50_at_{probe}": lc.loc[OURS, "regret_50_mean"],
                    f"best_peer_at_{probe}": best,
                    f"best_peer_regret_50_at_{probe}": lc.loc[best, "regret_50_mean"]})
    return summary


def run_scaling(args: argparse.Namespace, figures: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    folder = None if args.quick else partial_folder(args, NAME)
    tasks = [(b, i) for b in names(args.blackboxes) for i in suite_of(b, args).instances]
    print(f"scaling: {len(tasks)} instances x {args.seeds} seeds x workers {args.workers}, "
          f"{args.budget_runs:g} full runs of compute per search; cluster {noise_of(args)}", flush=True)
    with pool(args, len(tasks)) as workers:
        parts = list(workers.map(functools.partial(scaling_task, args, folder), tasks))
    frame = pd.DataFrame([row for part in parts for row in part["rows"]])
    curves: dict[str, list[list[float]]] = {}
    for (blackbox, _), part in zip(tasks, parts, strict=True):
        for name, runs in part["curves"].items():
            curves.setdefault(f"{blackbox}|{name}", []).extend(runs)
    summary = report_scaling(frame, curves, args, figures)
    if folder is not None:
        for blackbox in frame["blackbox"].unique():
            write(frame[frame["blackbox"] == blackbox], f"{NAME}_{blackbox}.csv")
            write(summary[summary["blackbox"] == blackbox], f"{NAME}_{blackbox}_summary.csv")
        shutil.rmtree(folder, ignore_errors=True)
    return [("runs", frame), ("summary", summary)]


def run_latency(args: argparse.Namespace, figures: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    methods = [m.name for m in suite_of("lcbench", args).methods]
    print(f"latency: {len(methods)} methods, {args.latency_workers} workers, timing after "
          f"{args.latency_trials} trials ({args.latency_calls} calls, at most {args.latency_wall:g} s each)",
          flush=True)
    with pool(args, len(methods), fresh=True) as workers:
        frame = pd.DataFrame(list(workers.map(functools.partial(latency_of, args), methods)))
    if not args.quick:
        write(frame, f"{NAME}_latency.csv")
    ours = frame.set_index("method").loc[OURS]
    figures.update({f"decide_ms_p95_{args.latency_workers}": ours["decide_ms_p95"],
                    "latency_trials_reached": ours["trials"], "memory_mb": ours["memory_mb"]})
    return [("latency", frame)]


def run_tune(args: argparse.Namespace, figures: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    from _scale_tune import tune_overhead

    measured = tune_overhead(args.quick, args.store)
    figures.update({k: v for k, v in measured.items() if isinstance(v, (int, float))})
    return [("tune", pd.DataFrame([measured]))]


def write(frame: pd.DataFrame, file: str) -> None:
    path = _common.RESULTS_DIR / file
    frame.to_csv(path, index=False, float_format="%.4g")
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    args = parse_args(argv)
    print(f"mode={'quick' if args.quick else 'full'}; parts {args.parts}; methods {args.methods or 'all'}",
          flush=True)
    figures: dict[str, Any] = {"mode": "quick" if args.quick else "full"}
    tables: list[tuple[str, pd.DataFrame]] = []
    parts = names(args.parts)
    for part, runner in (("scaling", run_scaling), ("latency", run_latency), ("tune", run_tune)):
        if part in parts:
            tables += runner(args, figures)
    _common.record(args.store, NAME, tables, args.quick)
    _common.print_result(NAME, figures, args.quick)
    print(f"done in {time.perf_counter() - started:.0f} s")
    return figures


if __name__ == "__main__":
    main()
