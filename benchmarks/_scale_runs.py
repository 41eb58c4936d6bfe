"""The searches `scale.py` runs: every method on N simulated workers, and the decision-latency runs.

One task per (blackbox, instance): the instance's surrogate is meta-trained once (leave-one-out, as in
``_hpo_run``), then every seed x method x worker count is replayed with the same compute budget. One
task per method for the latency runs, each in a fresh process so its memory reads alone.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from _hpo_methods import OURS, Method, Prior
from _hpo_metrics import CURVE, FRACTIONS, key
from _hpo_run import Suite, meta_train

from efficient_search.blackbox.sampling import ReferenceValues
from efficient_search.testing.replay import ReplayOutcome
from efficient_search.testing.replay_blackbox import BlackboxReplay
from efficient_search.testing.replay_cluster import ClusterModel

#: The budget fraction of the one-worker run whose regret is every method's own target.
TARGET_FRACTION = 0.25
#: Decision calls timed at scale: Ray's searcher/scheduler calls and the native loops' ask/report/end.
DECISIONS = ("suggest", "on_trial_result", "choose_trial_to_run", "ask", "report", "end")


@dataclass(frozen=True)
class Noise:
    """The cluster every search runs on, relative to the instance's median epoch where it is a time."""

    startup_epochs: float
    jitter: float
    stragglers: float
    slowdown: float
    preemptions_per_hour: float

    def model(self, workers: int, seed: int, epoch_s: float) -> ClusterModel:
        return ClusterModel(workers=workers, startup_s=self.startup_epochs * epoch_s, jitter=self.jitter,
                            straggler_p=self.stragglers, straggler_slowdown=self.slowdown,
                            preemptions_per_hour=self.preemptions_per_hour,
                            recovery_s=self.startup_epochs * epoch_s, seed=seed)


def regret_trajectory(outcome: ReplayOutcome, ref: ReferenceValues) -> tuple[np.ndarray, np.ndarray]:
    """Times of the reported steps and the normalised regret of the incumbent after each."""
    times = np.asarray(outcome.times)
    regrets = np.asarray([outcome.regret_at(t, best=ref.best, worst=ref.worst) for t in times])
    return times, regrets


def time_to(outcome: ReplayOutcome, ref: ReferenceValues, target: float) -> float:
    """Simulated seconds until the incumbent's regret is at most ``target`` (inf if never)."""
    times, regrets = regret_trajectory(outcome, ref)
    hit = np.flatnonzero(regrets <= target + 1e-12)
    return float(times[hit[0]]) if hit.size else math.inf


def search_row(method: Method, source: BlackboxReplay, ref: ReferenceValues, seed: int, workers: int,
               budget_s: float, prior: Prior, noise: Noise) -> tuple[dict[str, Any], ReplayOutcome]:
    """One search on ``workers`` simulated workers for ``budget_s`` simulated wall-clock seconds."""
    started = time.perf_counter()
    cluster = noise.model(workers, seed, ref.full_run_s / source.max_steps)
    outcome = method.replay(source, seed, prior, budget_s, cluster)
    stats = outcome.cluster
    row = {"method": method.name, "ours": float(method.ours), "workers": float(workers), "seed": float(seed),
           "budget_s": budget_s, "trials": float(outcome.trials), "steps": float(outcome.epochs),
           "utilisation": stats.utilisation, "preemptions": float(stats.preemptions),
           "lost_share": stats.lost_s / stats.busy_s if stats.busy_s else 0.0,
           "overhead_s": outcome.overhead_s, "wall_s": time.perf_counter() - started}
    row.update({key(f): outcome.regret_at(f * budget_s, best=ref.best, worst=ref.worst) for f in FRACTIONS})
    return row, outcome


