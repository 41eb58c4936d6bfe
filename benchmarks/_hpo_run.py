"""The loop `hpo_suite.py` and `quicktune_replay.py` share: every method on every instance and seed of a
blackbox, replayed on a simulated clock, then the report (table, plot, store rows, summaries, RESULT).

A :class:`Suite` says what differs between them: the blackbox, the meta-training data (all instances;
each instance is tuned with a surrogate meta-trained on the *others*), the reference values regret is
normalised by, and the instances' meta-features.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import multiprocessing
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common  # benchmarks/ is on sys.path when run
import numpy as np
import pandas as pd
from _hpo_diagnosis import (
    allocation,
    allocation_plot,
    allocation_table,
    calibration,
    calibration_table,
    step_medians,
)
from _hpo_methods import OURS, Method, Prior
from _hpo_metrics import (
    CURVE,
    FRACTIONS,
    KEYS,
    best_peer,
    cd_plot,
    critical_difference,
    key,
    plot,
    table,
    win_rate,
)

from efficient_search.blackbox import Blackbox
from efficient_search.blackbox.sampling import ReferenceValues
from efficient_search.durable import atomic_write
from efficient_search.surrogate import DeepKernelSurrogate, MetaDataset, SurrogateSettings
from efficient_search.testing.replay_blackbox import BlackboxReplay


@dataclass
class Suite:
    """One comparison: which blackbox, where meta-training data and reference values come from."""

    #: Names the RESULT line, the store experiment (``bench-<name>``), plots and summaries.
    name: str
    #: The scenario or meta-dataset, for titles and file names.
    label: str
    blackbox: Blackbox
    metric: str
    mode: str
    instances: list[str]
    seeds: list[int]
    budget_runs: float
    methods: list[Method]
    #: Curves of every instance: the instance being tuned is dropped before meta-training.
    meta_data: MetaDataset
    settings: SurrogateSettings
    reference: Callable[[BlackboxReplay], ReferenceValues]
    meta_features: Callable[[str], dict[str, float] | None] = lambda instance: None
    #: File name stem of the plot and summaries (default ``<name>_<label>``).
    stem: str = ""
    #: A smoke run: its plots get a ``-quick`` suffix.
    quick: bool = False
    #: Keyword arguments for both Quick-Tune pairs' searcher and scheduler (a variant of ours).
    searcher_options: dict[str, Any] = field(default_factory=dict)
    scheduler_options: dict[str, Any] = field(default_factory=dict)

    @property
    def file_stem(self) -> str:
        return self.stem or f"{self.name}_{self.label}"


def leave_one_out(data: MetaDataset, instance: str) -> MetaDataset:
    """The meta-training data for tuning ``instance``: every other instance, never this one."""
    held_out = data.drop([instance])
    if instance in held_out.dataset_names:
        raise RuntimeError(f"meta-training data still holds the tuned instance {instance!r}.")
    return held_out


def meta_train(data: MetaDataset, instance: str, settings: SurrogateSettings,
               seed: int) -> tuple[DeepKernelSurrogate, float]:
    started = time.perf_counter()
    surrogate = DeepKernelSurrogate(settings=settings, seed=seed).fit(leave_one_out(data, instance))
    return surrogate, time.perf_counter() - started


#: Methods whose budget allocation is plotted (first instance, first seed), where they run.
ALLOCATION_PLOT = (OURS, "random+asha", "synetune_asha", "random+sh")


def simulate(method: Method, source: BlackboxReplay, ref: ReferenceValues, seed: int, budget: float,
             prior: Prior, medians: np.ndarray | None = None,
             logs: dict[str, Any] | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """One search: its row of figures (with where its budget went, see ``_hpo_diagnosis``, when the
    instance's per-step ``medians`` are given) and its regret curve; the outcome is kept in ``logs``."""
    started = time.perf_counter()
    outcome = method.replay(source, seed, prior, budget)
    wall = time.perf_counter() - started
    row = {"method": method.name, "ours": float(method.ours), "trials": float(outcome.trials),
           "steps": float(outcome.epochs), "overhead_s": outcome.overhead_s,
           "overhead_share": outcome.overhead_s / budget, "wall_s": wall}
    row.update({key(f): outcome.regret_at(f * budget, best=ref.best, worst=ref.worst) for f in FRACTIONS})
    if medians is not None:
        row.update(allocation(outcome, medians, source.mode))
    if logs is not None:
        logs[method.name] = outcome
    curve = np.asarray([outcome.regret_at(f * budget, best=ref.best, worst=ref.worst) for f in CURVE])
    return row, curve


def instance_runs(suite: Suite, instance: str) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Every method and seed on one instance: their rows and regret curves."""
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[np.ndarray]] = {m.name: [] for m in suite.methods}
    source = BlackboxReplay(suite.blackbox, instance, metric=suite.metric, mode=suite.mode)
    ref = suite.reference(source)
    budget = suite.budget_runs * ref.full_run_s
    surrogate, meta_s = meta_train(suite.meta_data, instance, suite.settings, seed=suite.seeds[0])
    prior = Prior(surrogate, suite.meta_features(instance), suite.searcher_options, suite.scheduler_options)
    held_out = suite.meta_data.select([instance])
    medians = step_medians(held_out.curves)
    checked = calibration(surrogate, held_out, prior.meta_features)
    print(f"{instance}: {source.max_steps} steps ({'continues' if source.continuable else 'restarts'}), "
          f"best/worst {ref.best:.4g}/{ref.worst:.4g} (of {ref.samples} configs), full run "
          f"{ref.full_run_s:.0f} s, budget {budget:.0f} simulated s; meta-trained on "
          f"{len(suite.meta_data.dataset_names) - 1} other instances in {meta_s:.1f} s", flush=True)
    def shown(name: str) -> str:
        return "/".join(f"{checked.get(f'{name}_{k}', np.nan):.2f}" for k in (0, 1, 3))

    print(f"  {instance} surrogate, conditioned on 0/1/3 steps of every run: NLL at the last step "
          f"{shown('nll_last')}, 95 % coverage {shown('cover95_last')}, Spearman {shown('spearman_last')}",
          flush=True)
    plotted = instance == suite.instances[0]
    for seed in suite.seeds:
        logs: dict[str, Any] | None = {} if plotted and seed == suite.seeds[0] else None
        for method in suite.methods:
            row, curve = simulate(method, source, ref, seed, budget, prior, medians,
                                  logs if method.name in ALLOCATION_PLOT else None)
            row.update({"scenario": suite.label, "instance": instance, "seed": float(seed),
                        "budget_s": budget, "meta_train_s": meta_s if method.name == OURS else 0.0})
            if method.name == OURS:
                row.update(checked)
            rows.append(row)
            curves[method.name].append(curve)
            print(f"  {instance} seed {seed} {method.name:30s} regret@10/25/50/100% "
                  + " ".join(f"{row[k]:7.4f}" for k in KEYS)
                  + f"  trials {row['trials']:4.0f} resumes {row['resumes']:4.0f} steps {row['steps']:5.0f} "
                  f"overhead {row['overhead_s']:5.1f} s ({100 * row['overhead_share']:.2f}%)", flush=True)
        if logs:
            title = f"{suite.label}: budget allocation on {instance}, seed {seed}"
            _common.save_figure(allocation_plot(logs, title), f"{suite.file_stem}_allocation", suite.quick)
    return rows, curves


Part = tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]

#: The suite a worker process built from the arguments (one per process: blackboxes do not pickle).
_WORKER_SUITE: dict[str, Suite] = {}


def partial_folder(args: argparse.Namespace, stem: str) -> Path:
    """Where finished instances of this run are kept until its report is written: one folder per
    plan (every argument but ``--jobs`` and ``--store``), so a rerun of the same command resumes. The
    digest does not cover the code: after changing a method, delete ``results/.partial/`` first."""
    plan = {k: v for k, v in sorted(vars(args).items()) if k not in ("jobs", "store")}
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return _common.RESULTS_DIR / ".partial" / f"{stem}-{digest}"


def load_part(path: Path) -> Part:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data["rows"], {m: [np.asarray(c) for c in curves] for m, curves in data["curves"].items()}


def kept_instance_runs(suite: Suite, instance: str, folder: Path | None) -> Part:
    """:func:`instance_runs`, written to ``folder/<instance>.json`` once the instance is done."""
    rows, curves = instance_runs(suite, instance)
    if folder is not None:
        data = {"rows": rows, "curves": {m: [c.tolist() for c in cs] for m, cs in curves.items()}}
        atomic_write(folder / f"{instance}.json", json.dumps(data))
    return rows, curves


def _worker_runs(factory: Callable[[argparse.Namespace], Suite], args: argparse.Namespace,
                 folder: Path | None, results: Path, instance: str) -> Part:
    _common.RESULTS_DIR = results  # plots a worker saves go where the parent's do (tests move it)
    if "suite" not in _WORKER_SUITE:
        import torch

        torch.set_num_threads(1)  # one core per worker
        _WORKER_SUITE["suite"] = factory(args)
    return kept_instance_runs(_WORKER_SUITE["suite"], instance, folder)


def run_suite(suite: Suite, args: argparse.Namespace,
              factory: Callable[[argparse.Namespace], Suite] | None = None) -> dict[str, Any]:
    """Every method on every instance and seed; returns the RESULT figures.

    With ``args.jobs`` > 1 and a ``factory`` (a picklable function that builds the same suite from
    ``args``), instances run in that many worker processes; rows and curves keep the instances'
    order, so the figures do not depend on the number of workers. Each finished instance is kept
    under :func:`partial_folder` (full mode), so a crashed or interrupted run continues where it
    stopped when the same command is run again; the folder goes once the report is written."""
    folder = None if args.quick else partial_folder(args, suite.file_stem)
    done = {i: load_part(folder / f"{i}.json") for i in suite.instances
            if folder is not None and (folder / f"{i}.json").is_file()}
    if done:
        print(f"resuming: {len(done)} of {len(suite.instances)} instances already done, read from {folder}",
              flush=True)
    todo = [i for i in suite.instances if i not in done]
    jobs = min(int(getattr(args, "jobs", 1) or 1), len(todo)) if factory else 1
    if jobs > 1:
        print(f"running {len(todo)} instances in {jobs} worker processes", flush=True)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            work = functools.partial(_worker_runs, factory, args, folder, _common.RESULTS_DIR)
            done.update(zip(todo, pool.map(work, todo), strict=True))
    else:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a worker: the same arithmetic, so the same figures
        try:
            done.update((i, kept_instance_runs(suite, i, folder)) for i in todo)
        finally:
            torch.set_num_threads(threads)
    parts = [done[i] for i in suite.instances]
    rows = [row for part_rows, _ in parts for row in part_rows]
    curves = {m.name: [c for _, part_curves in parts for c in part_curves[m.name]] for m in suite.methods}
    figures = report(pd.DataFrame(rows), curves, suite, args)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def report(frame: pd.DataFrame, curves: dict[str, list[np.ndarray]], suite: Suite,
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
    spent = allocation_table(frame)
    print(f"\n{'where the budget went':30s} {'started':>8s} {'resumes':>8s} {'epochs/trial':>13s} "
          f"{'max epochs':>10s} {'continued':>9s} {'continued, ended < median':>26s}")
    for method, row in spent.iterrows():
        print(f"{method:30s} {row['started']:8.1f} {row['resumes']:8.1f} {row['epochs_per_trial']:13.1f} "
              f"{row['max_epochs_trial']:10.1f} {row['continued']:9.1f} "
              f"{row['continued_below_median']:26.2f}")
    print("(means over instances x seeds; epochs/trial is the median per search; 'ended < median': share of "
          "trials run past their first step whose last value is below the instance's median at that step)")
    checks = calibration_table(frame, OURS)
    print(f"\n{OURS} surrogate on the held-out instance, conditioned on the first k steps of every run "
          "(mean over instances):")
    print(checks[[c for c in checks.columns if not c.endswith("_se")]].round(3).to_string())
    peers = [m.name for m in suite.methods if not m.ours]
    best = best_peer(summary, peers)
    ours = frame[frame["method"] == OURS]
    with_meta = float(((ours["overhead_s"] + ours["meta_train_s"]) / ours["budget_s"]).mean())
    print(f"best peer at 50% of the budget: {best}; win rate counts (instance, seed, fraction) cells where "
          f"{OURS} has lower regret (ties half); {OURS} overhead with meta-training: {100 * with_meta:.2f}%")
    mode = "quick" if args.quick else "full"
    figures: dict[str, Any] = {"scenario": suite.label, "mode": mode}
    figures.update({k: summary.loc[OURS, f"{k}_mean"] for k in KEYS})
    figures.update({"best_peer": best, "best_peer_regret_50": summary.loc[best, "regret_50_mean"],
                    "rank_50": summary.loc[OURS, "rank_50"],
                    "win_rate_vs_best_peer": win_rate(frame, OURS, best),
                    "overhead_share": summary.loc[OURS, "overhead_share"]})
    _common.record(args.store, suite.name, [("runs", frame)], args.quick, searcher="quicktune",
                   scheduler="freeze_thaw")
    title = f"{suite.label} ({frame['instance'].nunique()} instances x {frame['seed'].nunique()} seeds)"
    _common.save_figure(plot(curves, frame, OURS, title), suite.file_stem, args.quick)
    cd = critical_difference(frame, "regret_50")
    print(f"at 50% of the budget: Friedman p = {cd.friedman_p:.2g}, Nemenyi CD = {cd.cd:.2f} "
          f"(N = {cd.n_blocks} instances); groups not significantly different: {cd.cliques}")
    _common.save_figure(cd_plot(frame, "regret_50", OURS, title), f"{suite.file_stem}_cd", args.quick)
    if not args.quick:
        write_summaries(frame, summary, suite.file_stem)
        for part, table_ in (("allocation", spent), ("calibration", checks)):
            path = _common.RESULTS_DIR / f"{suite.file_stem}_{part}.csv"
            table_.to_csv(path, float_format="%.4g")
            print(f"wrote {path}")
    _common.print_result(suite.name, figures, args.quick)
    return figures


def write_summaries(frame: pd.DataFrame, summary: pd.DataFrame, stem: str) -> list[Path]:
    """The committed summaries of a full run: per-run regrets and the per-method table."""
    folder = _common.RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    runs = frame[["scenario", "instance", "seed", "method", *KEYS, "trials", "steps", "overhead_share"]]
    paths = [folder / f"{stem}.csv", folder / f"{stem}_summary.csv"]
    runs.to_csv(paths[0], index=False, float_format="%.4g")
    summary.to_csv(paths[1], float_format="%.4g")
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB)")
    return paths
