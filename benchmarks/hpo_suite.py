"""HPO suite: every method on every instance of a YAHPO Gym scenario, several seeds, simulated clock.

Each method (see ``_hpo_methods.py``: ours, their library peers and a no-meta-training ablation) searches
the scenario's *real* hyperparameters on one instance at a time, driven in-process by
``efficient_search.testing.replay.ReplaySimulation`` over a ``BlackboxReplay`` (the same Ray Searcher and
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
    python benchmarks/hpo_suite.py --horizon 10 --meta-configs 50 --seeds 3   # the short regime

``--horizon N`` cuts the fidelity at N (``ShortHorizon``): full runs, reference values, budgets and the
meta-training curves all end there; the summaries are named ``hpo_suite_<scenario>-h<N>``.

A full run writes ``results/hpo_suite_<scenario>.csv`` (one row per instance x seed x method, regret
at each budget fraction) and ``results/hpo_suite_<scenario>_summary.csv`` (per method: mean, standard
error, average rank); every run records its rows to the store (experiment ``bench-hpo_suite``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
import warnings
from typing import Any

from _common import RESULTS_DIR  # benchmarks/ is on sys.path when run
from _hpo_methods import missing_peers, parse_options, pick_methods
from _hpo_run import Suite, leave_one_out, run_suite

from efficient_search.blackbox import Blackbox, ShortHorizon, YahpoBenchmark
from efficient_search.blackbox.sampling import metric_mode, sample_meta_dataset
from efficient_search.surrogate import SurrogateSettings
from efficient_search.testing.replay_blackbox import BlackboxReplay

__all__ = ["leave_one_out", "main", "parse_args", "run"]
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
    parser.add_argument("--searcher-options", default="",
                        help="JSON keyword arguments for both Quick-Tune searchers, e.g. '{\"alpha\": 1}' "
                             "(a variant: its summaries are named ...-variant)")
    parser.add_argument("--scheduler-options", default="",
                        help="JSON keyword arguments for both freeze-thaw schedulers, e.g. '{\"eta\": 3}'")
    parser.add_argument("--meta-configs", type=int, default=0,
                        help="random configs per other instance for meta-training (default 32 quick, "
                             "64 full)")
    parser.add_argument("--horizon", type=int, default=0,
                        help="cut the fidelity at this value, e.g. 10 epochs (default: the scenario's)")
    parser.add_argument("--meta-steps", type=int, default=0,
                        help="meta-training gradient steps (default 1000)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes, one instance each at a time (default: one per core)")
    parser.add_argument("--quick", action="store_true", help="smoke run (< 3 minutes on 2 cores)")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    return parser.parse_args(argv)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def settle(args: argparse.Namespace, bench: YahpoBenchmark,
           searched: Blackbox | None = None) -> dict[str, Any]:
    """The run's plan from the arguments, with defaults by mode; ValueError for bad input. ``searched``
    is the blackbox the methods search (``bench`` cut to a horizon), ``bench`` by default."""
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
    if args.jobs < 1:
        raise ValueError(f"`--jobs` must be >= 1 worker process, but got {args.jobs}. Fix: e.g. --jobs 1.")
    for name in ("seeds", "budget_runs", "meta_configs", "meta_steps"):
        if getattr(args, name) < 0:
            raise ValueError(f"`--{name.replace('_', '-')}` must be > 0, but got {getattr(args, name)}. "
                             f"Fix: e.g. --{name.replace('_', '-')} {defaults[name]}.")
    steps = BlackboxReplay(searched or bench, instances[0], metric=metric, mode=mode).max_steps
    methods = pick_methods(args.methods, steps)
    return {"metric": metric, "mode": mode, "instances": instances,
            "seeds": list(range(args.seeds or defaults["seeds"])),
            "budget_runs": args.budget_runs or defaults["budget_runs"],
            "meta_configs": args.meta_configs or defaults["meta_configs"],
            "meta_steps": args.meta_steps or defaults["meta_steps"],
            "methods": methods}


def build_suite(args: argparse.Namespace, announce: bool = True) -> Suite:
    """The suite the arguments describe (each worker process builds its own: same data, same seeds)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("ray.tune", "syne_tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # statsmodels (syne-tune's BOHB) on a numpy default it will change; nothing to act on here.
    warnings.filterwarnings("ignore", message="After 0.17 or January 2028", category=FutureWarning)
    full = YahpoBenchmark(args.scenario, data_path=args.data_path)
    if args.horizon < 0:
        raise ValueError(f"`--horizon` must be >= 0 (0: the scenario's own), but got {args.horizon}. Fix: "
                         "e.g. --horizon 10.")
    bench: Blackbox = ShortHorizon(full, args.horizon) if args.horizon else full
    plan = settle(args, full, bench)
    started = time.perf_counter()
    data = sample_meta_dataset(bench, bench.instances, configs_per_instance=plan["meta_configs"],
                               seed=0, metric=plan["metric"], mode=plan["mode"])
    if announce:
        methods = ", ".join(m.name for m in plan["methods"])
        print(f"mode={'quick' if args.quick else 'full'} {bench!r}\n"
              f"instances {', '.join(plan['instances'])}; seeds {plan['seeds']}; budget "
              f"{plan['budget_runs']:g} full runs; metric {plan['metric']} ({plan['mode']})\n"
              f"methods {methods}", flush=True)
        for line in missing_peers():
            print(f"left out {line}", flush=True)
        print(f"sampled meta-training curves: {data.summary()} in {time.perf_counter() - started:.1f} s",
              flush=True)
    label = f"{full.scenario}-h{args.horizon}" if args.horizon else full.scenario
    searcher_options = parse_options(args.searcher_options, "--searcher-options")
    scheduler_options = parse_options(args.scheduler_options, "--scheduler-options")
    if searcher_options or scheduler_options:
        label = f"{label}-variant"
    return Suite(name=NAME, label=label, blackbox=bench, metric=plan["metric"], mode=plan["mode"],
                 instances=plan["instances"], seeds=plan["seeds"], budget_runs=plan["budget_runs"],
                 methods=plan["methods"], meta_data=data,
                 settings=SurrogateSettings(meta_train_steps=plan["meta_steps"],
                                            cost_train_steps=plan["meta_steps"]),
                 reference=lambda source: source.reference(), quick=args.quick,
                 searcher_options=searcher_options, scheduler_options=scheduler_options)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole suite on a YAHPO scenario; returns the RESULT figures."""
    return run_suite(build_suite(args), args, factory=functools.partial(build_suite, announce=False))


def main(argv: list[str] | None = None) -> None:
    started = time.perf_counter()
    run(parse_args(argv))
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
