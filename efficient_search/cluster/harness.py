"""Run one search on a local autoscaling (or fixed-size) cluster and measure how the cluster served it.

The search runs through :func:`efficient_search.run` as usual (its trials land in the store under
the spec's name); the cluster figures land beside it in the experiment ``<name>-cluster``:

- one ``summary`` row (every figure of :func:`efficient_search.cluster.metrics.summarise`),
- one ``trial`` row per trial (``pending_s``, ``running_s``, ``cpus``),
- one ``node`` row per worker node joining or leaving (``t``: seconds since the search started),
- one ``sample`` row per cluster reading (``workers``, ``cpus``, ``busy_cpus``,
  ``pending_trials``, ``running_trials``),

all tagged with ``config.run`` (one id per harness run), ``config.kind`` and ``config.mode``
(``autoscale`` or ``fixed``); the experiment's metadata holds the cluster config and the summary.

Example::

    report = run_on_cluster("examples/autoscale.yaml", ClusterOptions(max_workers=3), prewarm=1)
    print(report.summary["utilisation"], report.summary["scale_up_s_p50"])
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from efficient_search.cluster.config import ClusterOptions, validate
from efficient_search.cluster.fidelity import FidelityRequest, FidelityResources
from efficient_search.cluster.local import LocalAutoscalingCluster, connect
from efficient_search.cluster.metrics import node_events, summarise
from efficient_search.cluster.timeline import ClusterSampler, TrialTimeline
from efficient_search.spec import ExperimentSpec
from efficient_search.validate import check_int

#: Extra seconds, beyond the idle timeout, to wait for the autoscaler to give nodes back.
TAIL_GRACE_S = 30.0


@dataclass
class ClusterReport:
    """What one harness run measured (plain data) and where it went."""

    experiment: str
    """The search's experiment name (its trials' rows)."""
    cluster_experiment: str
    """The experiment holding the cluster rows."""
    mode: str
    """``autoscale`` or ``fixed``."""
    summary: dict[str, float]
    samples: list[dict[str, Any]]
    intervals: list[dict[str, Any]]
    events: list[dict[str, Any]]
    start: float
    end: float
    plot: Path | None = None


def trial_cpus(spec: ExperimentSpec) -> float:
    """CPUs one trial of ``spec`` holds at full fidelity."""
    from efficient_search.trial import cpus_per_trial

    return cpus_per_trial(spec.resources)


def capacity(options: ClusterOptions, cluster: LocalAutoscalingCluster) -> float:
    """CPUs of the cluster at its largest."""
    return options.head_cpus + sum(spec["resources"].get("CPU", 0) * spec["max_workers"]
                                   for spec in cluster.worker_types.values())


def prepare_spec(spec: ExperimentSpec, options: ClusterOptions, cluster: LocalAutoscalingCluster,
                 fidelity: FidelityRequest | None) -> ExperimentSpec:
    """Check that the cluster can serve ``spec`` and set what autoscaling needs.

    Without ``max_concurrent_trials`` a custom searcher has Tune queue one trial at a time, which
    grows the cluster one node at a time: it is set to the most trials the largest cluster holds.
    """
    need = trial_cpus(spec)
    largest = max([options.head_cpus] + [t["resources"].get("CPU", 0)
                                         for t in cluster.worker_types.values()])
    if need > largest:
        raise ValueError(f"A trial of `resources` {dataclasses.asdict(spec.resources)} needs {need:g} "
                         f"CPUs, but the largest node has {largest}: the autoscaler could never place "
                         "it. Fix: fewer CPUs per trial, or a node type with more CPUs.")
    if fidelity is not None and spec.resources.num_workers != 0:
        raise ValueError("Fidelity-aware requests size the trial process, but `resources.num_workers` "
                         f"is {spec.resources.num_workers} (Ray Train workers reserve their own). "
                         "Fix: resources: {num_workers: 0, cpus_per_worker: 1}, or drop "
                         "--fidelity-resources.")
    changes: dict[str, Any] = {}
    if spec.max_concurrent_trials is None:
        slots = max(1, math.floor(capacity(options, cluster) / max(need, 1e-9)))
        changes["max_concurrent_trials"] = slots
        print(f"autoscale: max_concurrent_trials unset; using {slots} (trials the largest cluster "
              "holds) so that the searcher queues enough trials to scale up", flush=True)
    if fidelity is not None:
        from efficient_search.registry import make_scheduler

        inner = make_scheduler(spec.scheduler, seed=spec.seed, options=spec.scheduler_options)
        changes["scheduler"] = FidelityResources(inner, dataclasses.replace(fidelity, cpus=need))
    if not changes:
        return spec
    data = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    return ExperimentSpec.from_dict(data | changes)


def run_on_cluster(spec: Any, options: ClusterOptions | None = None, *, prewarm: int = 0,
                   fidelity: FidelityRequest | None = None, sample_interval_s: float = 0.5,
                   plot_path: str | Path | None = None, **overrides: Any) -> ClusterReport:
    """Start a local cluster, run ``spec`` on it, measure, record to the store, stop the cluster.

    ``prewarm`` asks the autoscaler (``ray.autoscaler.sdk.request_resources``) for that many trial-
    sized bundles before the search starts, and drops the request once the first trial runs.
    ``overrides`` replace spec fields. This process must not be connected to another Ray.
    """
    import ray

    from efficient_search.api import as_spec

    options = options or ClusterOptions()
    check_int("prewarm", prewarm, min=0, expected="an integer >= 0 (trial-sized bundles)")
    if ray.is_initialized():
        raise ValueError("This process is already connected to a Ray cluster; the harness starts its "
                         "own. Fix: call ray.shutdown() first, or run the harness in a new process "
                         "(`efficient-search autoscale SPEC`).")
    spec = as_spec(spec)
    if overrides:
        data = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        spec = ExperimentSpec.from_dict(data | overrides)
    cluster = LocalAutoscalingCluster(options)
    validate(cluster._config)
    spec = prepare_spec(spec, options, cluster, fidelity)
    mode = "fixed" if options.fixed is not None else "autoscale"
    print(f"autoscale: starting a local {mode} cluster ({_describe(cluster)})", flush=True)
    cluster.start()
    try:
        connect(cluster, log_to_driver=False)
        report = _measure(spec, options, cluster, mode, prewarm, sample_interval_s)
    finally:
        ray.shutdown()
        cluster.shutdown()
    record(spec, report, options, prewarm=prewarm, fidelity=fidelity)
    report.plot = plot_timeline(report, plot_path or default_plot_path(spec))
    print(f"autoscale: plot saved to {report.plot}", flush=True)
    return report


def _describe(cluster: LocalAutoscalingCluster) -> str:
    return ", ".join(f"{name}: {spec['resources'].get('CPU', 0)} CPU x "
                     f"{spec.get('min_workers', 0)}-{spec['max_workers']}"
                     for name, spec in cluster.worker_types.items())


def _measure(spec: ExperimentSpec, options: ClusterOptions, cluster: LocalAutoscalingCluster,
             mode: str, prewarm: int, interval_s: float) -> ClusterReport:
    import efficient_search as es

    min_workers = sum(t.get("min_workers", 0) for t in cluster.worker_types.values())
    if min_workers:
        cluster.wait_for_workers(min_workers)
    prewarmed = prewarm > 0

    def release_prewarm() -> None:
        nonlocal prewarmed
        if prewarmed:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[])
            prewarmed = False

    timeline = TrialTimeline(on_first_start=release_prewarm)
    progress = _Progress()
    sampler = ClusterSampler(timeline, interval_s, on_sample=progress)
    sampler.start()
    while not sampler.samples and sampler.is_alive():
        time.sleep(0.05)
    start = time.time()
    progress.start = start
    if prewarmed:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[{"CPU": trial_cpus(spec)}] * prewarm)
        print(f"autoscale: pre-warm: asked for {prewarm} trial-sized bundle(s)", flush=True)
    try:
        es.run(spec, callbacks=[timeline])
        end = time.time()
        release_prewarm()
        tail_end = end
        if mode == "autoscale":
            tail_end = _wait_for_scale_down(sampler, min_workers, options.idle_timeout_s + TAIL_GRACE_S)
    finally:
        sampler.stop()
    if sampler.error is not None and not sampler.samples:
        raise RuntimeError(f"The cluster sampler failed: {sampler.error!r}") from sampler.error
    samples = sampler.samples
    intervals = timeline.intervals(until=end)
    summary = summarise(samples, intervals, start=start, end=end, tail_end=tail_end,
                        first_start=timeline.first_start)
    print("autoscale: " + " ".join(f"{k}={v:.3g}" for k, v in summary.items()), flush=True)
    return ClusterReport(experiment=spec.name, cluster_experiment=f"{spec.name}-cluster", mode=mode,
                         summary=summary, samples=samples, intervals=intervals,
                         events=node_events(samples), start=start, end=end)


class _Progress:
    """Print a line whenever the number of worker nodes changes."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.workers: int | None = None

    def __call__(self, sample: dict[str, Any]) -> None:
        if sample["workers"] == self.workers:
            return
        since = sample["t"] - self.start if self.start else 0.0
        print(f"autoscale: t={since:6.1f}s workers {self.workers} -> {sample['workers']} "
              f"({sample['cpus']:g} CPUs, {sample['running_trials']} running, "
              f"{sample['pending_trials']} pending)", flush=True)
        self.workers = sample["workers"]


