"""HPO suite: every method on every instance of a YAHPO Gym scenario, several seeds, simulated clock.

Each method (see ``_hpo_methods.py``: ours, their library peers and a no-meta-training ablation) searches
the scenario's *real* hyperparameters on one instance at a time, driven in-process by
``efficient_search.testing.ReplaySimulation`` over a ``BlackboxReplay`` (the same Ray Searcher and
TrialScheduler objects Tune would call, one trial at a time): each budget step asks the surrogate for
the metric and charges its simulated seconds to the clock (a non-continuable fidelity such as
``trainsize`` restarts: see ``efficient_search.testing.replay``). Every method sees the same space,
lookup, clock, budget and seeds.

- **Budget**: ``--budget-runs`` times the median simulated seconds of one full-fidelity run of the
  instance (median over the 2,000 random configs below).
- **Regret**: ``(best - incumbent) / (best - worst)`` (sign flipped for ``--mode min``), where best and
  worst are *estimated* from 2,000 seeded random configs at the maximum fidelity (a search can beat
  that estimate: regret below 0); the incumbent is the best value reported at any fidelity; 1 before
  the first result and capped at 1. Read at 10/25/50/100 % of the budget; mean and standard error over
  instances x seeds, average rank per fraction (1 = best), win rate of ``quicktune+freeze_thaw``
  against the peer with the lowest mean regret at 50 % over (instance, seed, fraction) cells.
- **Meta-training** (Quick-Tune protocol): for each instance, the surrogate is meta-trained on
  ``--meta-configs`` random configs' curves sampled from *every other* instance of the scenario (never
  the instance being tuned), once per instance with the first seed; its wall time is reported apart.
- **Overhead**: wall seconds inside each method's searcher and scheduler as a share of the simulated
  budget (meta-training not included; printed beside it).

    python benchmarks/hpo_suite.py --quick                      # lcbench, 2 instances, 1 seed, < 3 min
    python benchmarks/hpo_suite.py --scenario lcbench           # all 34 instances x 5 seeds (hours)
    python benchmarks/hpo_suite.py --scenario rbv2_glmnet --data-path ~/yahpo_data --metric acc

A full run writes ``results/hpo_suite_<scenario>.csv`` (one row per instance x seed x method, regret
at each budget fraction) and ``results/hpo_suite_<scenario>_summary.csv`` (per method: mean, standard
error, average rank); every run records its rows to the store (experiment ``bench-hpo_suite``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import RESULTS_DIR, save_figure  # benchmarks/ is on sys.path when run
from _common import record as record_rows
from _hpo_methods import OURS, Method, all_methods
from _hpo_metrics import CURVE, FRACTIONS, KEYS, best_peer, key, plot, table, win_rate

from efficient_search.blackbox import YahpoBenchmark
from efficient_search.blackbox.sampling import metric_mode, sample_meta_dataset
from efficient_search.surrogate import DeepKernelSurrogate, MetaDataset, SurrogateSettings
from efficient_search.testing.replay import ReplaySimulation
from efficient_search.testing.replay_blackbox import BlackboxReplay

NAME = "hpo_suite"
#: Quick mode keeps the surrogate's default meta-training steps and samples fewer curves.
QUICK: dict[str, Any] = {"instances": 2, "seeds": 1, "budget_runs": 3.0, "meta_configs": 32,
                         "meta_steps": 1000}
FULL: dict[str, Any] = {"instances": 0, "seeds": 5, "budget_runs": 10.0, "meta_configs": 64,
                        "meta_steps": 1000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="lcbench", help="a YAHPO Gym scenario (default lcbench)")
    parser.add_argument("--data-path", default=None,
                        help="folder with one sub-folder per scenario (default: "
                             "$EFFICIENT_SEARCH_YAHPO_DATA, else ../shared/data/yahpo)")
    parser.add_argument("--metric", default=None, help="the objective (default: the scenario's first)")
    parser.add_argument("--mode", choices=("max", "min"), default=None,
                        help="must agree with the scenario where it knows the metric's direction")
    parser.add_argument("--instances", default="", help="comma-separated (default: 2 quick, all full)")
    parser.add_argument("--seeds", type=int, default=0, help="seeds 0..N-1 (default 1 quick, 5 full)")
    parser.add_argument("--budget-runs", type=float, default=0.0,
                        help="budget in median full-fidelity runs (default 3 quick, 10 full)")
    parser.add_argument("--methods", default="", help="comma-separated subset (default: all available)")
    parser.add_argument("--meta-configs", type=int, default=0,
                        help="random configs per other instance for meta-training (default 32 quick, "
                             "64 full)")
    parser.add_argument("--meta-steps", type=int, default=0,
                        help="meta-training gradient steps (default 1000)")
    parser.add_argument("--quick", action="store_true", help="smoke run (< 3 minutes on 2 cores)")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    return parser.parse_args(argv)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def settle(args: argparse.Namespace, bench: YahpoBenchmark) -> dict[str, Any]:
    """The run's plan from the arguments, with defaults by mode; ValueError for bad input."""
    defaults = QUICK if args.quick else FULL
    metric, mode = metric_mode(bench, args.metric, args.mode)
    instances = _names(args.instances) or bench.instances[: defaults["instances"] or None]
    unknown = [i for i in instances if i not in bench.instances]
    if unknown:
        more = ", ..." if len(bench.instances) > 12 else ""
        raise ValueError(f"`--instances` names {unknown}, not instances of {bench.scenario!r}. Fix: pass "
                         f"some of {', '.join(bench.instances[:12])}{more}.")
    if len(bench.instances) < 2:
        raise ValueError(f"scenario {bench.scenario!r} has one instance: leave-one-out meta-training needs "
                         "another. Fix: pick a scenario with several instances.")
    for name in ("seeds", "budget_runs", "meta_configs", "meta_steps"):
        if getattr(args, name) < 0:
            raise ValueError(f"`--{name.replace('_', '-')}` must be > 0, but got {getattr(args, name)}. "
                             f"Fix: e.g. --{name.replace('_', '-')} {defaults[name]}.")
    steps = BlackboxReplay(bench, instances[0], metric=metric, mode=mode).max_steps
    available = {m.name: m for m in all_methods(steps)}
    wanted = _names(args.methods) or list(available)
    unknown = [m for m in wanted if m not in available]
    if unknown or OURS not in wanted or all(available[m].ours for m in wanted):
        raise ValueError(f"`--methods` must name {OURS!r} and at least one peer among the available methods "
                         f"{list(available)}, but got {wanted}. Fix: leave --methods out for all.")
    return {"metric": metric, "mode": mode, "instances": instances,
            "seeds": list(range(args.seeds or defaults["seeds"])),
            "budget_runs": args.budget_runs or defaults["budget_runs"],
            "meta_configs": args.meta_configs or defaults["meta_configs"],
            "meta_steps": args.meta_steps or defaults["meta_steps"],
            "methods": [available[m] for m in wanted]}


