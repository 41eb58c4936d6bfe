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

Budget: ``--budget-runs`` times the median recorded cost of one full run of the data set. Normalised
regret = (best - incumbent) / (best - worst) over every value recorded for the data set (exact for a
table), at 10/25/50/100 % of the budget; mean, standard error, average rank, win rate against the
best peer and overhead as in ``hpo_suite.py``.

    python benchmarks/quicktune_replay.py --quick     # 2 data sets, 1 seed, small budget (~2 min)
    python benchmarks/quicktune_replay.py             # 6 data sets x 3 seeds
    python benchmarks/quicktune_replay.py --datasets all   # every data set held out in turn x 3 seeds
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
from _hpo_methods import missing_peers, pick_methods
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


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_suite(args: argparse.Namespace, announce: bool = True) -> Suite:
    """The suite the arguments describe (each worker process builds its own: same data, same seeds)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("ray.tune", "syne_tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="After 0.17 or January 2028", category=FutureWarning)
    data = load_meta_dataset(args.meta_dataset)
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
    return Suite(name=NAME, label=Path(args.meta_dataset).name, blackbox=bench, metric=data.metric,
                 mode=data.mode, instances=names, seeds=seeds, budget_runs=budget_runs, methods=methods,
                 meta_data=data, settings=QUICK_SETTINGS if args.quick else SurrogateSettings(),
                 reference=lambda source: table_reference(data, source.instance),
                 meta_features=lambda instance: meta_features(data, instance), stem=NAME)


def run(args: argparse.Namespace) -> dict[str, Any]:
    return run_suite(build_suite(args), args, factory=functools.partial(build_suite, announce=False))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta-dataset", default=str(DEFAULT_DATA),
                        help="a Quick-Tune folder or a QTT-SEG-layout CSV")
    parser.add_argument("--datasets", default="",
                        help="comma-separated data sets to hold out in turn, or `all` (default: the first "
                             "2 quick, 6 full)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default 0 quick, 0,1,2 full)")
    parser.add_argument("--budget-runs", type=float, default=0.0,
                        help="budget in median full runs of the data set (default 2 quick, 10 full)")
    parser.add_argument("--methods", default="", help="comma-separated subset (default: all available)")
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