def _wait_for_scale_down(sampler: ClusterSampler, min_workers: int, timeout_s: float) -> float:
    """Time at which the cluster shrank back to ``min_workers`` (or the timeout ran out)."""
    deadline = time.time() + timeout_s
    print(f"autoscale: search done; waiting up to {timeout_s:.0f} s for the cluster to scale down",
          flush=True)
    while time.time() < deadline:
        if sampler.samples and sampler.samples[-1]["workers"] <= min_workers:
            return float(sampler.samples[-1]["t"])
        time.sleep(sampler.interval_s)
    print(f"autoscale: the cluster still had {sampler.samples[-1]['workers']} workers after "
          f"{timeout_s:.0f} s; resource-seconds count them until then", flush=True)
    return time.time()


# -- the store ---------------------------------------------------------------------------------
def record(spec: ExperimentSpec, report: ClusterReport, options: ClusterOptions, *, prewarm: int,
           fidelity: FidelityRequest | None) -> None:
    """Write the report's rows and metadata to ``<name>-cluster`` of the spec's store."""
    from efficient_search.store import ParquetStoreCallback

    run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(report.start))
    inner = getattr(spec.scheduler, "scheduler", spec.scheduler)
    callback = ParquetStoreCallback(
        spec.store, experiment=report.cluster_experiment, searcher=_label(spec.searcher),
        scheduler=_label(inner), seed=spec.seed, hardware=f"{platform.machine()} local fake nodes",
        metadata={"experiment": spec.name, "mode": report.mode, "run": run_id,
                  "options": {k: v for k, v in dataclasses.asdict(options).items()},
                  "prewarm": prewarm,
                  "fidelity": dataclasses.asdict(fidelity) if fidelity else None,
                  "summary": report.summary, "rows": "kind: summary | trial | node | sample"})
    callback.setup()
    base = {"run": run_id, "mode": report.mode, "experiment": spec.name}

    def add(kind: str, key: str, numbers: dict[str, Any], strings: dict[str, str] | None = None) -> None:
        config = {**base, "kind": kind, **(strings or {})}
        callback.add(f"{run_id}-{kind}-{key}", config,
                     {"training_iteration": 1, "timestamp": report.end, **numbers}, "TERMINATED")

    add("summary", "0", report.summary)
    per_trial: dict[str, dict[str, float]] = {}
    for span in report.intervals:
        row = per_trial.setdefault(span["trial_id"], {"pending_s": 0.0, "running_s": 0.0,
                                                      "cpus": span["cpus"], "first_start": math.nan})
        row[f"{span['status'].lower()}_s"] += span["end"] - span["start"]
        since = span["start"] - report.start
        if span["status"] == "RUNNING" and not since >= row["first_start"]:  # NaN: none yet
            row["first_start"] = since
    for trial_id, numbers in per_trial.items():
        add("trial", trial_id, numbers, {"trial": trial_id})
    for i, event in enumerate(report.events):
        add("node", str(i), {"t": event["t"] - report.start, "workers": event["workers"]},
            {"event": event["kind"], "node_id": event["node_id"]})
    for i, sample in enumerate(report.samples):
        add("sample", str(i), {"t": sample["t"] - report.start,
                               **{k: sample[k] for k in ("workers", "cpus", "busy_cpus",
                                                         "pending_trials", "running_trials")}})
    callback.flush()