def leave_one_out(data: MetaDataset, instance: str) -> MetaDataset:
    """The meta-training data for tuning ``instance``: every other instance, never this one."""
    held_out = data.drop([instance])
    if instance in held_out.dataset_names:
        raise RuntimeError(f"meta-training data still holds the tuned instance {instance!r}.")
    return held_out


def meta_train(data: MetaDataset, instance: str, steps: int, seed: int) -> tuple[DeepKernelSurrogate, float]:
    started = time.perf_counter()
    settings = SurrogateSettings(meta_train_steps=steps, cost_train_steps=steps)
    surrogate = DeepKernelSurrogate(settings=settings, seed=seed).fit(leave_one_out(data, instance))
    return surrogate, time.perf_counter() - started


def simulate(method: Method, source: BlackboxReplay, seed: int, budget: float,
             surrogate: Any) -> tuple[dict[str, Any], np.ndarray]:
    """One search: its row of figures and its regret curve."""
    ref = source.reference()
    searcher, scheduler = method.build(source, seed, surrogate)
    started = time.perf_counter()
    outcome = ReplaySimulation(source, searcher, scheduler, budget_s=budget).run()
    wall = time.perf_counter() - started
    row = {"method": method.name, "ours": float(method.ours), "trials": float(outcome.trials),
           "steps": float(outcome.epochs), "overhead_s": outcome.overhead_s,
           "overhead_share": outcome.overhead_s / budget, "wall_s": wall}
    row.update({key(f): outcome.regret_at(f * budget, best=ref.best, worst=ref.worst) for f in FRACTIONS})
    curve = np.asarray([outcome.regret_at(f * budget, best=ref.best, worst=ref.worst) for f in CURVE])
    return row, curve


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole suite; returns the RESULT figures."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    bench = YahpoBenchmark(args.scenario, data_path=args.data_path)
    plan = settle(args, bench)
    methods: list[Method] = plan["methods"]
    print(f"mode={'quick' if args.quick else 'full'} {bench!r}\ninstances {', '.join(plan['instances'])}; "
          f"seeds {plan['seeds']}; budget {plan['budget_runs']:g} full runs; metric {plan['metric']} "
          f"({plan['mode']}); methods {', '.join(m.name for m in methods)}", flush=True)
    if "bohb" not in {m.name for m in methods}:
        print("bohb left out: `pip install hpbandster ConfigSpace` to include Ray's BOHB pair", flush=True)
    started = time.perf_counter()
    data = sample_meta_dataset(bench, bench.instances, configs_per_instance=plan["meta_configs"],
                               seed=0, metric=plan["metric"], mode=plan["mode"])
    print(f"sampled meta-training curves: {data.summary()} in {time.perf_counter() - started:.1f} s",
          flush=True)
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[np.ndarray]] = {m.name: [] for m in methods}
    for instance in plan["instances"]:
        source = BlackboxReplay(bench, instance, metric=plan["metric"], mode=plan["mode"])
        ref = source.reference()
        budget = plan["budget_runs"] * ref.full_run_s
        surrogate, meta_s = meta_train(data, instance, plan["meta_steps"], seed=plan["seeds"][0])
        print(f"{instance}: {source.max_steps} steps ({'continues' if source.continuable else 'restarts'}), "
              f"best/worst of {ref.samples} random configs {ref.best:.4g}/{ref.worst:.4g}, full run "
              f"{ref.full_run_s:.0f} s, budget {budget:.0f} simulated s; meta-trained on "
              f"{len(data.dataset_names) - 1} other instances in {meta_s:.1f} s", flush=True)
        for seed in plan["seeds"]:
            for method in methods:
                row, curve = simulate(method, source, seed, budget, surrogate)
                row.update({"scenario": bench.scenario, "instance": instance, "seed": float(seed),
                            "budget_s": budget, "meta_train_s": meta_s if method.name == OURS else 0.0})
                rows.append(row)
                curves[method.name].append(curve)
                print(f"  seed {seed} {method.name:30s} regret@10/25/50/100% "
                      + " ".join(f"{row[k]:7.4f}" for k in KEYS)
                      + f"  trials {row['trials']:4.0f} steps {row['steps']:5.0f} overhead "
                      f"{row['overhead_s']:5.1f} s ({100 * row['overhead_share']:.2f}%)", flush=True)
    return report(pd.DataFrame(rows), curves, methods, bench.scenario, args)


