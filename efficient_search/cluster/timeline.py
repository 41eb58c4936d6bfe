"""What happens on the cluster over time: node samples (a thread) and trial states (a Tune callback).

Both record plain data (lists of dicts, wall-clock seconds), which
:mod:`efficient_search.cluster.metrics` turns into figures and the harness writes to the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

PENDING, RUNNING = "PENDING", "RUNNING"


def requested_cpus(trial: Any) -> float:
    """CPUs a Tune trial reserves (every bundle of its placement group)."""
    factory = getattr(trial, "placement_group_factory", None)
    if factory is None:
        return 0.0
    return float(factory.required_resources.get("CPU", 0.0))


class TrialTimeline(Callback):
    """Record each trial's PENDING and RUNNING intervals and its CPU request.

    Tune's controller calls ``on_step_begin``/``on_step_end`` many times a second; the status of
    every trial is read there, and the start and end hooks give exact times.
    ``on_first_start`` runs once, when the first trial starts (e.g. to drop a pre-warm request).
    """

    def __init__(self, on_first_start: Callable[[], None] | None = None):
        self.trials: dict[str, dict[str, Any]] = {}
        self.first_start: float | None = None
        self._on_first_start = on_first_start
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the run config: leave out the lock and the hook.
        with self._lock:
            state = dict(self.__dict__)
        state.pop("_lock")
        state["_on_first_start"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- Tune hooks --------------------------------------------------------------------------
    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._observe(trials)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._observe(trials)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._set(trial, RUNNING)
        if self.first_start is None:
            self.first_start = time.time()
            if self._on_first_start is not None:
                self._on_first_start()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._set(trial, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._set(trial, "ERROR")

    # -- bookkeeping -------------------------------------------------------------------------
    def _observe(self, trials: list[Any]) -> None:
        for trial in trials:
            self._set(trial, str(trial.status))

    def _set(self, trial: Any, status: str) -> None:
        now = time.time()
        with self._lock:
            record = self.trials.get(trial.trial_id)
            if record is None:
                record = {"trial_id": trial.trial_id, "added": now, "status": None, "since": now,
                          "intervals": [], "cpus": requested_cpus(trial)}
                self.trials[trial.trial_id] = record
            if record["status"] == status:
                return
            if record["status"] in (PENDING, RUNNING):
                record["intervals"].append((record["status"], record["since"], now))
            record["status"], record["since"] = status, now
            if status in (PENDING, RUNNING):
                record["cpus"] = requested_cpus(trial)  # a scheduler may have changed it

    def pending(self) -> list[float]:
        """CPU requests of the trials pending right now."""
        with self._lock:
            return [r["cpus"] for r in self.trials.values() if r["status"] == PENDING]

    def running(self) -> int:
        """Number of trials running right now."""
        with self._lock:
            return sum(1 for r in self.trials.values() if r["status"] == RUNNING)

    def intervals(self, until: float | None = None) -> list[dict[str, Any]]:
        """Every (trial, status, start, end, cpus) interval; open ones end at ``until``."""
        until = time.time() if until is None else until
        rows = []
        with self._lock:
            for record in self.trials.values():
                spans = list(record["intervals"])
                if record["status"] in (PENDING, RUNNING):
                    spans.append((record["status"], record["since"], until))
                for status, start, end in spans:
                    rows.append({"trial_id": record["trial_id"], "status": status, "start": start,
                                 "end": end, "cpus": record["cpus"]})
        return rows


class ClusterSampler(threading.Thread):
    """Sample the cluster every ``interval_s`` seconds: worker nodes, CPUs provisioned and in use,
    and the trials waiting for resources (read from ``timeline``).

    Example::

        sampler = ClusterSampler(timeline); sampler.start(); ...; sampler.stop()
    """

    def __init__(self, timeline: TrialTimeline, interval_s: float = 0.5,
                 on_sample: Callable[[dict[str, Any]], None] | None = None):
        super().__init__(name="cluster-sampler", daemon=True)
        if not interval_s > 0:
            raise ValueError(f"`interval_s` must be > 0, but got {interval_s!r}.")
        self.timeline = timeline
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self._on_sample = on_sample
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                sample = self.sample()
            except Exception as exc:  # a sampler must not kill the search; keep the reason
                self.error = exc
            else:
                self.samples.append(sample)
                if self._on_sample is not None:
                    self._on_sample(sample)
            self._halt.wait(self.interval_s)

    def sample(self) -> dict[str, Any]:
        """One reading of the cluster now."""
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        workers = [n for n in nodes if "node:__internal_head__" not in n.get("Resources", {})]
        total = sum(float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes)
        available = float(ray.available_resources().get("CPU", 0.0))
        pending = self.timeline.pending()
        return {"t": time.time(), "workers": len(workers),
                "worker_ids": sorted(str(n["NodeID"]) for n in workers),
                "cpus": total, "busy_cpus": max(0.0, total - available),
                "pending_trials": len(pending), "pending_min_cpus": min(pending, default=0.0),
                "running_trials": self.timeline.running()}

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._halt.set()
        self.join(timeout=10)
