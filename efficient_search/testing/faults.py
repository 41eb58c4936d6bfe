"""Kill-and-resume checks: SIGKILL the driver of a seeded search, resume it, audit the store.

A driver is ``efficient-search run``/``resume`` in a subprocess connected to the Ray cluster this
process is connected to (``RAY_ADDRESS``), so killing it loses exactly what a crashed driver
loses: its in-memory searcher, scheduler and buffered rows; Ray's saved experiment state and the
store stay. :func:`kill_and_resume` kills it each time the store holds a given number of rows,
resumes until the search finishes, and :func:`audit` checks the store: every trial ended once,
no reported iteration is missing or written twice, and the trials are the configurations an
uninterrupted run of the same spec suggests.

Example::

    spec = {"name": "faults", "task": "digits", "num_samples": 6, "store": "results", ...}
    reference = es.run({**spec, "name": "faults-ref"})
    outcome = kill_and_resume(spec, kill_at_rows=[3, 8])
    report = audit(outcome.store, "faults", reference="faults-ref", num_samples=6)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from efficient_search.store import ParquetStore
from efficient_search.store.rows import ERROR, RUNNING, TERMINATED, row_key


@dataclass
class FaultRun:
    """What :func:`kill_and_resume` did."""

    store: ParquetStore
    experiment: str
    kills: list[int] = field(default_factory=list)
    """Rows in the store when each kill happened."""
    drivers: int = 0
    """Driver processes started (the first run and every resume)."""
    seconds: float = 0.0


class InterruptAfterResults(Callback):
    """Raise out of ``Tuner.fit`` after ``count`` results, once: while the file ``marker`` exists
    (it is removed then), so a resumed run with the same callback goes on. An in-process stand-in
    for a crashed driver; Ray's saved state is what the last snapshot before it holds."""

    def __init__(self, marker: str | os.PathLike[str], count: int):
        self.marker, self.count, self.seen = str(marker), count, 0

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: Any,
                        **info: Any) -> None:
        self.seen += 1

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.seen >= self.count and os.path.exists(self.marker):
            os.remove(self.marker)
            raise RuntimeError("interrupted on purpose")


def driver_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a driver subprocess: this process's, joined to its Ray cluster."""
    import ray

    env = dict(os.environ)
    if ray.is_initialized():  # a loopback address stays loopback: see local_ray.start_ray
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    env.update(extra or {})
    return env


def _start(args: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "efficient_search.cli", *args], env=dict(env),
                                stdout=handle, stderr=subprocess.STDOUT)


def _rows(store: ParquetStore, experiment: str) -> int:
    return len(store.keys(experiment)) if experiment in store.experiments() else 0


def _wait(process: subprocess.Popen[bytes], store: ParquetStore, experiment: str,
          rows: int | None, timeout_s: float, log: Path) -> int | None:
    """Wait until the store holds ``rows`` rows (kill the driver, return the count) or the driver
    exits (return None)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rows is not None:
            seen = _rows(store, experiment)
            if seen >= rows:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return seen
        code = process.poll()
        if code is not None:
            if code != 0:
                raise RuntimeError(f"driver exited with {code}; log: {log}\n{log.read_text()[-3000:]}")
            return None
        time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"driver still running after {timeout_s:.0f} s; log: {log}")


def kill_and_resume(spec: Mapping[str, Any], kill_at_rows: Sequence[int], *,
                    env: Mapping[str, str] | None = None, timeout_s: float = 600.0,
                    log_dir: str | os.PathLike[str] | None = None) -> FaultRun:
    """Run ``spec`` in a driver subprocess, SIGKILL it whenever the store first holds each of
    ``kill_at_rows`` rows (increasing), resume with ``efficient-search resume``, and let the last
    driver finish. A kill point the search never reaches is skipped."""
    if list(kill_at_rows) != sorted(kill_at_rows) or any(k < 1 for k in kill_at_rows):
        raise ValueError(f"`kill_at_rows` must be increasing positive row counts, but got "
                         f"{list(kill_at_rows)!r}.")
    folder = Path(log_dir or tempfile.mkdtemp(prefix="es-faults-"))
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = folder / f"{spec['name']}.json"
    spec_file.write_text(json.dumps(dict(spec)))
    store = ParquetStore(spec.get("store", "results"))
    experiment = str(spec["name"])
    environment = driver_env(env)
    outcome = FaultRun(store=store, experiment=experiment)
    start = time.monotonic()
    args = ["run", str(spec_file)]
    pending = list(kill_at_rows)
    while True:
        log = folder / f"driver-{outcome.drivers}.log"
        process = _start(args, environment, log)
        outcome.drivers += 1
        killed = _wait(process, store, experiment, pending[0] if pending else None,
                       timeout_s - (time.monotonic() - start), log)
        if killed is None:
            break
        outcome.kills.append(killed)
        pending.pop(0)
        print(f"faults: killed driver {outcome.drivers} at {killed} rows", flush=True)
        args = ["resume", "--store", store.root, "--experiment", experiment]
    outcome.seconds = time.monotonic() - start
    return outcome


def _config_key(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    return json.dumps({c: row[c] for c in columns}, sort_keys=True, default=str)


def suggestions(store: ParquetStore, experiment: str) -> Counter[str]:
    """The configurations an experiment's trials ran, as a multiset of JSON texts."""
    frame = store.results(experiment)
    columns = sorted(c for c in frame.columns if c.startswith("config."))
    firsts = frame.drop_duplicates("trial_id")
    return Counter(_config_key(row, columns) for row in firsts.to_dict("records"))


def raw_duplicates(store: ParquetStore, experiment: str) -> int:
    """Rows whose (trial, iteration, status) key is written more than once, across all files."""
    table = store._read(experiment, ["trial_id", "iteration", "status"])
    counts = Counter(row_key(r) for r in table.to_pylist())
    return sum(n - 1 for n in counts.values() if n > 1)


def audit(store: ParquetStore, experiment: str, *, num_samples: int,
          reference: str | None = None) -> dict[str, Any]:
    """Check an experiment's store rows after faults.

    Returns ``trials`` (distinct trials), ``unfinished`` (trials without exactly one end row),
    ``lost_rows`` (iterations below a trial's last one with no row), ``duplicated_rows`` (keys
    written twice, plus trials beyond ``num_samples``), and with a ``reference`` experiment
    ``identical_suggestions`` (the same multiset of configurations).
    """
    frame = store.results(experiment)
    terminated = frame[frame["status"] == TERMINATED].groupby("trial_id").size()
    errored = set(frame.loc[frame["status"] == ERROR, "trial_id"])
    trials = sorted(frame["trial_id"].unique())
    # Ended once: one TERMINATED row, or failed for good (ERROR rows record each failure).
    unfinished = [t for t in trials
                  if terminated.get(t, 0) > 1 or (terminated.get(t, 0) == 0 and t not in errored)]
    lost = 0
    for _, rows in frame.groupby("trial_id"):
        reported = rows.loc[rows["status"] == RUNNING, "iteration"]
        last = int(rows["iteration"].max())  # an end row carries the last iteration
        lost += last - reported.nunique()
    report: dict[str, Any] = {
        "trials": len(trials),
        "unfinished": len(unfinished),
        "lost_rows": int(lost) + max(0, num_samples - len(trials)),
        "duplicated_rows": raw_duplicates(store, experiment) + max(0, len(trials) - num_samples),
    }
    if reference is not None:
        report["identical_suggestions"] = suggestions(store, experiment) == suggestions(store, reference)
    return report