def _label(obj: Any) -> str:
    return obj if isinstance(obj, str) else type(obj).__name__


def default_plot_path(spec: ExperimentSpec) -> Path:
    """``<store>/_plots/<name>-cluster.png`` (``./plots/...`` for a URI store)."""
    folder = Path("plots") if "://" in spec.store else Path(spec.store) / "_plots"
    return folder / f"{spec.name}-cluster.png"


def plot_timeline(report: ClusterReport, path: str | Path) -> Path:
    """Worker nodes and CPUs (top), running and pending trials (bottom) over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from efficient_search.report import save_figure

    t = [s["t"] - report.start for s in report.samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    top.step(t, [s["workers"] for s in report.samples], where="post", label="worker nodes")
    top.step(t, [s["cpus"] for s in report.samples], where="post", label="CPUs provisioned",
             linestyle="--")
    top.step(t, [s["busy_cpus"] for s in report.samples], where="post", label="CPUs reserved",
             linestyle=":")
    top.set(ylabel="count", title=f"{report.experiment} ({report.mode}): utilisation "
                                   f"{report.summary['utilisation']:.0%}, makespan "
                                   f"{report.summary['makespan_s']:.0f} s")
    top.legend(fontsize=8, loc="upper right")
    bottom.step(t, [s["running_trials"] for s in report.samples], where="post", label="running trials")
    bottom.step(t, [s["pending_trials"] for s in report.samples], where="post", label="pending trials",
                linestyle="--")
    bottom.set(xlabel="seconds since the search started", ylabel="trials")
    bottom.legend(fontsize=8, loc="upper right")
    for axis in (top, bottom):
        axis.axvline(0.0, color="grey", linewidth=0.8)
        axis.axvline(report.end - report.start, color="grey", linewidth=0.8)
    return save_figure(fig, Path(path))
