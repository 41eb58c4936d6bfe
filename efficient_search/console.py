"""What a search prints: one live view instead of Ray's chatter (``verbose: 1``, the default).

:class:`LiveView` is a Tune callback. On a terminal it redraws one small table in place (trials
running / paused / finished / failed, the best result and its configuration, results and
wall time used, and a rough time left); elsewhere (CI, ``ray job submit`` logs) it prints one
plain line per finished trial and a status line every ``every_s`` seconds. A failed trial is
printed at once, with the file holding its error.

:func:`quiet_console` sends what Ray's workers print (Train's checkpoint and report lines) to
``<experiment folder>/logs/workers.log``, echoing only error and warning lines, and turns Tune's
own status tables and INFO logging off. ``verbose: 2`` or ``3`` (``--verbose``) leaves Ray's
output as it is.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

#: Worker lines echoed to the console even when quiet: an exception's message, a WARNING or
#: ERROR log line (each distinct message once: every rank and Train's controller repeat it).
LOUD = re.compile(r"^\s*[\w.]*(Error|Exception|Killed)\b: |\b(ERROR|WARNING)\b")
#: Tune's own log records of a failed trial, which the live view reports with its error file.
TRIAL_FAILURE_RECORDS = ("Trial task failed", "Trials did not complete")
#: Tune's status values, in the order the view counts them.
STATES = ("RUNNING", "PAUSED", "PENDING", "TERMINATED", "ERROR")


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class LiveView(Callback):
    """A Tune callback that shows one experiment's progress (module docstring)."""

    def __init__(self, experiment: str, metric: str, mode: str, num_samples: int, *,
                 time_attr: str = "training_iteration", every_s: float = 30.0,
                 interactive: bool | None = None, logs: str | None = None) -> None:
        self.experiment, self.metric, self.mode = experiment, metric, mode
        self.num_samples, self.time_attr, self.every_s = num_samples, time_attr, every_s
        self.interactive, self.logs = interactive, logs
        self._reset()

    def _reset(self) -> None:
        self.started = time.monotonic()
        self.best: tuple[float, str, dict[str, Any]] | None = None
        self.reported = 0
        self.finished_at: list[float] = []
        self._last_line = self.started
        self._live: Any = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment
        state = dict(self.__dict__)
        state["_live"] = None
        return state

    # -- Tune hooks ------------------------------------------------------------------------
    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self._reset()
        if total_num_samples:  # a grid multiplies num_samples
            self.num_samples = int(total_num_samples)
        if self.interactive is None:
            self.interactive = sys.stdout.isatty()
        where = f"; Ray's worker output in {self.logs}" if self.logs else ""
        self._print(f"efficient-search: {self.experiment}: {self.num_samples} trial(s), "
                    f"best {self.metric} ({self.mode}){where}")
        if self.interactive:
            from rich.live import Live

            self._live = Live(self._table([]), auto_refresh=False, transient=False)
            self._live.start()

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        self.reported += 1
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            best = self.best[0] if self.best is not None else None
            if best is None or (value < best if self.mode == "min" else value > best):
                self.best = (float(value), trial.trial_id, dict(trial.config))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.finished_at.append(time.monotonic())
        if not self.interactive:
            last = trial.last_result or {}
            self._print(f"  trial {trial.trial_id} finished: {self.metric} "
                        f"{self._number(last.get(self.metric))} after {last.get(self.time_attr, '?')} "
                        f"{self.time_attr}")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.finished_at.append(time.monotonic())
        where = getattr(trial, "error_file", None) or getattr(trial, "path", None)
        self._print(f"efficient-search: trial {trial.trial_id} FAILED; its error: {where}", sys.stderr)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if self._live is not None:
            self._live.update(self._table(trials), refresh=True)
        elif now - self._last_line >= self.every_s:
            self._last_line = now
            self._print(f"  {self.status(trials)}")

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self._live is not None:
            self._live.update(self._table(trials), refresh=True)
            self._live.stop()
            self._live = None
        else:
            self._print(f"  {self.status(trials)}")

    # -- what is shown ---------------------------------------------------------------------
    def counts(self, trials: list[Any]) -> dict[str, int]:
        found = {state: 0 for state in STATES}
        for trial in trials:
            found[trial.status] = found.get(trial.status, 0) + 1
        return found

    def time_left(self, trials: list[Any]) -> float | None:
        """Elapsed time per finished trial times the trials still to finish (None before one ends)."""
        done = len(self.finished_at)
        if not done:
            return None
        return (self.finished_at[-1] - self.started) / done * max(self.num_samples - done, 0)

    def status(self, trials: list[Any]) -> str:
        c = self.counts(trials)
        left = self.time_left(trials)
        parts = [f"{minutes(time.monotonic() - self.started)}",
                 f"trials {self._trials(trials, c)}",
                 f"{self.reported:.0f} results"]
        if self.best is not None:
            parts.append(f"best {self.metric} {self._number(self.best[0])} ({self._config(self.best[2])})")
        if left is not None and c["TERMINATED"] + c["ERROR"] < self.num_samples:
            parts.append(f"~{minutes(left)} left")
        return " | ".join(parts)

    def _table(self, trials: list[Any]) -> Any:
        from rich.table import Table

        table = Table(title=f"efficient-search: {self.experiment}", show_header=False)
        c = self.counts(trials)
        left = self.time_left(trials)
        table.add_row("trials", self._trials(trials, c))
        table.add_row("used", f"{self.reported:.0f} results, {minutes(time.monotonic() - self.started)}")
        if self.best is not None:
            table.add_row(f"best {self.metric}",
                          f"{self._number(self.best[0])}  {self._config(self.best[2])}")
        if left is not None:
            table.add_row("left", f"~{minutes(left)}")
        return table

    def _trials(self, trials: list[Any], c: dict[str, int]) -> str:
        return (f"{len(trials)}/{self.num_samples}: {c['RUNNING']} running, {c['PAUSED']} paused, "
                f"{c['TERMINATED']} done, {c['ERROR']} failed")

    @staticmethod
    def _number(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)

    @staticmethod
    def _config(config: Mapping[str, Any]) -> str:
        return ", ".join(f"{k}={LiveView._number(v)}" for k, v in config.items() if not k.startswith("_"))

    @staticmethod
    def _print(text: str, stream: TextIO | None = None) -> None:
        print(text, file=stream or sys.stdout, flush=True)


