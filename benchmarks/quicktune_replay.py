"""Quick-Tune replay benchmark: leave one data set out, meta-train on the rest, tune it by replaying.

For each held-out data set of a meta-dataset (the Quick-Tune folder, or a QTT-SEG-layout CSV: told
apart by ``load_meta_dataset``), the surrogate is meta-trained on the other data sets (once per
seed); then each method tunes the held-out one on its recorded curves and costs: a trial's config is a
row of that data set (the search space is the categorical row index; Quick-Tune's searcher reads the
row's real hyperparameters through ``featurize``, the peers see the unordered index), each epoch reports the
recorded metric and adds the recorded seconds to a simulated clock. The time budget is
``--budget-runs`` times the median cost of one full run of the data set, in simulated seconds.

Methods (same seeds): QuickTuneSearcher + FreezeThawScheduler; random search (Ray's OptunaSearch with
Optuna's RandomSampler) + FIFO; the same random search + ASHA (RestorableASHA); Ray's BOHB pair
(TuneBOHB + HyperBandForBOHB; needs ``hpbandster`` and ``ConfigSpace``, left out if missing); Optuna
TPE through Ray's OptunaSearch + Ray's HyperBandScheduler (the Hyperband pruner done by Tune).
Every method runs in-process through the same Ray Searcher/TrialScheduler objects Tune would call,
one trial at a time, driven by ``efficient_search.testing.replay.ReplaySimulation`` (Tune's per-trial
actor start-up would dominate simulated epochs of milliseconds).

Normalised regret = (best value in the data set - incumbent) / (best - worst), at 10/25/50/100% of
the budget, averaged over data sets and seeds; overhead = wall seconds inside Quick-Tune's searcher
and scheduler as a share of the simulated budget.

    python benchmarks/quicktune_replay.py --quick     # 2 data sets, 1 seed, small budget (< 2 min)
    python benchmarks/quicktune_replay.py             # 6 data sets x 3 seeds (~25 min on 2 cores)
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import RESULTS_DIR, save_figure  # benchmarks/ is on sys.path when run
from _common import record as record_rows
from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler, TrialScheduler
from ray.tune.search import Searcher

from efficient_search.schedulers import FreezeThawScheduler, RestorableASHA
from efficient_search.searchers import QuickTuneSearcher
from efficient_search.surrogate import DeepKernelSurrogate, MetaDataset, SurrogateSettings, load_meta_dataset
from efficient_search.testing.replay import METRIC, ReplaySimulation, ReplayTable

NAME = "quicktune_replay"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "quicktune-mtlbm-extended"
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
CURVE = np.linspace(0.02, 1.0, 50)
Method = Callable[[ReplayTable, int, float, DeepKernelSurrogate], tuple[Searcher, TrialScheduler]]


def _optuna(table: ReplayTable, seed: int, sampler: str) -> Searcher:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    made = (
        optuna.samplers.TPESampler(seed=seed)
        if sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    space = OptunaSearch.convert_search_space(table.space())
    return OptunaSearch(space, metric=METRIC, mode="max", sampler=made)


def quicktune(
    table: ReplayTable, seed: int, budget: float, surrogate: DeepKernelSurrogate
) -> tuple[Searcher, TrialScheduler]:
    searcher = QuickTuneSearcher(
        table.space(),
        metric=METRIC,
        mode="max",
        seed=seed,
        surrogate=surrogate,
        meta_features=table.meta_features(),
        featurize=table.hyperparameters,
    )
    return searcher, FreezeThawScheduler(searcher=searcher, max_t=table.max_epochs, cost_budget_s=budget)


def random_fifo(
    table: ReplayTable, seed: int, budget: float, surrogate: Any
) -> tuple[Searcher, TrialScheduler]:
    return _optuna(table, seed, "random"), FIFOScheduler()


def random_asha(
    table: ReplayTable, seed: int, budget: float, surrogate: Any
) -> tuple[Searcher, TrialScheduler]:
    scheduler = RestorableASHA(
        seed=seed,
        time_attr="fidelity/epoch",
        max_t=table.max_epochs,
        grace_period=1,
        reduction_factor=3,
        metric=METRIC,
        mode="max",
    )
    return _optuna(table, seed, "random"), scheduler


def bohb(table: ReplayTable, seed: int, budget: float, surrogate: Any) -> tuple[Searcher, TrialScheduler]:
    from ray.tune.schedulers import HyperBandForBOHB
    from ray.tune.search.bohb import TuneBOHB

    searcher = TuneBOHB(table.space(), metric=METRIC, mode="max", seed=seed)
    return searcher, HyperBandForBOHB(
        time_attr="fidelity/epoch", max_t=table.max_epochs, reduction_factor=3, metric=METRIC, mode="max"
    )


def tpe_hyperband(
    table: ReplayTable, seed: int, budget: float, surrogate: Any
) -> tuple[Searcher, TrialScheduler]:
    return _optuna(table, seed, "tpe"), HyperBandScheduler(
        time_attr="fidelity/epoch", max_t=table.max_epochs, reduction_factor=3, metric=METRIC, mode="max"
    )


def methods() -> dict[str, Method]:
    found: dict[str, Method] = {"quicktune": quicktune, "random": random_fifo, "asha": random_asha}
    try:
        import ConfigSpace  # noqa: F401
        import hpbandster  # noqa: F401

        found["bohb"] = bohb
    except ImportError:
        print("bohb left out: `pip install hpbandster ConfigSpace` to include Ray's BOHB pair", flush=True)
    found["tpe_hyperband"] = tpe_hyperband
    return found


def regret(table: ReplayTable, outcome: Any, t: float) -> float:
    value = outcome.incumbent_at(t)
    if not np.isfinite(value):
        return 1.0
    return float((table.best - value) / max(table.best - table.worst, 1e-12))


def full_run_cost(table: ReplayTable) -> float:
    complete = [r for r in range(table.rows) if table.length(r) == table.max_epochs]
    rows = complete or list(range(table.rows))
    return float(np.median([sum(table.cost(r, e) for e in range(1, table.length(r) + 1)) for r in rows]))


def meta_train(
    data: MetaDataset, held_out: str, settings: SurrogateSettings, seed: int
) -> DeepKernelSurrogate:
    started = time.perf_counter()
    surrogate = DeepKernelSurrogate(settings=settings, seed=seed).fit(data.drop([held_out]))
    print(
        f"  meta-trained on {len(data.dataset_names) - 1} data sets in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return surrogate


def run(args: argparse.Namespace) -> None:
    import ray

    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    data = load_meta_dataset(args.meta_dataset)
    names = args.datasets.split(",") if args.datasets else data.dataset_names[: 2 if args.quick else 6]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else [0, 1, 2])
    settings = (
        SurrogateSettings(meta_train_steps=150, cost_train_steps=150, max_train_points=5000)
        if args.quick
        else SurrogateSettings()
    )
    budget_runs = args.budget_runs or (2.0 if args.quick else 10.0)
    available = methods()
    print(
        f"{data.summary()}\nheld out in turn: {', '.join(names)}; seeds {seeds}; budget {budget_runs:g} "
        f"full runs; methods {', '.join(available)}; in-process replay of Tune's searcher/scheduler calls",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[np.ndarray]] = {m: [] for m in available}
    for name in names:
        table = ReplayTable.from_meta_dataset(data, name)
        budget = budget_runs * full_run_cost(table)
        print(
            f"{name}: {table.rows} configs, {table.max_epochs} epochs, budget {budget:.0f} simulated s",
            flush=True,
        )
        for seed in seeds:
            surrogate = meta_train(data, name, settings, seed=seed)  # seeds vary the meta-training too
            for method, build in available.items():
                searcher, scheduler = build(table, seed, budget, surrogate)
                started = time.perf_counter()
                outcome = ReplaySimulation(table, searcher, scheduler, budget_s=budget).run()
                wall = time.perf_counter() - started
                row = {
                    "dataset": name,
                    "seed": float(seed),
                    "method": method,
                    "budget_s": budget,
                    "trials": float(outcome.trials),
                    "epochs": float(outcome.epochs),
                    "overhead_s": outcome.overhead_s,
                    "overhead_share": outcome.overhead_s / budget,
                    "wall_s": wall,
                }
                row.update(
                    {f"regret_{round(f * 100)}": regret(table, outcome, f * budget) for f in FRACTIONS}
                )
                rows.append(row)
                curves[method].append(np.asarray([regret(table, outcome, f * budget) for f in CURVE]))
                print(
                    f"  seed {seed} {method:14s} regret@10/25/50/100% "
                    + " ".join(f"{row[f'regret_{round(f * 100)}']:.3f}" for f in FRACTIONS)
                    + f"  trials {outcome.trials:3d}  epochs {outcome.epochs:4d}  overhead "
                    f"{outcome.overhead_s:.2f} s ({100 * row['overhead_share']:.2f}% of budget)",
                    flush=True,
                )
    report(pd.DataFrame(rows), curves, args)


def report(frame: pd.DataFrame, curves: dict[str, list[np.ndarray]], args: argparse.Namespace) -> None:
    keys = [f"regret_{round(f * 100)}" for f in FRACTIONS]
    means = frame.groupby("method")[keys].mean()
    print("\nmean normalised regret (over data sets and seeds):")
    print(means.round(4).to_string())
    peers = means.drop(index="quicktune")
    best_peer = str(peers["regret_50"].idxmin())
    ours = frame[frame["method"] == "quicktune"].set_index(["dataset", "seed"])[keys]
    theirs = frame[frame["method"] == best_peer].set_index(["dataset", "seed"])[keys]
    cells = (ours.to_numpy() < theirs.loc[ours.index].to_numpy()).astype(float) + 0.5 * (
        ours.to_numpy() == theirs.loc[ours.index].to_numpy()
    )
    figures = {
        "regret_10": means.loc["quicktune", "regret_10"],
        "regret_25": means.loc["quicktune", "regret_25"],
        "regret_50": means.loc["quicktune", "regret_50"],
        "regret_100": means.loc["quicktune", "regret_100"],
        "best_peer_regret_50": peers.loc[best_peer, "regret_50"],
        "win_rate_vs_best_peer": float(cells.mean()),
        "overhead_share": float(frame.loc[frame["method"] == "quicktune", "overhead_share"].mean()),
    }
    print(
        f"best peer at 50% of the budget: {best_peer}; win rate counts (data set, seed, budget fraction) "
        "cells "
        "where Quick-Tune's regret is lower (ties half)"
    )
    record_rows(
        args.store, NAME, [("runs", frame)], args.quick, searcher="quicktune", scheduler="freeze_thaw"
    )
    plot(curves, args.quick)
    print(
        f"RESULT {NAME} " + " ".join(f"{k}={v:.4g}" for k, v in figures.items()) + f" best_peer={best_peer}"
    )


def plot(curves: dict[str, list[np.ndarray]], quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, runs in curves.items():
        if runs:
            ax.plot(
                CURVE * 100,
                np.mean(runs, axis=0),
                label=method,
                linewidth=2.5 if method == "quicktune" else 1.2,
            )
    ax.set_xlabel("budget used (%)")
    ax.set_ylabel("mean normalised regret")
    ax.set_title("Quick-Tune replay: leave one data set out")
    ax.legend()
    save_figure(fig, NAME, quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--meta-dataset", default=str(DEFAULT_DATA), help="a Quick-Tune folder or a QTT-SEG-layout CSV"
    )
    parser.add_argument(
        "--datasets", default="", help="data sets to hold out in turn (default: the first 2/6)"
    )
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default 0 quick, 0,1,2 full)")
    parser.add_argument(
        "--budget-runs",
        type=float,
        default=0.0,
        help="budget in median full runs of the data set (default 2 quick, 10 full)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run (< 2 minutes)")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    args = parser.parse_args()
    started = time.perf_counter()
    run(args)
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
