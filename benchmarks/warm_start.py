"""Warm-starting a search from an earlier one in the store vs starting cold, on digits.

Per seed and searcher (evolution, Optuna TPE, Quick-Tune with an online surrogate): an *earlier*
search of ``--old`` trials; then two new searches of ``--new`` trials each, with another seed:
*cold*, and *warm* (``warm_start: {experiments: [earlier]}``, so the earlier trials seed the
searcher and are not rerun). Each counts the trials it needs until its best validation accuracy
reaches the earlier search's best (never: it did not within ``--new``), and, because that best is
the maximum of noisy trials, until it comes within ``TOLERANCE`` of it. Every trial is a real Tune
trial (later trials reuse finished trials' processes); every row lands in the store.

Trials train 8 epochs with a cosine learning rate: a calibration (8 random configurations x 3
training seeds, before any warm or cold search ran) measured the spread of one configuration's
final accuracy over training seeds at 0.135 after 2 epochs at a constant rate (as much as the
spread between configurations, 0.139) and 0.014 after 8 cosine epochs (between configurations
0.062). ``TOLERANCE`` (0.01, 4.5 of the 449 validation images) lies below that 0.014.

    python benchmarks/warm_start.py --quick   # 2 seeds, 6 + 6 trials of 2 epochs
    python benchmarks/warm_start.py           # 5 seeds, 16 + 16 trials of 8 epochs
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
import ray
from _common import RESULTS_DIR, print_result, record, save_figure  # benchmarks/ is on sys.path when run

import efficient_search as es
from efficient_search.store import ParquetStore
from efficient_search.store.rows import RUNNING, TERMINATED

NAME = "warm_start"
SPACE = {"lr": {"loguniform": [0.005, 0.5]}, "depth": {"randint": [1, 4]}, "width": {"choice": [8, 16]},
         "batch_size": {"choice": [32, 64]}, "lr_schedule": "cosine"}
TOLERANCE = 0.01
SEARCHERS = {"evolution": {"population_size": 4}, "optuna": {"sampler": "tpe"},
             "quicktune": {"initial_random": 3}}


def spec(args: argparse.Namespace, name: str, searcher: str, seed: int, num_samples: int,
         warm_from: str | None = None) -> dict[str, Any]:
    return {"name": name, "task_options": {"epochs": args.epochs}, "search_space": SPACE,
            "searcher": searcher, "searcher_options": SEARCHERS[searcher], "metric": "val_accuracy",
            "mode": "max", "num_samples": num_samples, "max_concurrent_trials": 1,
            "resources": {"num_workers": 0, "cpus_per_worker": 1}, "store": args.store, "seed": seed,
            "verbose": 0, "reuse_actors": True,
            **({"warm_start": {"experiments": [warm_from]}} if warm_from else {})}


def finals(store: ParquetStore, name: str) -> pd.DataFrame:
    """Each trial's last reported row, in the order trials finished."""
    rows = store.results(name)
    last = rows[rows["status"] == RUNNING].sort_values("timestamp").groupby("trial_id", sort=False).tail(1)
    return last.sort_values("timestamp").reset_index(drop=True)


def search(args: argparse.Namespace, name: str, searcher: str, seed: int, num_samples: int,
           warm_from: str | None = None) -> pd.Series:
    """Run one search (or read it, when the store holds it finished: a rerun with ``--tag``); the
    running best accuracy after each trial, in the order trials finished."""
    store = ParquetStore(args.store)
    done = name in store.experiments() and (store.results(name)["status"] == TERMINATED).sum() >= num_samples
    if not done:  # an interrupted one (``--tag``) is resumed
        es.run({**spec(args, name, searcher, seed, num_samples, warm_from),
                **({"resume": True} if name in store.experiments() else {})})
    return finals(store, name)["metric.val_accuracy"].cummax()