def instance_task(suite: Suite, instance: str, workers: list[int], budget_runs: float,
                  noise: Noise) -> tuple[list[dict[str, Any]], dict[str, list[list[float]]]]:
    """Every seed x method x worker count on one instance: rows, and regret curves keyed
    ``method|workers`` (regret at ``CURVE`` fractions of that run's wall-clock budget)."""
    source = BlackboxReplay(suite.blackbox, instance, metric=suite.metric, mode=suite.mode)
    ref = suite.reference(source)
    compute = budget_runs * ref.full_run_s
    needs_prior = any(m.name == OURS for m in suite.methods)
    prior = Prior()
    if needs_prior:
        surrogate, _ = meta_train(suite.meta_data, instance, suite.settings, seed=suite.seeds[0])
        prior = Prior(surrogate, suite.meta_features(instance))
    print(f"{suite.label}/{instance}: full run {ref.full_run_s:.0f} s, compute budget {compute:.0f} s "
          f"= {budget_runs:g} full runs; workers {workers}", flush=True)
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[list[float]]] = {}
    for seed in suite.seeds:
        for method in suite.methods:
            one_worker_time = target = math.nan
            telling = True
            for n in workers:
                budget = compute / n
                row, outcome = search_row(method, source, ref, seed, n, budget, prior, noise)
                if n == workers[0]:
                    target = outcome.regret_at(TARGET_FRACTION * budget, best=ref.best, worst=ref.worst)
                    one_worker_time = time_to(outcome, ref, target)
                    # Reached with the very first result: nothing for more workers to speed up.
                    telling = bool(outcome.times) and one_worker_time > outcome.times[0]
                reached = time_to(outcome, ref, target)
                speedup = one_worker_time / reached if math.isfinite(reached) else 0.0
                row.update({"blackbox": suite.label, "instance": instance, "target_regret": target,
                            "time_to_target_s": reached, "reached": float(math.isfinite(reached)),
                            "speedup": speedup if telling else math.nan})
                rows.append(row)
                curves.setdefault(f"{method.name}|{n}", []).append(
                    [outcome.regret_at(f * budget, best=ref.best, worst=ref.worst) for f in CURVE])
                print(f"  {instance} seed {seed} {method.name:30s} N={n:<4d} "
                      f"regret@50% {row['regret_50']:.4f} "
                      f"speed-up {row['speedup']:6.1f} util {row['utilisation']:.3f} trials "
                      f"{row['trials']:5.0f} wall {row['wall_s']:.1f} s", flush=True)
    return rows, curves


def resident_mb() -> float:
    """Memory this process holds now (resident set), in MiB; peak so far where /proc is missing."""
    try:
        with open("/proc/self/statm") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency_task(suite: Suite, method: Method, args: argparse.Namespace) -> dict[str, Any]:
    """``method`` on the first instance with ``args.latency_workers`` workers and no time budget until
    ``args.latency_trials`` trials have started, then ``args.latency_calls`` decision calls timed (or
    ``args.latency_wall`` wall seconds have passed: then timing starts where it got to, and ``trials``
    says where); memory held then."""
    instance = suite.instances[0]
    source = BlackboxReplay(suite.blackbox, instance, metric=suite.metric, mode=suite.mode)
    prior = Prior()
    if method.name == OURS:
        surrogate, _ = meta_train(suite.meta_data, instance, suite.settings, seed=0)
        prior = Prior(surrogate, suite.meta_features(instance))
    before = resident_mb()
    started = time.perf_counter()
    results = [0]  # budget steps reported when timing began

    def enough(outcome: ReplayOutcome) -> bool:
        """Stop once ``latency_calls`` calls are timed; past ``latency_wall`` seconds short of the trial
        count, start timing where the search got to (and give it up to a minute more)."""
        waited = time.perf_counter() - started
        if waited > args.latency_wall and outcome.trials < outcome.latency_after:
            outcome.latency_after = outcome.trials
        timed = sum(len(outcome.latencies.get(name, ())) for name in DECISIONS)
        if not timed:
            results[0] = outcome.epochs
        return timed >= args.latency_calls or waited > args.latency_wall + 60.0

    outcome = method.replay(source, 0, prior, math.inf, ClusterModel(workers=args.latency_workers, seed=0),
                            max_trials=args.latency_trials + args.latency_calls, until=enough,
                            latency_after=args.latency_trials)
    wall = time.perf_counter() - started
    calls = np.concatenate([outcome.latencies.get(name, []) for name in DECISIONS] or [[]]) * 1000
    row = {"method": method.name, "ours": float(method.ours), "instance": instance,
           "workers": float(args.latency_workers), "trials": float(outcome.latency_after),
           "results": float(results[0]),
           "calls": float(calls.size), "memory_mb": resident_mb() - before, "wall_s": wall}
    for stat, fn in (("median", np.median), ("p95", lambda v: np.percentile(v, 95)), ("max", np.max)):
        row[f"decide_ms_{stat}"] = float(fn(calls)) if calls.size else math.nan
    for name in DECISIONS:
        values = np.asarray(outcome.latencies.get(name, [])) * 1000
        if values.size:
            row[f"{name}_ms_p95"] = float(np.percentile(values, 95))
    print(f"  latency {method.name:30s} {row['trials']:6.0f} trials, {row['results']:6.0f} results, "
          f"{row['calls']:6.0f} calls timed: "
          f"median {row['decide_ms_median']:.2f} ms, p95 {row['decide_ms_p95']:.2f} ms, max "
          f"{row['decide_ms_max']:.1f} ms; memory {row['memory_mb']:.0f} MiB; {wall:.0f} s", flush=True)
    return row
