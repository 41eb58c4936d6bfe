"""Figures of an autoscaling run, from the sampler's readings and the trial timeline (plain data).

Definitions (all times in wall-clock seconds; a reading holds until the next one):

- **makespan**: from the start of the search to its end.
- **time to first trial**: from the start of the search to the first trial running.
- **resource-seconds**: CPUs of the alive nodes integrated over time, from the start of the search
  until the autoscaler has given back what it no longer needs (the scale-down *tail*; a fixed
  cluster ends with the search), i.e. what a cloud bill would count.
- **busy resource-seconds**: CPUs reserved by the search (total minus available) integrated over the
  same window; **utilisation** = busy / provisioned resource-seconds.
- **scale-up latency**: for each episode of unmet demand (a trial pending while no node has room
  for its request), the time from its start to the first worker node joining.
- **scale-down latency**: for each worker node removed, the time from the moment the search
  stopped needing that capacity (reserved CPUs fell to what remains after the removal) to the
  removal.
- **pending time** of a trial: the seconds it spent PENDING (waiting for resources and for its
  process to start), summed over its restarts.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

EPS = 1e-6


def integrate(samples: Sequence[dict[str, Any]], key: str, start: float, end: float) -> float:
    """Integral of ``samples[i][key]`` over ``[start, end]``, each reading held until the next."""
    total = 0.0
    for i, sample in enumerate(samples):
        t0 = max(sample["t"], start)
        t1 = min(samples[i + 1]["t"] if i + 1 < len(samples) else end, end)
        if t1 > t0:
            total += float(sample[key]) * (t1 - t0)
    return total


def node_events(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worker nodes joining (``up``) and leaving (``down``), from consecutive readings."""
    events: list[dict[str, Any]] = []
    for before, after in zip(samples, samples[1:], strict=False):
        old, new = set(before["worker_ids"]), set(after["worker_ids"])
        events += [{"t": after["t"], "kind": "up", "node_id": n, "workers": after["workers"]}
                   for n in sorted(new - old)]
        events += [{"t": after["t"], "kind": "down", "node_id": n, "workers": after["workers"]}
                   for n in sorted(old - new)]
    return events


def starved(sample: dict[str, Any]) -> bool:
    """Whether a trial waits while no capacity is free for the smallest pending request."""
    free = sample["cpus"] - sample["busy_cpus"]
    return sample["pending_trials"] > 0 and free + EPS < sample["pending_min_cpus"]


def demand_episodes(samples: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """(start, end) of every stretch of unmet demand; it ends at the first reading without it."""
    episodes, start = [], None
    for sample in samples:
        if starved(sample) and start is None:
            start = sample["t"]
        elif not starved(sample) and start is not None:
            episodes.append((start, sample["t"]))
            start = None
    if start is not None:
        episodes.append((start, samples[-1]["t"]))
    return episodes


def scale_up_latencies(samples: Sequence[dict[str, Any]]) -> list[float]:
    """Per episode of unmet demand answered by a new node: seconds until the first node joined."""
    ups = [e["t"] for e in node_events(samples) if e["kind"] == "up"]
    latencies = []
    for start, end in demand_episodes(samples):
        joined = [t for t in ups if start < t <= end]
        if joined:
            latencies.append(joined[0] - start)
    return latencies


def scale_down_latencies(samples: Sequence[dict[str, Any]]) -> list[float]:
    """Per worker node removed: seconds since the search last needed the capacity it took away."""
    latencies = []
    events = node_events(samples)
    joined = {e["node_id"]: e["t"] for e in events if e["kind"] == "up"}
    for event in (e for e in events if e["kind"] == "down"):
        index = next(i for i, s in enumerate(samples) if s["t"] == event["t"])
        remaining = samples[index]["cpus"]
        no_longer_needed = joined.get(event["node_id"], samples[0]["t"])
        for i in range(index - 1, -1, -1):
            if samples[i]["busy_cpus"] > remaining + EPS:
                no_longer_needed = max(no_longer_needed, samples[i + 1]["t"])
                break
        latencies.append(event["t"] - no_longer_needed)
    return latencies


def pending_seconds(intervals: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Seconds each trial spent PENDING."""
    totals: dict[str, float] = {}
    for span in intervals:
        totals.setdefault(span["trial_id"], 0.0)
        if span["status"] == "PENDING":
            totals[span["trial_id"]] += span["end"] - span["start"]
    return totals


def trial_cpu_seconds(intervals: Sequence[dict[str, Any]]) -> float:
    """CPU-seconds the trials held while RUNNING, by Tune's account."""
    return sum((s["end"] - s["start"]) * s["cpus"] for s in intervals if s["status"] == "RUNNING")


def median(values: Sequence[float]) -> float:
    """Median, NaN for no values."""
    return float(statistics.median(values)) if values else float("nan")


def summarise(samples: Sequence[dict[str, Any]], intervals: Sequence[dict[str, Any]], *,
              start: float, end: float, tail_end: float,
              first_start: float | None) -> dict[str, float]:
    """Every figure of one run (see the module docstring)."""
    if not samples:
        raise ValueError("No cluster readings were taken: the sampler never ran. Fix: check that "
                         "the cluster was reachable (see the sampler's error).")
    provisioned = integrate(samples, "cpus", start, max(end, tail_end))
    busy = integrate(samples, "busy_cpus", start, max(end, tail_end))
    pending = list(pending_seconds(intervals).values())
    ups, downs = scale_up_latencies(samples), scale_down_latencies(samples)
    events = node_events(samples)
    return {
        "makespan_s": end - start,
        "time_to_first_trial_s": (first_start - start) if first_start else float("nan"),
        "resource_s": provisioned,
        "resource_s_during_search": integrate(samples, "cpus", start, end),
        "busy_resource_s": busy,
        "trial_cpu_s": trial_cpu_seconds(intervals),
        "utilisation": busy / provisioned if provisioned > 0 else float("nan"),
        "scale_tail_s": max(0.0, tail_end - end),
        "scale_up_s_p50": median(ups),
        "scale_up_s_max": max(ups, default=float("nan")),
        "scale_up_events": float(len(ups)),
        "scale_down_s_p50": median(downs),
        "scale_down_s_max": max(downs, default=float("nan")),
        "nodes_added": float(sum(1 for e in events if e["kind"] == "up")),
        "nodes_removed": float(sum(1 for e in events if e["kind"] == "down")),
        "max_workers_seen": float(max(s["workers"] for s in samples)),
        "pending_s_p50": median(pending),
        "pending_s_max": max(pending, default=float("nan")),
        "trials": float(len(pending)),
    }