def surrogate_ranking(args: argparse.Namespace, tag: str) -> pd.DataFrame:
    """Per seed: how Quick-Tune's online surrogate, fitted on the earlier search's curves as its warm
    start fits it, ranks the configurations both new searches then ran (Spearman's rho of predicted
    and measured final accuracy), next to a random forest fitted on the same earlier final values;
    and the share of each new search's trials on the wider (costlier) network."""
    from scipy.stats import spearmanr
    from sklearn.ensemble import RandomForestRegressor

    from efficient_search.api import plan_run
    from efficient_search.warm_start import earlier_points

    def encode(configs: list[dict[str, Any]]) -> np.ndarray:
        return np.array([[np.log(c["lr"]), c["depth"], c["width"], c["batch_size"]] for c in configs])

    store, rows = ParquetStore(args.store), []
    for seed in range(args.seeds):
        prefix = f"bench-{NAME}-{tag}-quicktune-s{seed}"
        plan = plan_run(spec(args, f"{prefix}-check", "quicktune", seed + 1000, args.new))
        plan.searcher.set_search_properties("val_accuracy", "max", plan.space)
        points = earlier_points({"experiments": [f"{prefix}-earlier"]}, args.store, "digits",
                                ["val_accuracy"], plan.space_description)
        for config, values, results in points:
            plan.searcher.add_evaluated_point(config, values, intermediate_values=results)
        runs = {start: finals(store, f"{prefix}-{start}") for start in ("cold", "warm")}
        new = pd.concat(runs.values())
        configs = [{c.removeprefix("config."): v for c, v in row.items() if c.startswith("config.")}
                   for row in new.to_dict("records")]
        measured = new["metric.val_accuracy"].to_numpy()
        mean, _ = plan.searcher.model.predict_new(configs, args.epochs)
        forest = RandomForestRegressor(200, random_state=seed).fit(
            encode([p[0] for p in points]), [p[1]["val_accuracy"] for p in points])
        rows.append({"seed": seed, "earlier_trials": len(points), "new_trials": len(new),
                     "surrogate_rho": float(spearmanr(mean, measured).statistic),
                     "forest_rho": float(spearmanr(forest.predict(encode(configs)), measured).statistic),
                     **{f"{start}_width16": float((run["config.width"] == 16).mean())
                        for start, run in runs.items()}})
    return pd.DataFrame(rows)


def trials_to_reach(best: pd.Series, target: float) -> float:
    """1-based count of trials until ``best`` reaches ``target``; NaN when it never does."""
    reached = np.flatnonzero(best.to_numpy() >= target - 1e-12)
    return float(reached[0] + 1) if len(reached) else float("nan")