def report(frame: pd.DataFrame, curves: dict[str, list[np.ndarray]], methods: list[Method], scenario: str,
           args: argparse.Namespace) -> dict[str, Any]:
    summary = table(frame)
    print(f"\n{'method':30s} " + " ".join(f"{'regret@' + k.split('_')[1] + '%':>15s}" for k in KEYS)
          + "   rank@10/25/50/100%   overhead")
    for method, row in summary.iterrows():
        print(f"{method:30s} " + " ".join(f"{row[k + '_mean']:7.4f}±{row[k + '_se']:<7.4f}" for k in KEYS)
              + "   " + "/".join(f"{row['rank_' + k.split('_')[1]]:.1f}" for k in KEYS)
              + f"   {100 * row['overhead_share']:6.2f}%")
    print("(mean ± standard error over instances x seeds; rank 1 = lowest regret; overhead = searcher + "
          "scheduler wall time / simulated budget)")
    peers = [m.name for m in methods if not m.ours]
    best = best_peer(summary, peers)
    ours = frame[frame["method"] == OURS]
    with_meta = float(((ours["overhead_s"] + ours["meta_train_s"]) / ours["budget_s"]).mean())
    print(f"best peer at 50% of the budget: {best}; win rate counts (instance, seed, fraction) cells where "
          f"{OURS} has lower regret (ties half); {OURS} overhead with meta-training: {100 * with_meta:.2f}%")
    mode = "quick" if args.quick else "full"
    figures: dict[str, Any] = {"scenario": scenario, "mode": mode}
    figures.update({k: summary.loc[OURS, f"{k}_mean"] for k in KEYS})
    figures.update({"best_peer": best, "best_peer_regret_50": summary.loc[best, "regret_50_mean"],
                    "rank_50": summary.loc[OURS, "rank_50"],
                    "win_rate_vs_best_peer": win_rate(frame, OURS, best),
                    "overhead_share": summary.loc[OURS, "overhead_share"]})
    record_rows(args.store, NAME, [("runs", frame)], args.quick, searcher="quicktune",
                scheduler="freeze_thaw")
    title = f"{scenario} ({frame['instance'].nunique()} instances x {frame['seed'].nunique()} seeds)"
    save_figure(plot(curves, frame, OURS, title), f"{NAME}_{scenario}", args.quick)
    if not args.quick:
        write_summaries(frame, summary, scenario)
    print(f"RESULT {NAME} " + " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
    return figures


def write_summaries(frame: pd.DataFrame, summary: pd.DataFrame, scenario: str) -> list[Path]:
    """The committed summaries of a full run: per-run regrets and the per-method table."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    runs = frame[["scenario", "instance", "seed", "method", *KEYS, "trials", "steps", "overhead_share"]]
    paths = [RESULTS_DIR / f"{NAME}_{scenario}.csv", RESULTS_DIR / f"{NAME}_{scenario}_summary.csv"]
    runs.to_csv(paths[0], index=False, float_format="%.4g")
    summary.to_csv(paths[1], float_format="%.4g")
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB)")
    return paths


def main(argv: list[str] | None = None) -> None:
    started = time.perf_counter()
    run(parse_args(argv))
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
