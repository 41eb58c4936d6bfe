"""A Ray Tune callback that appends every reported result to a :class:`ParquetStore`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from efficient_search.store.parquet import ParquetStore, validate_experiment_name
from efficient_search.store.rows import ERROR, RUNNING, TERMINATED, make_row, row_key

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from efficient_search.store.owner import ExperimentClaim

STATE_VERSION = 1


class ParquetStoreCallback(Callback):
    """Buffer one row per reported result and flush it to the store.

    Rows are flushed whenever Tune saves the experiment state (so a restored run finds everything
    its snapshot knows about), at experiment end, and otherwise at most every ``flush_interval_s``
    seconds, trial ends included: a thousand short trials write a file every few seconds, not an
    fsynced file (and every 17th time a merge) per trial. A trial that ended after the last saved
    state is run again on restore, so its buffered rows need no earlier flush.

    On set-up the keys already in the store are loaded, and before a restored
    experiment's first step the store is made to agree with the restored state (:meth:`reconcile`),
    so a restored experiment neither loses nor duplicates rows.

    From set-up to the experiment's end this process holds the experiment's claim
    (:meth:`ParquetStore.claim`): a second live driver on the same experiment gets
    :class:`~efficient_search.store.owner.ExperimentInUseError` instead of mixing its rows in.

    Example::

        callback = ParquetStoreCallback("results", experiment="digits", searcher="random")
        tune.Tuner(fn, run_config=tune.RunConfig(callbacks=[callback])).fit()
    """

    def __init__(
        self,
        store: str | ParquetStore,
        *,
        experiment: str,
        searcher: str = "",
        scheduler: str = "",
        seed: int | None = None,
        hardware: str = "",
        metadata: Mapping[str, Any] | None = None,
        flush_interval_s: float = 5.0,
    ):
        self.store = store if isinstance(store, ParquetStore) else ParquetStore(store)
        self.experiment = validate_experiment_name(experiment, "experiment")
        if flush_interval_s < 0:
            raise ValueError(f"`flush_interval_s` must be >= 0, but got {flush_interval_s!r}.")
        self.flush_interval_s = float(flush_interval_s)
        self._context = {
            "searcher": searcher,
            "scheduler": scheduler,
            "seed": seed,
            "hardware": hardware,
        }
        self._metadata = dict(metadata or {})
        self._buffer: list[dict[str, Any]] = []
        self._written: set[tuple[str, int, str]] = set()
        self._last_flush = time.monotonic()
        self._rows_written = 0
        self._reconciled = False
        self._claim: ExperimentClaim | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; a claim (and its heartbeat thread)
        # belongs to the process that made it.
        return {**self.__dict__, "_claim": None}

    def update_spec(self, **fields: Any) -> None:
        """Change fields of the spec this callback records (a grown experiment's num_samples)."""
        self._metadata["spec"] = {**self._metadata.get("spec", {}), **fields}

    # -- Tune hooks ----------------------------------------------------------------------
    def setup(self, stop: Any = None, num_samples: int | None = None,
              total_num_samples: int | None = None, **info: Any) -> None:
        self._last_flush = time.monotonic()  # a restored callback's clock may be from another boot
        self._reconciled = False
        self._claim = self.store.claim(self.experiment)
        self._written = self.store.keys(self.experiment)
        if self._metadata:
            self.store.write_metadata(self.experiment, self._metadata)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict,
                        **info: Any) -> None:
        self.add(trial.trial_id, trial.config, result, RUNNING)
        self._maybe_flush()

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                          **info: Any) -> None:
        self._end(trial, TERMINATED)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        self._end(trial, ERROR, error=_error_text(trial))

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if not self._reconciled:
            self._reconciled = True
            if trials and self._written:  # a restored experiment, before any trial starts again
                self.reconcile(trials)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._maybe_flush()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        # Tune calls this also when the run fails (its clean-up), so the claim ends here.
        try:
            self.flush()
        finally:
            self._claim = None
            self.store.release(self.experiment)

    def get_state(self) -> dict[str, Any]:
        # Tune calls this when it snapshots the experiment: flush first, so that the store
        # holds every row the snapshot has seen.
        self.flush()
        return {"version": STATE_VERSION, "rows_written": self._rows_written}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"ParquetStoreCallback state version {state.get('version')!r} is not "
                f"{STATE_VERSION}; restore with the efficient-search version that wrote it."
            )
        self._rows_written = int(state["rows_written"])

    def reconcile(self, trials: list[Trial]) -> int:
        """Make the store agree with a restored experiment state; returns the rows removed.

        Rows flushed after the state Tune restored from was saved belong to trials it does not
        know (the searcher, restored with it, suggests them again under new ids) or lie past the
        checkpoint an unfinished trial resumes from (reported again). Those rows are removed, so
        the resumed run writes each of them once.
        """
        redo = rows_to_redo(self._written, trials)
        if not redo:
            return 0
        removed = self.store.remove(self.experiment, redo)
        self._written -= redo
        known = {trial.trial_id for trial in trials}
        lost = {trial_id for trial_id, _, _ in redo if trial_id not in known}
        print(f"efficient-search: {self.experiment}: {removed} stored rows came after the saved "
              f"experiment state ({len(lost)} trials it does not know); they will be reported "
              "again.", flush=True)
        return removed

    # -- buffering -----------------------------------------------------------------------
    def add(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any],
            status: str, error: str | None = None) -> bool:
        """Buffer one row; returns False when the store already holds its key."""
        row = make_row(trial_id=trial_id, config=config, result=result, status=status,
                       context=self._context, error=error)
        key = row_key(row)
        if key in self._written:
            return False
        self._written.add(key)
        self._buffer.append(row)
        return True

    def _end(self, trial: Trial, status: str, error: str | None = None) -> None:
        self.add(trial.trial_id, trial.config, trial.last_result or {}, status, error)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> int:
        """Write the buffered rows as one file; returns how many were written."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return 0
        if self._claim is not None:
            self._claim.check()  # another driver took over: writing on would mix two runs
        rows, self._buffer = self._buffer, []
        try:
            written = self.store.append(self.experiment, rows)
        except BaseException:
            self._buffer = rows + self._buffer  # keep them for the next flush
            raise
        self._rows_written += written
        return written


def rows_to_redo(keys: set[tuple[str, int, str]], trials: list[Trial]) -> set[tuple[str, int, str]]:
    """The store keys a restored experiment reports again: rows of trials it does not know, and
    rows past the checkpoint an unfinished trial resumes from (its end row included).

    ``ERROR`` rows stay: the failure happened (a trial restarted after it, e.g. with
    ``resume_errored``, then ends with a second row).
    """
    finished = (TERMINATED, ERROR)
    resume_from: dict[str, int | None] = {}
    for trial in trials:
        if trial.status in finished:
            resume_from[trial.trial_id] = None  # not run again: keep every row
            continue
        latest = trial.latest_checkpoint_result
        metrics = latest.metrics if latest is not None else {}
        resume_from[trial.trial_id] = int(metrics.get("training_iteration", 0) or 0)
    redo = set()
    for key in keys:
        trial_id, iteration, status = key
        if status == ERROR:
            continue
        if trial_id not in resume_from:
            redo.add(key)
            continue
        start = resume_from[trial_id]
        if start is not None and (status == TERMINATED or iteration > start):
            redo.add(key)
    return redo


def _error_text(trial: Trial) -> str:
    """The last lines of the trial's error file (text; its pickled twin, possibly on a shared
    bucket, is never unpickled here)."""
    try:
        path = trial.error_file
        if path:
            with open(path) as handle:
                return handle.read()[-2000:]
    except OSError:
        pass
    return "trial raised an error"