def summarize(table: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Per searcher and start, over seeds: the median trials to reach the earlier best and to come
    within ``TOLERANCE`` of it, a seed that never did counting as ``budget + 1`` (so the median is
    that when most never did), how many never did, and per seed (paired by seed) how often warm
    was sooner or later than cold; the median best of the search."""
    counts = {"trials_to_reach": "never", "trials_to_within": "never_within"}
    rows = []
    for (searcher, start), group in table.groupby(["searcher", "start"], sort=True):
        row: dict[str, Any] = {"searcher": searcher, "start": start}
        for column, never in counts.items():
            row[column] = float(group[column].fillna(budget + 1).median())
            row[never] = int(group[column].isna().sum())
        row["final_best"] = float(group["final_best"].median())
        rows.append(row)
    summary = pd.DataFrame(rows)
    for column in counts:
        paired = table.pivot_table(index=["searcher", "seed"], columns="start", values=column,
                                   dropna=False).fillna(budget + 1)
        by = paired.groupby(level="searcher")
        warm_sooner = by.apply(lambda g: int((g["warm"] < g["cold"]).sum()))
        cold_sooner = by.apply(lambda g: int((g["cold"] < g["warm"]).sum()))
        summary[f"{column}_warm_sooner"] = summary["searcher"].map(warm_sooner)
        summary[f"{column}_cold_sooner"] = summary["searcher"].map(cold_sooner)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 6 + 6 trials of 2 epochs")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--old", type=int, default=None, help="trials of the earlier search")
    parser.add_argument("--new", type=int, default=None, help="trials of each new search")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    parser.add_argument("--tag", default=None, help="an earlier run's tag: its finished searches are read "
                        "from the store, not rerun (to add seeds to it)")
    args = parser.parse_args()
    args.seeds = args.seeds or (2 if args.quick else 5)
    args.old = args.old or (6 if args.quick else 16)
    args.new = args.new or (6 if args.quick else 16)
    args.epochs = 2 if args.quick else 8
    tag = args.tag or time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    started = time.perf_counter()
    ray.init(address="local", num_cpus=2, log_to_driver=False)  # its own Ray, whatever else runs
    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        for searcher in SEARCHERS:
            old = f"bench-{NAME}-{tag}-{searcher}-s{seed}-earlier"
            target = float(search(args, old, searcher, seed, args.old).iloc[-1])
            for start in ("cold", "warm"):
                best = search(args, f"bench-{NAME}-{tag}-{searcher}-s{seed}-{start}", searcher, seed + 1000,
                              args.new, warm_from=old if start == "warm" else None)
                rows.append({"seed": seed, "searcher": searcher, "start": start, "earlier_best": target,
                             "final_best": float(best.iloc[-1]),
                             "trials_to_reach": trials_to_reach(best, target),
                             "trials_to_within": trials_to_reach(best, target - TOLERANCE)})
                print(f"seed {seed} {searcher} {start}: earlier best {target:.4f}, best {best.iloc[-1]:.4f}, "
                      f"reached after {rows[-1]['trials_to_reach']} trial(s), within {TOLERANCE} after "
                      f"{rows[-1]['trials_to_within']}", flush=True)
    table = pd.DataFrame(rows)
    summary = summarize(table, args.new)
    ranking = surrogate_ranking(args, tag)
    with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
        print(f"\nmedian over seeds, never counting as {args.new + 1} (never: seeds that did not reach the "
              f"earlier best; within: {TOLERANCE} below it; warm/cold sooner: seeds, paired):")
        print(summary.to_string(index=False))
        print("\nQuick-Tune's surrogate fitted on the earlier curves: Spearman's rho with the new trials' "
              "accuracy (a random forest on the same earlier values beside it):")
        print(ranking.to_string(index=False))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(SEARCHERS), figsize=(5 * len(SEARCHERS), 7), squeeze=False, sharex=True,
                             sharey=True)
    trials = np.arange(1, args.new + 1)
    for column, row, what in (("trials_to_reach", 0, "reached the earlier best"),
                              ("trials_to_within", 1, f"within {TOLERANCE} of it")):
        for ax, searcher in zip(axes[row], SEARCHERS, strict=True):
            for start, color in (("cold", "C0"), ("warm", "C1")):
                needed = table.loc[(table["searcher"] == searcher) & (table["start"] == start), column]
                share = [(needed <= k).mean() for k in trials]
                ax.step(trials, share, where="post", color=color, label=start)
            ax.set(title=f"{searcher}: {what}", xlabel="new trials", ylim=(-0.03, 1.03))
            ax.legend(loc="lower right")
        axes[row][0].set_ylabel(f"share of {args.seeds} seeds")
    save_figure(fig, NAME, args.quick)
    record(args.store, NAME, [("runs", table), ("summary", summary), ("surrogate", ranking)], args.quick)
    if not args.quick:
        ranking.to_csv(RESULTS_DIR / f"{NAME}_surrogate.csv", index=False, float_format="%.4g")
        summary.to_csv(RESULTS_DIR / f"{NAME}_summary.csv", index=False, float_format="%.5g")
        table.to_csv(RESULTS_DIR / f"{NAME}_runs.csv", index=False, float_format="%.5g")
    figures = {f"{column}_{s}_{start}": float(summary.loc[(summary["searcher"] == s)
                                                          & (summary["start"] == start), column].iloc[0])
               for column in ("trials_to_reach", "trials_to_within") for s in SEARCHERS
               for start in ("cold", "warm")}
    figures.update({f"{column}_median": float(ranking[column].median())
                    for column in ("surrogate_rho", "forest_rho")})
    print(f"total {time.perf_counter() - started:.0f} s")
    print_result(NAME, {**figures, "seeds": args.seeds}, args.quick)
    ray.shutdown()


if __name__ == "__main__":
    main()
