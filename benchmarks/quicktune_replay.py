"""Quick-Tune replay benchmark: leave one data set out, meta-train on the rest, tune it by replaying.

A meta-dataset (the Quick-Tune folder, or a QTT-SEG-layout CSV: told apart by ``load_meta_dataset``)
becomes a ``TableBenchmark`` over the *real* hyperparameters: every method proposes a configuration
of the same space and gets the recorded run of the held-out data set nearest to it (log-scaled,
range-normalised distance; ties seeded; grids of up to 8 recorded values are searched as choices);
each epoch reports that run's recorded metric and adds its recorded seconds to a simulated clock.
The surrogate of ``quicktune+freeze_thaw`` is meta-trained on the *other* data sets' recorded runs
(once per held-out data set, first seed) and gets the data set's meta-features. The methods are
``hpo_suite.py``'s (see ``_hpo_methods.py``): ours, the same library peers (random, random + ASHA,
Ray's BOHB pair, Optuna TPE + ASHA, TPE + Ray's HyperBand, Optuna TPE with its own pruner, syne-tune's
ASHA and BOHB) and the no-meta-training ablation, on a simulated clock one trial at a time.

Regimes (``--regime``; each writes its own summaries):

- ``full`` (default): the meta-dataset as recorded (the Quick-Tune folder: 50 epochs, meta-features);
- ``short``: the QTT-SEG-like regime: curves cut to the first ``SHORT["horizon"]`` epochs, at most
  ``SHORT["max_configs"]`` runs per data set (seeded subsample), meta-features dropped. With
  ``--meta-dataset lcbench`` the table is sampled from YAHPO Gym's LCBench surrogate instead:
  ``LCBENCH_CONFIGS`` random configurations per task (seed 0), their curves over every epoch, then
  the regime's cuts. ``--horizon``, ``--max-configs`` and ``--no-meta-features`` set the cuts one
  by one.

Budget: ``--budget-runs`` times the median recorded cost of one full run of the data set. Normalised
regret = (best - incumbent) / (best - worst) over every value recorded for the data set (exact for a
table), at 10/25/50/100 % of the budget; mean, standard error, average rank, win rate against the
best peer and overhead as in ``hpo_suite.py``.

    python benchmarks/quicktune_replay.py --quick     # 2 data sets, 1 seed, small budget (~2 min)
    python benchmarks/quicktune_replay.py             # 6 data sets x 3 seeds
    python benchmarks/quicktune_replay.py --datasets all   # every data set held out in turn x 3 seeds
    python benchmarks/quicktune_replay.py --datasets all --regime short    # 10 epochs, <= 60 runs each
    python benchmarks/quicktune_replay.py --meta-dataset lcbench --datasets all --regime short
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS_DIR  # benchmarks/ is on sys.path when run
from _hpo_methods import missing_peers, parse_options, pick_methods
from _hpo_run import Suite, run_suite

from efficient_search.blackbox.sampling import ReferenceValues
from efficient_search.blackbox.tables import TableBenchmark
from efficient_search.surrogate import MetaDataset, SurrogateSettings, load_meta_dataset
from efficient_search.testing.replay_blackbox import BlackboxReplay

NAME = "quicktune_replay"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "quicktune-mtlbm-extended"
#: Numeric hyperparameters with at most this many recorded values are searched as a choice of them.
CHOICES_UP_TO = 8
QUICK_SETTINGS = SurrogateSettings(meta_train_steps=150, cost_train_steps=150, max_train_points=5000)
#: The short-horizon regime: what the held-out SAM meta-dataset looks like (10 epochs, ~53 runs per
#: data set, no meta-features).
SHORT: dict[str, Any] = {"horizon": 10, "max_configs": 60, "meta_features": False}
#: Random configurations sampled per LCBench task for ``--meta-dataset lcbench``.
LCBENCH_CONFIGS = 50
LCBENCH = "lcbench"


def table_reference(data: MetaDataset, instance: str) -> ReferenceValues:
    """Best and worst value recorded for ``instance`` (any epoch) and the median seconds of its complete
    runs (of all runs if none is complete)."""
    rows = np.flatnonzero(data.datasets == instance)
    curves = data.curves[rows]
    best, worst = (np.nanmax(curves), np.nanmin(curves)) if data.mode == "max" else (
        np.nanmin(curves), np.nanmax(curves))
    totals = data.cumulative_costs()[rows, -1]
    complete = data.observed_steps()[rows] == data.n_steps
    return ReferenceValues(float(best), float(worst), float(np.median(totals[complete] if complete.any()
                                                                      else totals)), len(rows))


def meta_features(data: MetaDataset, instance: str) -> dict[str, float] | None:
    meta = data.meta_features
    return None if meta.shape[1] == 0 else {str(k): float(v) for k, v in meta.loc[instance].items()}


def regime_cuts(args: argparse.Namespace) -> dict[str, Any]:
    """The horizon, runs per data set and meta-features the arguments ask for (0: not cut)."""
    cuts: dict[str, Any] = dict(SHORT) if args.regime == "short" else {"horizon": 0, "max_configs": 0,
                                                                          "meta_features": True}
    for name in ("horizon", "max_configs"):
        value = getattr(args, name)
        if value < 0:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 0 (0: not cut), but got {value}. "
                             f"Fix: e.g. --{name.replace('_', '-')} {SHORT[name]}.")
        cuts[name] = value or cuts[name]
    if args.no_meta_features:
        cuts["meta_features"] = False
    return cuts


def load_table(args: argparse.Namespace) -> tuple[MetaDataset, str]:
    """The meta-dataset of the run, cut to its regime, and the label that names its summaries."""
    cuts = regime_cuts(args)
    if args.meta_dataset == LCBENCH:
        from efficient_search.blackbox import YahpoBenchmark
        from efficient_search.blackbox.sampling import sample_meta_dataset

        bench = YahpoBenchmark(LCBENCH)
        data = sample_meta_dataset(bench, bench.instances, configs_per_instance=LCBENCH_CONFIGS, seed=0)
        label = LCBENCH
    else:
        data = load_meta_dataset(args.meta_dataset)
        label = Path(args.meta_dataset).name
    if cuts["horizon"]:
        data = data.truncate(int(cuts["horizon"]))
    if cuts["max_configs"]:
        data = data.subsample(int(cuts["max_configs"]), seed=0)
    if not cuts["meta_features"]:
        data = data.without_meta_features()
    if cuts == SHORT:
        return data, f"{label}-short"
    parts = [f"h{cuts['horizon']}" if cuts["horizon"] else "", f"c{cuts['max_configs']}"
             if cuts["max_configs"] else "", "" if cuts["meta_features"] else "nometa"]
    return data, "-".join([label, *[p for p in parts if p]])


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_suite(args: argparse.Namespace, announce: bool = True) -> Suite:
    """The suite the arguments describe (each worker process builds its own: same data, same seeds)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("ray.tune", "syne_tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="After 0.17 or January 2028", category=FutureWarning)
    data, label = load_table(args)
    bench = TableBenchmark(data, seed=0, choices_up_to=CHOICES_UP_TO)
    names = (data.dataset_names if args.datasets == "all"
             else _names(args.datasets) or data.dataset_names[: 2 if args.quick else 6])
    unknown = [n for n in names if n not in data.dataset_names]
    if unknown:
        raise ValueError(f"`--datasets` names {unknown}, not data sets of the meta-dataset. Fix: pass some "
                         f"of {', '.join(data.dataset_names)}.")
    if args.jobs < 1:
        raise ValueError(f"`--jobs` must be >= 1 worker process, but got {args.jobs}. Fix: e.g. --jobs 1.")
    seeds = [int(s) for s in _names(args.seeds)] or ([0] if args.quick else [0, 1, 2])
    methods = pick_methods(args.methods, BlackboxReplay(bench, names[0]).max_steps)
    budget_runs = args.budget_runs or (2.0 if args.quick else 10.0)
    if announce:
        print(f"mode={'quick' if args.quick else 'full'} {data.summary()}\n{bench!r}\nheld out in turn: "
              f"{', '.join(names)}; seeds {seeds}; budget {budget_runs:g} full runs; methods "
              f"{', '.join(m.name for m in methods)}; nearest recorded run for every proposal", flush=True)
        for line in missing_peers():
            print(f"left out {line}", flush=True)
    searcher_options = parse_options(args.searcher_options, "--searcher-options")
    scheduler_options = parse_options(args.scheduler_options, "--scheduler-options")
    if searcher_options or scheduler_options:
        label = f"{label}-variant"
    default = label == Path(str(DEFAULT_DATA)).name
    return Suite(name=NAME, label=label, blackbox=bench, metric=data.metric,
                 mode=data.mode, instances=names, seeds=seeds, budget_runs=budget_runs, methods=methods,
                 meta_data=data, settings=QUICK_SETTINGS if args.quick else SurrogateSettings(),
                 reference=lambda source: table_reference(data, source.instance),
                 meta_features=lambda instance: meta_features(data, instance),
                 stem=NAME if default else f"{NAME}_{label}", quick=args.quick,
                 searcher_options=searcher_options, scheduler_options=scheduler_options)


def run(args: argparse.Namespace) -> dict[str, Any]:
    return run_suite(build_suite(args), args, factory=functools.partial(build_suite, announce=False))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta-dataset", default=str(DEFAULT_DATA),
                        help="a Quick-Tune folder, a QTT-SEG-layout CSV, or `lcbench` (a table sampled "
                             "from YAHPO Gym's LCBench surrogate)")
    parser.add_argument("--regime", choices=("full", "short"), default="full",
                        help=f"full: as recorded; short: {SHORT['horizon']} epochs, <= "
                             f"{SHORT['max_configs']} runs per data set, no meta-features")
    parser.add_argument("--horizon", type=int, default=0, help="cut curves to this many epochs")
    parser.add_argument("--max-configs", type=int, default=0, help="at most this many runs per data set")
    parser.add_argument("--no-meta-features", action="store_true", help="drop the task meta-features")
    parser.add_argument("--datasets", default="",
                        help="comma-separated data sets to hold out in turn, or `all` (default: the first "
                             "2 quick, 6 full)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default 0 quick, 0,1,2 full)")
    parser.add_argument("--budget-runs", type=float, default=0.0,
                        help="budget in median full runs of the data set (default 2 quick, 10 full)")
    parser.add_argument("--methods", default="", help="comma-separated subset (default: all available)")
    parser.add_argument("--searcher-options", default="",
                        help="JSON keyword arguments for both Quick-Tune searchers, e.g. '{\"alpha\": 1}' "
                             "(a variant: its summaries are named ...-variant)")
    parser.add_argument("--scheduler-options", default="",
                        help="JSON keyword arguments for both freeze-thaw schedulers, e.g. '{\"eta\": 3}'")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes, one held-out data set each at a time (default: one per core)")
    parser.add_argument("--quick", action="store_true", help="smoke run (~2 minutes)")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    started = time.perf_counter()
    run(parse_args(argv))
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
