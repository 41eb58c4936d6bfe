"""Autoscaling benchmark: the same search on a fixed-size cluster and on an autoscaling one.

Both clusters are local Ray clusters of fake nodes (real raylets on this machine, started by Ray's
real autoscaler; see efficient_search.cluster). The fixed cluster has as many 1-CPU worker nodes as
the search runs trials at once (3); the autoscaling one starts with none and may grow to the same
size. Each searcher really searches the digits CNN's depth, width, learning rate and weight decay
with its usual scheduler, which sets the epochs: random search and evolution with ASHA (grace 2
epochs, reduction factor 3, at most 18), Quick-Tune with freeze-thaw (2-epoch steps, at most 18
epochs a trial, 54 epochs in all, cost counted in epochs so that machine load does not steer it).
Most trials stop early, so parallelism shrinks and a cluster sized for the peak sits partly idle.

Fairness. A searcher runs with the same seed, space and budget rules on both clusters, so its
first suggestions match; but asynchronous schedulers and adaptive searchers decide by arrival
order, which the cluster changes (a node that joins later delays a trial), so later trials and
the amount trained may differ between the two runs. Forcing identical trials (batch-synchronous
suggestions, synchronous halving) would change the methods from how they are used. Instead the
benchmark counts the work each run did: trials, epochs, and ``work_s``, those epochs in
single-core seconds (each architecture of the space timed alone on one core before the clusters
start; counting epochs alone, a width-64 epoch would weigh as much as a width-32 one, a third as long). Cost
per unit of work, provisioned CPU-seconds per ``work_s``, is what the cluster charged for the
training it served, whichever trials the search chose, so it compares across the two runs;
``configs_shared`` (Jaccard overlap of the two runs' configurations) says how far they diverged,
and several seeds give the spread. Per-trial overhead (actor start, checkpoints) is not
proportional to work: read the trial and epoch counts beside the normalised figure.

Figures per run: makespan, resource-seconds (CPU-seconds provisioned, until the autoscaler gave
nodes back), utilisation (reserved / provisioned), time to first trial, scale-up/down latency,
pending time, trials, epochs, work, best validation accuracy; per seed-matched pair, ratios
autoscaling / fixed, raw and per unit of work.

    python benchmarks/autoscaling.py            # 3 searchers x seeds 0,1,2, fixed vs autoscaling (~40 min)
    python benchmarks/autoscaling.py --quick    # quicktune, seed 0, a shorter search (~2.5 min)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from _common import RESULTS_DIR, print_result, save_figure  # benchmarks/ is on sys.path when run
from _common import record as record_rows

from efficient_search.cluster import ClusterOptions, ClusterReport, run_on_cluster
from efficient_search.validate import check_int

NAME = "autoscaling"
#: What every searcher searches. Widths of 32 and more, so that an epoch (0.3-1 s on one core),
#: not Ray's per-trial overhead, is most of what a trial costs.
SPACE: dict[str, Any] = {
    "depth": {"randint": [2, 5]},
    "width": {"choice": [32, 48, 64]},
    "lr": {"loguniform": [0.01, 0.3]},
    "weight_decay": {"loguniform": [1e-6, 1e-2]},
    "batch_size": 32,
}
#: Searcher -> the scheduler it is usually paired with.
PAIRINGS: dict[str, str] = {"random": "asha", "evolution": "asha", "quicktune": "freeze_thaw"}
REDUCTION_FACTOR = 3
#: Config keys a scheduler writes (not chosen by the searcher): left out when comparing trials.
SCHEDULER_KEYS = ("epochs",)


@dataclass(frozen=True)
class Budget:
    """The budget rules of one search, the same on both clusters."""

    samples: int
    """Trials the searcher may start."""
    min_epochs: int
    """ASHA's grace period; freeze-thaw's step between pauses."""
    max_epochs: int
    """Most epochs one trial trains (ASHA's and freeze-thaw's ``max_t``)."""
    epoch_budget: int
    """Epochs freeze-thaw may train over all trials (ASHA's are bounded by its rungs)."""
    slots: int
    """Trials at once: the fixed cluster's worker nodes, the autoscaling one's most."""

    def __post_init__(self) -> None:
        for field in ("samples", "min_epochs", "slots"):
            check_int(f"Budget.{field}", getattr(self, field), min=1)
        check_int("Budget.max_epochs", self.max_epochs, min=self.min_epochs,
                  fix="max_epochs must be at least min_epochs.")
        check_int("Budget.epoch_budget", self.epoch_budget, min=self.max_epochs,
                  fix="give freeze-thaw enough epochs for one full trial.")


QUICK = Budget(samples=6, min_epochs=2, max_epochs=6, epoch_budget=18, slots=3)
FULL = Budget(samples=9, min_epochs=2, max_epochs=18, epoch_budget=54, slots=3)


def workload(searcher: str, budget: Budget, *, store: str, storage: str, seed: int) -> dict[str, Any]:
    """The spec of one search: ``searcher`` over :data:`SPACE` with its usual scheduler."""
    if searcher not in PAIRINGS:
        raise ValueError(f"`searcher` must be one of {sorted(PAIRINGS)}, but got {searcher!r}. "
                         f"Fix: e.g. --searchers {','.join(PAIRINGS)}.")
    spec: dict[str, Any] = {
        "name": f"bench-{NAME}-{searcher}-s{seed}-{int(time.time())}",
        "task": "digits",
        "task_options": {"epochs": budget.max_epochs},
        "search_space": SPACE,
        "searcher": searcher,
        "scheduler": PAIRINGS[searcher],
        "metric": "val_accuracy",
        "mode": "max",
        "num_samples": budget.samples,
        "max_concurrent_trials": budget.slots,
        "resources": {"num_workers": 0, "cpus_per_worker": 1},
        "max_failures": 1,
        "store": store,
        "storage_path": storage,
        "seed": seed,
        "verbose": 0,
    }
    if PAIRINGS[searcher] == "asha":
        spec["scheduler_options"] = {"max_t": budget.max_epochs, "grace_period": budget.min_epochs,
                                     "reduction_factor": REDUCTION_FACTOR, "time_attr": "fidelity/epoch"}
    if searcher == "evolution":  # half the trials found the population, the rest are its children
        spec["searcher_options"] = {"population_size": max(2, budget.samples // 2)}
    if searcher == "quicktune":
        # Cost in epochs, not wall seconds: each cluster loads the machine differently, and that
        # must not steer the search or stretch its budget.
        spec["searcher_options"] = {"pool_size": 32, "cost_attr": "fidelity/epoch"}
        spec["scheduler_options"] = {"max_t": budget.max_epochs, "budget_step": budget.min_epochs,
                                     "cost_attr": "fidelity/epoch", "cost_budget_s": budget.epoch_budget}
    return spec


# -- work ----------------------------------------------------------------------------------------
@functools.cache
def epoch_seconds(depth: int, width: int, batch_size: int, repeats: int = 2) -> float:
    """Seconds one training epoch of ``DigitsResNet(depth, width)`` takes alone on one core, as a
    1-CPU trial trains it (forward, backward, SGD step per batch; the best of ``repeats``)."""
    import torch
    import torch.nn.functional as F

    from efficient_search.tasks.digits import DIGITS, DigitsResNet, load_split

    x, y, _, _ = load_split(DIGITS.options["val_fraction"], DIGITS.options["data_seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = DigitsResNet(depth, width)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, len(y), batch_size):
                optimizer.zero_grad()
                F.cross_entropy(model(x[i : i + batch_size]), y[i : i + batch_size]).backward()
                optimizer.step()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return best


def configs_of(rows: pd.DataFrame) -> set[tuple[Any, ...]]:
    """Each trial's configuration as the searcher chose it (scheduler-written keys left out)."""
    columns = sorted(c for c in rows.columns if c.startswith("config.")
                     and c.removeprefix("config.") not in SCHEDULER_KEYS)
    return {tuple(row) for row in rows.groupby("trial_id")[columns].first().itertuples(index=False)}


def calibrate() -> dict[tuple[int, int, int], float]:
    """:func:`epoch_seconds` of every architecture of :data:`SPACE`, at one moment, before any
    cluster loads the machine."""
    depths = range(*SPACE["depth"]["randint"])
    return {(d, w, SPACE["batch_size"]): epoch_seconds(d, w, SPACE["batch_size"])
            for d in depths for w in SPACE["width"]["choice"]}


def work_done(rows: pd.DataFrame) -> dict[str, float]:
    """What a search trained, from its store rows: trials, epochs (each trial's last), work (those
    epochs in single-core seconds, :func:`epoch_seconds`) and the best validation accuracy seen."""
    per_trial = rows.groupby("trial_id").agg(epochs=("fidelity.epoch", "max"),
                                             depth=("config.depth", "first"),
                                             width=("config.width", "first"),
                                             batch_size=("config.batch_size", "first"))
    per_trial["epochs"] = per_trial["epochs"].fillna(0)
    work = sum(row.epochs * epoch_seconds(int(row.depth), int(row.width), int(row.batch_size))
               for row in per_trial.itertuples())
    return {"trials": float(len(per_trial)), "epochs": float(per_trial["epochs"].sum()),
            "work_s": float(work), "best_val_accuracy": float(rows["metric.val_accuracy"].max())}


def shared(a: set[Any], b: set[Any]) -> float:
    """Jaccard overlap of two sets (1: the same; 0: nothing in common)."""
    return len(a & b) / len(a | b) if a | b else 1.0


def compare(fixed: Mapping[str, float], auto: Mapping[str, float]) -> dict[str, float]:
    """Autoscaling / fixed ratios of one seed-matched pair, raw and per unit of work."""
    def per(key: str, unit: str, row: Mapping[str, float]) -> float:
        return row[key] / row[unit] if row[unit] > 0 else float("nan")

    return {
        "makespan_ratio_vs_fixed": auto["makespan_s"] / fixed["makespan_s"],
        "resource_seconds_ratio_vs_fixed": auto["resource_s"] / fixed["resource_s"],
        "work_ratio_vs_fixed": auto["work_s"] / fixed["work_s"],
        "epochs_ratio_vs_fixed": auto["epochs"] / fixed["epochs"],
        "resource_seconds_per_work_ratio_vs_fixed":
            per("resource_s", "work_s", auto) / per("resource_s", "work_s", fixed),
        "resource_seconds_per_epoch_ratio_vs_fixed":
            per("resource_s", "epochs", auto) / per("resource_s", "epochs", fixed),
        "makespan_per_work_ratio_vs_fixed":
            per("makespan_s", "work_s", auto) / per("makespan_s", "work_s", fixed),
    }


# -- runs ----------------------------------------------------------------------------------------
@dataclass
class Run:
    """One search on one cluster: what the harness measured and what the search trained."""

    mode: str
    report: ClusterReport
    work: dict[str, float]
    configs: set[tuple[Any, ...]]


def run_pair(searcher: str, budget: Budget, seed: int, args: argparse.Namespace,
             storage: str) -> list[Run]:
    """The same search (same seed), fixed then autoscaling."""
    from efficient_search import ParquetStore

    runs = []
    for mode in ("fixed", "autoscale"):
        spec = workload(searcher, budget, store=args.store, storage=storage, seed=seed)
        spec["name"] += f"-{mode}"
        if mode == "fixed":
            options = ClusterOptions(fixed=budget.slots)
        else:
            options = ClusterOptions(min_workers=0, max_workers=budget.slots,
                                     idle_timeout_s=args.idle_timeout)
        print(f"== {searcher} (seed {seed}) on a {mode} cluster ==", flush=True)
        report = run_on_cluster(spec, options, prewarm=args.prewarm if mode == "autoscale" else 0,
                                plot_path=f"{storage}/{spec['name']}.png")
        rows = ParquetStore(args.store).results(report.experiment)
        runs.append(Run(mode, report, work_done(rows), configs_of(rows)))
    return runs


def parse_list(field: str, text: str, parse: Any, valid: Sequence[Any] | None = None) -> list[Any]:
    """A comma-separated command-line list, or a ValueError naming the option and the fix."""
    try:
        values = [parse(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    bad = [v for v in values if valid is not None and v not in valid]
    if not values or bad or len(set(values)) != len(values):
        choices = f" from {', '.join(map(str, valid))}" if valid is not None else ""
        raise ValueError(f"`{field}` must be a comma-separated list of distinct values{choices}, but got "
                         f"{text!r}. Fix: e.g. {field} {','.join(map(str, valid or [0, 1, 2]))}.")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quicktune, seed 0, shorter (~2.5 min)")
    parser.add_argument("--seeds", default=None, help="comma-separated (default: 0,1,2; quick: 0)")
    parser.add_argument("--searchers", default=None,
                        help=f"comma-separated of {','.join(PAIRINGS)} (default: all; quick: quicktune)")
    parser.add_argument("--idle-timeout", type=float, default=4.0,
                        help="autoscaler idle timeout in seconds (default: %(default)s)")
    parser.add_argument("--prewarm", type=int, default=0,
                        help="trial-sized bundles requested before the autoscaling search starts")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    args = parser.parse_args()

    budget = QUICK if args.quick else FULL
    seeds = parse_list("--seeds", args.seeds or ("0" if args.quick else "0,1,2"), int)
    default = "quicktune" if args.quick else ",".join(PAIRINGS)
    searchers = parse_list("--searchers", args.searchers or default, str.strip, list(PAIRINGS))
    print(f"autoscaling benchmark ({'quick' if args.quick else 'full'}): {budget}, searchers {searchers}, "
          f"seeds {seeds}", flush=True)
    runs: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    timelines: dict[tuple[str, str], ClusterReport] = {}
    reference = calibrate()
    print("single-core seconds per epoch (depth, width, batch size): "
          + ", ".join(f"{k}={v:.2f}" for k, v in reference.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="es-bench-as-") as storage:
        for searcher in searchers:
            for seed in seeds:
                fixed, auto = run_pair(searcher, budget, seed, args, storage)
                rows = [{"searcher": searcher, "scheduler": PAIRINGS[searcher], "seed": seed,
                         "mode": run.mode, "experiment": run.report.experiment, **run.report.summary,
                         **run.work} for run in (fixed, auto)]
                runs.extend(rows)
                pairs.append({"searcher": searcher, "seed": seed, **compare(*rows),
                              "configs_shared": shared(fixed.configs, auto.configs)})
                if seed == seeds[0]:
                    timelines.update({(searcher, run.mode): run.report for run in (fixed, auto)})
    table, ratios = pd.DataFrame(runs), pd.DataFrame(pairs)
    columns = ["searcher", "seed", "mode", "makespan_s", "resource_s", "utilisation", "trials", "epochs",
               "work_s", "best_val_accuracy", "time_to_first_trial_s", "scale_up_s_p50",
               "scale_down_s_p50", "pending_s_p50", "max_workers_seen"]
    print(table[columns].to_string(index=False, float_format="{:.3g}".format), flush=True)
    print(ratios.to_string(index=False, float_format="{:.3g}".format), flush=True)

    figures = headline(table, ratios)
    record_rows(args.store, NAME, [("run", table), ("ratio", ratios), ("headline", pd.DataFrame([figures]))],
                args.quick, searcher="+".join(searchers), scheduler="+".join(PAIRINGS[s] for s in searchers))
    plot(timelines, searchers, args.quick)
    print_result(NAME, figures, args.quick)


def headline(table: pd.DataFrame, ratios: pd.DataFrame) -> dict[str, Any]:
    """Medians over every searcher and seed (ratios: per seed-matched pair), then per searcher."""
    auto_rows, fixed_rows = table[table["mode"] == "autoscale"], table[table["mode"] == "fixed"]
    figures: dict[str, Any] = {
        "searchers": "+".join(dict.fromkeys(table["searcher"])),
        "seeds": len(set(table["seed"])),
        "utilisation": _median(auto_rows["utilisation"]),
        "utilisation_fixed": _median(fixed_rows["utilisation"]),
    }
    for key in ("makespan_ratio_vs_fixed", "resource_seconds_ratio_vs_fixed", "work_ratio_vs_fixed",
                "epochs_ratio_vs_fixed", "resource_seconds_per_work_ratio_vs_fixed",
                "resource_seconds_per_epoch_ratio_vs_fixed", "makespan_per_work_ratio_vs_fixed",
                "configs_shared"):
        figures[key] = _median(ratios[key])
    if len(ratios) > 1:
        spread = ratios["resource_seconds_per_work_ratio_vs_fixed"]
        figures["resource_seconds_per_work_ratio_min"] = float(spread.min())
        figures["resource_seconds_per_work_ratio_max"] = float(spread.max())
    figures.update({
        "scale_up_s_p50": _median(auto_rows["scale_up_s_p50"]),
        "scale_down_s_p50": _median(auto_rows["scale_down_s_p50"]),
        "time_to_first_trial_s": _median(auto_rows["time_to_first_trial_s"]),
        "time_to_first_trial_s_fixed": _median(fixed_rows["time_to_first_trial_s"]),
        "pending_s_p50": _median(auto_rows["pending_s_p50"]),
    })
    for searcher, group in ratios.groupby("searcher", sort=False):
        figures[f"resource_seconds_per_work_ratio_{searcher}"] = _median(
            group["resource_seconds_per_work_ratio_vs_fixed"])
        figures[f"makespan_ratio_{searcher}"] = _median(group["makespan_ratio_vs_fixed"])
    return figures


def _median(values: Any) -> float:
    clean = [float(v) for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


def plot(timelines: dict[tuple[str, str], ClusterReport], searchers: list[str], quick: bool) -> None:
    """Per searcher (its first seed), fixed and autoscaling: worker nodes and trials over time."""
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
            axis.set(title=f"{searcher}+{PAIRINGS[searcher]}, {mode}: {summary['makespan_s']:.0f} s, "
                           f"{summary['resource_s']:.0f} CPU-s, utilisation {summary['utilisation']:.0%}",
                     xlabel="seconds since the search started", ylabel="count")
            axis.legend(fontsize=7, loc="upper right")
    save_figure(fig, NAME, quick)


if __name__ == "__main__":
    main()