class WorkerLog:
    """Writes the lines Ray forwards from its workers to a file; echoes error and warning lines."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._echoed: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def __call__(self, data: Mapping[str, Any]) -> None:
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who + ' ' if who else ''}pid={data.get('pid')}) "
        for line in data.get("lines", []):
            self._file.write(prefix + line + "\n")
            if LOUD.search(line) and line.strip() not in self._echoed:
                self._echoed.add(line.strip())
                print(f"{prefix}{line}", file=sys.stderr, flush=True)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _not_a_trial_failure(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(TRIAL_FAILURE_RECORDS)


@contextlib.contextmanager
def quiet_console(log_file: str | os.PathLike[str]) -> Iterator[None]:
    """Inside: Ray's worker output to ``log_file`` (errors echoed), Tune's tables and Ray's and Optuna's
    INFO logs off."""
    from efficient_search.ray_compat import worker_lines_to

    saved_env = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the older reporter is silent at verbose 0
    # Optuna logs every study it creates and every trial it records at INFO.
    loggers = [logging.getLogger(name) for name in ("ray.tune", "ray.train", "ray.air", "optuna")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    failures = [logging.getLogger(name) for name in ("ray.tune.execution.tune_controller", "ray.tune.tune")]
    for logger in failures:
        logger.addFilter(_not_a_trial_failure)
    log = WorkerLog(log_file)
    try:
        with worker_lines_to(log):
            yield
    finally:
        log.close()
        for logger in failures:
            logger.removeFilter(_not_a_trial_failure)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if saved_env is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved_env
