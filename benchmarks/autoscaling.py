"""Autoscaling benchmark: the same search on a fixed-size cluster and on an autoscaling one.

Both clusters are local Ray clusters of fake nodes (real raylets on this machine, started by Ray's
real autoscaler; see efficient_search.cluster). The fixed cluster has as many 1-CPU worker nodes as
the search runs trials at once; the autoscaling one starts with none and may grow to the same
size. The search trains digits CNNs (in-process trials of 1 CPU) whose epoch budgets follow a
successive-halving profile: nine 2-epoch trials, then three of 6 epochs, then the last survivor
18 epochs (quick: three of 3, one of 9). The budgets are part of each configuration, so both
clusters train exactly the same trials (asynchronous schedulers and adaptive searchers decide by
arrival order, which differs between the two clusters and would change the work). Parallelism
shrinks as the budgets grow, and a cluster sized for the peak sits partly idle later. For random
search (a grid in Tune's generator) and our searchers, evolutionary and Quick-Tune (the same
configurations as their points to evaluate, through Tune's ConcurrencyLimiter): makespan,
resource-seconds (CPU-seconds provisioned, until the autoscaler gave nodes back), utilisation
(reserved / provisioned), time to first trial, scale-up/down latency, pending time.

    python benchmarks/autoscaling.py            # random, evolution, quicktune: fixed vs autoscaling (~13 min)
    python benchmarks/autoscaling.py --quick    # random only, a shorter search (~3 min)
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

from efficient_search.cluster import ClusterOptions, ClusterReport, run_on_cluster

NAME = "autoscaling"
SEARCHERS: dict[str, dict[str, Any]] = {
    "random": {},
    "evolution": {"population_size": 16},
    "quicktune": {"pool_size": 32},
}


def budgets(rungs: int, eta: int = 3) -> list[int]:
    """Epoch budgets of a successive-halving search, shortest first: ``eta**(rungs-1)`` trials of
    1 epoch, a ``1/eta`` share of those with ``eta`` epochs, ..., one with ``eta**(rungs-1)``."""
    return [eta**k for k in range(rungs) for _ in range(eta ** (rungs - 1 - k))]


def workload(searcher: str, *, rungs: int, unit: int, slots: int, store: str, storage: str,
             seed: int) -> dict[str, Any]:
    """The search: one digits CNN per epoch budget of :func:`budgets` (times ``unit`` epochs),
    shortest first."""
    epochs = [unit * e for e in budgets(rungs)]
    fixed = {"depth": 4, "width": 64, "batch_size": 32, "lr": 0.05, "weight_decay": 1e-4}
    spec: dict[str, Any] = {
        "name": f"bench-{NAME}-{searcher}-{int(time.time())}",
        "task": "digits",
        "searcher": searcher,
        "scheduler": "fifo",
        "metric": "val_accuracy",
        "mode": "max",
        "max_concurrent_trials": slots,
        "resources": {"num_workers": 0, "cpus_per_worker": 1},
        "max_failures": 1,
        "store": store,
        "storage_path": storage,
        "seed": seed,
        "verbose": 0,
    }
    if searcher == "random":  # Tune's generator walks the grid in order
        spec["search_space"] = {**fixed, "epochs": {"grid": epochs}}
        spec["num_samples"] = 1
    else:  # the same trials, in the same order, as the searcher's points to evaluate
        spec["search_space"] = {**fixed, "epochs": {"choice": sorted(set(epochs))}}
        spec["searcher_options"] = {**SEARCHERS[searcher],
                                    "points_to_evaluate": [{"epochs": e} for e in epochs]}
        spec["num_samples"] = len(epochs)
    return spec


def run_pair(searcher: str, args: argparse.Namespace, settings: dict[str, int],
             storage: str) -> list[tuple[str, ClusterReport]]:
    """The same search, fixed then autoscaling."""
    reports = []
    for mode in ("fixed", "autoscale"):
        spec = workload(searcher, store=args.store, storage=storage, seed=args.seed, **settings)
        spec["name"] += f"-{mode}"
        if mode == "fixed":
            options = ClusterOptions(fixed=settings["slots"])
        else:
            options = ClusterOptions(min_workers=0, max_workers=settings["slots"],
                                     idle_timeout_s=args.idle_timeout)
        print(f"== {searcher} on a {mode} cluster ==", flush=True)
        report = run_on_cluster(spec, options, prewarm=args.prewarm if mode == "autoscale" else 0,
                                plot_path=f"{storage}/{spec['name']}.png")
        reports.append((mode, report))
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="random search only, shorter (~3 min)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--idle-timeout", type=float, default=4.0,
                        help="autoscaler idle timeout in seconds (default: %(default)s)")
    parser.add_argument("--prewarm", type=int, default=0,
                        help="trial-sized bundles requested before the autoscaling search starts")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    args = parser.parse_args()

    if args.quick:
        settings, searchers = {"rungs": 2, "unit": 3, "slots": 3}, ["random"]
    else:
        settings, searchers = {"rungs": 3, "unit": 2, "slots": 3}, list(SEARCHERS)
    print(f"autoscaling benchmark ({'quick' if args.quick else 'full'}): {settings}, searchers "
          f"{searchers}", flush=True)
    runs: list[dict[str, Any]] = []
    timelines: dict[tuple[str, str], ClusterReport] = {}
    with tempfile.TemporaryDirectory(prefix="es-bench-as-") as storage:
        for searcher in searchers:
            for mode, report in run_pair(searcher, args, settings, storage):
                timelines[(searcher, mode)] = report
                runs.append({"searcher": searcher, "mode": mode, "experiment": report.experiment,
                             **report.summary})
    table = pd.DataFrame(runs)
    columns = ["searcher", "mode", "makespan_s", "resource_s", "busy_resource_s", "utilisation",
               "time_to_first_trial_s", "scale_up_s_p50", "scale_down_s_p50", "pending_s_p50",
               "max_workers_seen"]
    print(table[columns].to_string(index=False, float_format="{:.3g}".format), flush=True)

    pairs = []
    for searcher in searchers:
        fixed = table[(table["searcher"] == searcher) & (table["mode"] == "fixed")].iloc[0]
        auto = table[(table["searcher"] == searcher) & (table["mode"] == "autoscale")].iloc[0]
        pairs.append({"searcher": searcher,
                      "makespan_ratio_vs_fixed": auto["makespan_s"] / fixed["makespan_s"],
                      "resource_seconds_ratio_vs_fixed": auto["resource_s"] / fixed["resource_s"],
                      # The same trials on both; work = CPU-seconds trials held (Tune's view).
                      "work_ratio_vs_fixed": auto["trial_cpu_s"] / fixed["trial_cpu_s"],
                      "resource_seconds_per_work_ratio_vs_fixed":
                          (auto["resource_s"] / auto["trial_cpu_s"])
                          / (fixed["resource_s"] / fixed["trial_cpu_s"])})
    ratios = pd.DataFrame(pairs)
    auto_rows = table[table["mode"] == "autoscale"]
    fixed_rows = table[table["mode"] == "fixed"]
    figures = {
        "utilisation": _median(auto_rows["utilisation"]),
        "utilisation_fixed": _median(fixed_rows["utilisation"]),
        "makespan_ratio_vs_fixed": _median(ratios["makespan_ratio_vs_fixed"]),
        "resource_seconds_ratio_vs_fixed": _median(ratios["resource_seconds_ratio_vs_fixed"]),
        "work_ratio_vs_fixed": _median(ratios["work_ratio_vs_fixed"]),
        "resource_seconds_per_work_ratio_vs_fixed": _median(
            ratios["resource_seconds_per_work_ratio_vs_fixed"]),
        "scale_up_s_p50": _median(auto_rows["scale_up_s_p50"]),
        "scale_down_s_p50": _median(auto_rows["scale_down_s_p50"]),
        "time_to_first_trial_s": _median(auto_rows["time_to_first_trial_s"]),
        "time_to_first_trial_s_fixed": _median(fixed_rows["time_to_first_trial_s"]),
        "pending_s_p50": _median(auto_rows["pending_s_p50"]),
    }
    for _, row in ratios.iterrows():
        figures[f"resource_seconds_ratio_{row['searcher']}"] = row["resource_seconds_ratio_vs_fixed"]
        figures[f"makespan_ratio_{row['searcher']}"] = row["makespan_ratio_vs_fixed"]
    print(ratios.to_string(index=False, float_format="{:.3g}".format), flush=True)
    record_rows(args.store, NAME, [("run", table), ("ratio", ratios), ("headline", pd.DataFrame([figures]))],
                args.quick, searcher="+".join(searchers), scheduler="fifo")
    plot(timelines, searchers, args.quick)
    print_result("autoscaling", figures, args.quick)


def _median(values: Any) -> float:
    clean = [float(v) for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


def plot(timelines: dict[tuple[str, str], ClusterReport], searchers: list[str], quick: bool) -> None:
    """Per searcher, fixed and autoscaling: worker nodes and running trials over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(searchers), 2, figsize=(12, 3.4 * len(searchers)), squeeze=False,
                             sharey=True)
    for row, searcher in enumerate(searchers):
        for col, mode in enumerate(("fixed", "autoscale")):
            report, axis = timelines[(searcher, mode)], axes[row][col]
            t = [s["t"] - report.start for s in report.samples]
            axis.step(t, [s["workers"] for s in report.samples], where="post", label="worker nodes")
            axis.step(t, [s["running_trials"] for s in report.samples], where="post",
                      label="running trials", linestyle="--")
            axis.step(t, [s["pending_trials"] for s in report.samples], where="post",
                      label="pending trials", linestyle=":")
            axis.axvline(report.end - report.start, color="grey", linewidth=0.8)
            summary = report.summary
            axis.set(title=f"{searcher}, {mode}: {summary['makespan_s']:.0f} s, "
                           f"{summary['resource_s']:.0f} CPU-s, utilisation {summary['utilisation']:.0%}",
                     xlabel="seconds since the search started", ylabel="count")
            axis.legend(fontsize=7, loc="upper right")
    save_figure(fig, NAME, quick)


if __name__ == "__main__":
    main()
