"""``FreezeThawScheduler``: Quick-Tune's freeze-thaw budget allocation as a Ray Tune scheduler.

Every trial is paused at the end of each budget step (``budget_step`` epochs; the scheduler writes
the step's end into the trial's ``epochs`` config, so a Train fit never stops half-way). Whenever
a slot frees, :meth:`choose_trial_to_run` hands it to the waiting trial with the highest cost-aware
expected improvement: a paused trial at its next budget step, or a new trial at its first.
Paired with a :class:`~efficient_search.searchers.QuickTuneSearcher`, the two share one
:class:`~efficient_search.searchers.quicktune_model.QuickTuneModel` (surrogate + observations), and
the searcher only proposes a new config when it beats every paused trial; the pair is linked through
``searcher=`` or, inside Tune, found through the controller's ``search_alg`` (as Ray's BOHB pair does).
Alone, the scheduler fits its own surrogate on the run's curves. Paired, at most the searcher's
``max_concurrent`` trials (Tune's ``max_concurrent_trials``) train at once, paused ones not counted.

A trial stops at ``max_t``, after ``patience`` steps without improving its best value, when its
metric is NaN, or when ``cost_budget_s`` seconds of reported cost (summed over all trials, e.g.
simulated seconds in a replay) are spent; paused and waiting trials are then stopped too.
State is plain data, carried through ``Tuner.restore`` by :meth:`state_callback`.

Example::

    searcher = QuickTuneSearcher(surrogate="surrogates/qt")
    scheduler = FreezeThawScheduler(searcher=searcher, max_t=50, patience=5)
    tune.Tuner(fn, tune_config=tune.TuneConfig(metric="accuracy", mode="max", search_alg=searcher,
                                               scheduler=scheduler),
               run_config=tune.RunConfig(callbacks=[scheduler.state_callback()]))
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from efficient_search.fidelity import EPOCHS
from efficient_search.schedulers.state import Restorable
from efficient_search.searchers.quicktune import QuickTuneSearcher, observe_result
from efficient_search.searchers.quicktune_model import QuickTuneModel
from efficient_search.validate import check_int, check_name, check_number

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

    from efficient_search.surrogate.deep_kernel import DeepKernelSurrogate

STATE_VERSION = 1
WAITING = (Trial.PENDING, Trial.PAUSED)


def find_quicktune(search_alg: Any) -> QuickTuneSearcher | None:
    """The QuickTuneSearcher inside Tune's search algorithm wrappers, if there is one."""
    for _ in range(8):
        if isinstance(search_alg, QuickTuneSearcher):
            return search_alg
        search_alg = getattr(search_alg, "searcher", None)
        if search_alg is None:
            return None
    return None


class FreezeThawScheduler(Restorable, FIFOScheduler):
    """Pause at every budget step; resume or start whatever promises most per second.

    Args:
        searcher: the QuickTuneSearcher to share the surrogate with (found inside Tune otherwise).
        max_t: the maximum budget (epochs) of a trial.
        budget_step: epochs between two pauses.
        time_attr: result key counting epochs (default fidelity/epoch, else training_iteration).
        cost_attr: result key with the seconds spent (none reported: costs are left out).
        cumulative_cost: whether ``cost_attr`` counts from the trial's start (our tasks do).
        patience: stop a trial after this many steps without improving its best value.
        eta: the successive-halving guard: a trial paused at a rung (``budget_step * eta**k``) may
            continue only if it is among the best ``1/eta`` of the trials that reached that rung
            (None: the acquisition alone decides; see ``QuickTuneModel.promotable``).
        cost_budget_s: the time budget in seconds of reported cost over all trials.
        surrogate, meta_features, alpha, seed: the scheduler's own surrogate when it runs alone
            (see QuickTuneSearcher); a paired searcher's are used otherwise.
        metric, mode: usually set through ``tune.TuneConfig``.
    """

    def __init__(
        self,
        *,
        searcher: QuickTuneSearcher | None = None,
        max_t: int = 4,
        budget_step: int = 1,
        time_attr: str | None = None,
        cost_attr: str = "cost/seconds",
        cumulative_cost: bool = True,
        patience: int | None = None,
        eta: int | None = None,
        cost_budget_s: float | None = None,
        surrogate: str | os.PathLike[str] | DeepKernelSurrogate | None = None,
        meta_features: Mapping[str, float] | None = None,
        alpha: float = 0.0,
        seed: int = 0,
        metric: str | None = None,
        mode: str | None = None,
    ):
        super().__init__()
        for name, value in (("max_t", max_t), ("budget_step", budget_step)):
            check_int(name, value, min=1, expected="an integer >= 1 (epochs)")
        check_int("patience", patience, min=1, optional=True)
        check_int("eta", eta, min=2, optional=True, expected="an integer >= 2 or None (no guard)")
        check_number("cost_budget_s", cost_budget_s, above=0, optional=True,
                     expected="a number of seconds > 0 or None")
        check_name("time_attr", time_attr, optional=True)
        check_name("cost_attr", cost_attr)
        if mode not in (None, "min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', but got {mode!r}.")
        if searcher is not None and not isinstance(searcher, QuickTuneSearcher):
            raise TypeError(
                f"`searcher` must be a QuickTuneSearcher, but got {type(searcher).__name__}. Fix: "
                "leave it out; the scheduler then fits its own surrogate."
            )
        if searcher is not None and (surrogate is not None or meta_features is not None):
            raise ValueError(
                "`surrogate` and `meta_features` belong to the paired QuickTuneSearcher. Fix: "
                "pass them to the searcher (searcher_options), not the scheduler."
            )
        self.max_t, self.budget_step, self.patience, self.eta = max_t, budget_step, patience, eta
        self.time_attr, self.cost_attr, self.cumulative_cost = time_attr, cost_attr, cumulative_cost
        self.cost_budget_s = None if cost_budget_s is None else float(cost_budget_s)
        self._metric, self._mode = metric, mode
        self._own = (
            None
            if searcher is not None
            else QuickTuneModel(surrogate=surrogate, meta_features=meta_features, alpha=alpha, seed=seed)
        )
        self._searcher: QuickTuneSearcher | None = None
        self._progress: dict[str, int] = {}  # trial id -> last epoch reached
        self._target: dict[str, int] = {}  # trial id -> epoch its current segment ends at
        self._best: dict[str, list[float]] = {}  # trial id -> [best signed value, epoch of it]
        self._picked: tuple[Any, int] | None = None  # the last choice and what it was made from
        if searcher is not None:
            self._link(searcher)
        else:
            self._configure(self.model)

    # -- the shared model -------------------------------------------------------------------------
    @property
    def model(self) -> QuickTuneModel:
        if self._searcher is not None:
            return self._searcher.model
        if self._own is None:
            raise RuntimeError("FreezeThawScheduler lost its searcher; restore it with the same pair.")
        return self._own

    @property
    def linked(self) -> bool:
        return self._searcher is not None

    def _configure(self, model: QuickTuneModel) -> None:
        model.max_steps = self.max_t
        model.cost_budget_s = self.cost_budget_s
        model.budget_step = self.budget_step
        model.eta = self.eta
        if self._metric and self._mode:
            model.set_objective(self._metric, self._mode)

    def _link(self, searcher: QuickTuneSearcher) -> None:
        self._searcher = searcher
        searcher.model.paired = True
        self._configure(searcher.model)

    def _find_searcher(self, tune_controller: Any) -> None:
        if self._searcher is None and self._own is not None and not self._own.observations.trials:
            found = find_quicktune(getattr(tune_controller, "search_alg", None))
            if found is not None:
                self._link(found)
                self._own = None

    # -- Ray's search-property handshake ----------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        if self._metric and self._mode:
            self.model.set_objective(self._metric, self._mode)
        return True

    def _check_objective(self) -> None:
        if self._searcher is not None:  # a paired searcher made with metric/mode shares them
            self._metric = self._metric or self._searcher.metric
            self._mode = self._mode or self._searcher.mode
        if not self._metric or not self._mode:
            raise ValueError(
                "FreezeThawScheduler has no `metric`/`mode`: pass them when instantiating the "
                "scheduler, or to `tune.TuneConfig()`."
            )
        self.model.set_objective(self._metric, self._mode)

    # -- trials -----------------------------------------------------------------------------------
    def _segment_end(self, progress: int) -> int:
        return min(progress + self.budget_step, self.max_t)

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        self._find_searcher(tune_controller)
        self._check_objective()
        self.model.register(trial.trial_id, trial.config)
        trial_id = trial.trial_id
        if trial_id not in self._target:
            self._progress[trial_id] = 0
            self._target[trial_id] = self._segment_end(0)
        elif trial.status == Trial.PENDING:
            self._restored(trial)
        target = self._target[trial_id]
        if trial.config.get(EPOCHS) != target:
            trial.set_config({**trial.config, EPOCHS: target})

    def _restored(self, trial: Trial) -> None:
        """A known trial added again: ``Tuner.restore`` made it PENDING, as every unfinished trial,
        and Tune starts PENDING trials without asking the scheduler. One that had reached the end of
        its segment (paused, or still saving its pause checkpoint when the driver died) waits again
        for :meth:`choose_trial_to_run`, as it would have; Tune restarts it from its checkpoint when
        chosen. One that was training goes on at once. (``add_trial`` files the trial under its
        status after this hook, so setting the status here is enough.)"""
        if self._progress.get(trial.trial_id, 0) >= self._target[trial.trial_id]:
            self.wait_again(trial)
            self.model.on_pause(trial.trial_id)
        else:
            self.model.on_unpause(trial.trial_id)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]) -> str:
        self._check_objective()
        if trial.trial_id not in self._target:
            self.on_trial_add(tune_controller, trial)
        if self._metric not in result:
            raise ValueError(
                f"FreezeThawScheduler's metric {self._metric!r} is not in the trial's result (keys: "
                f"{', '.join(sorted(result))}). Fix: report it, or set `metric`."
            )
        if self.time_attr is not None and self.time_attr not in result:
            raise ValueError(
                f"FreezeThawScheduler needs {self.time_attr!r} in every result to know the budget "
                "spent. Fix: report it, or leave `time_attr` out (fidelity/epoch, else "
                "training_iteration)."
            )
        model = self.model
        step, value, _ = observe_result(
            model,
            trial.trial_id,
            result,
            time_attr=self.time_attr,
            cost_attr=self.cost_attr,
            cumulative_cost=self.cumulative_cost,
            metric=str(self._metric),
        )
        self._progress[trial.trial_id] = max(step, self._progress.get(trial.trial_id, 0))
        if (
            not math.isfinite(value)
            or model.exhausted
            or step >= self.max_t
            or self._out_of_patience(trial.trial_id, value if self._mode == "max" else -value, step)
        ):
            return TrialScheduler.STOP
        if step >= self._target[trial.trial_id]:
            model.on_pause(trial.trial_id)
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def _out_of_patience(self, trial_id: str, signed: float, step: int) -> bool:
        best = self._best.get(trial_id)
        if best is None or signed > best[0]:
            self._best[trial_id] = [signed, float(step)]
            return False
        return self.patience is not None and step - best[1] >= self.patience

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        self._find_searcher(tune_controller)
        trials = tune_controller.get_trials()
        waiting = [t for t in trials if t.status in WAITING]
        if self.model.exhausted:
            for trial in waiting:  # the time budget is spent: nothing more starts or resumes
                tune_controller.stop_trial(trial)
            return None
        limit = self._searcher.max_concurrent if self._searcher is not None else 0
        if limit:
            # At most `max_concurrent_trials` train at once; Tune starts PENDING trials by itself
            # (new ones the searcher suggested, ones chosen before), so only paused ones wait here.
            if sum(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials) >= limit:
                return None
            waiting = [t for t in waiting if t.status == Trial.PAUSED]
        if not waiting:
            return None
        # Ties go to the trial added first; Tune's own order changes on restore (newest first).
        order = {trial_id: i for i, trial_id in enumerate(self._target)}
        waiting.sort(key=lambda t: order.get(t.trial_id, len(order)))
        trial = waiting[self._pick(waiting)]
        progress = self._progress.get(trial.trial_id, 0)
        if trial.status == Trial.PAUSED or progress > 0:
            self._target[trial.trial_id] = self._segment_end(progress)
            self.model.on_unpause(trial.trial_id)
        target = self._target.setdefault(trial.trial_id, self._segment_end(progress))
        if trial.config.get(EPOCHS) != target:
            trial.set_config({**trial.config, EPOCHS: target})
        return trial

    def _pick(self, waiting: list[Trial]) -> int:
        """Index of the waiting trial to run: the highest acquisition, ties to the earliest."""
        progress = [self._progress.get(t.trial_id, 0) for t in waiting]
        if len(waiting) == 1:
            return 0
        # Tune asks again and again between results: the same question gets the cached answer.
        key = (self.model.observations.version, tuple(t.trial_id for t in waiting), tuple(progress))
        if self._picked is not None and self._picked[0] == key:
            return self._picked[1]
        choice = self._score_and_pick(waiting, progress)
        self._picked = (key, choice)
        return choice

    def _score_and_pick(self, waiting: list[Trial], progress: list[int]) -> int:
        if not self.model.ready:  # online surrogate before its first fit: start new trials first
            return int(np.argmin(progress))
        new = [i for i, p in enumerate(progress) if p == 0]
        old = [i for i, p in enumerate(progress) if p > 0]
        scores = np.full(len(waiting), -np.inf)
        if new:
            scores[new] = self.model.score_new([waiting[i].config for i in new], self._segment_end(0))
        if old:
            ids = [waiting[i].trial_id for i in old]
            scores[old] = self.model.score_continue(ids, [self._segment_end(progress[i]) for i in old])
            allowed = self.model.promotable(ids)
            if allowed.any() or new:  # else nothing else can run: the best paused trial goes on
                scores[[i for i, ok in zip(old, allowed, strict=True) if not ok]] = -np.inf
        return int(np.argmax(scores))

    def _forget(self, trial: Trial) -> None:
        self.model.on_unpause(trial.trial_id)

    def on_trial_complete(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> None:
        self._forget(trial)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        self._forget(trial)
        self.model.observations.mark_failed(trial.trial_id)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        self._forget(trial)

    # -- state ------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Plain JSON-able data. A paired searcher saves the shared model itself; a lone scheduler's
        model (observations, what its surrogate was fitted on) is part of this state."""
        return {
            "version": STATE_VERSION,
            "metric": self._metric,
            "mode": self._mode,
            "linked": self.linked,
            "progress": dict(self._progress),
            "target": dict(self._target),
            "best": {t: list(b) for t, b in self._best.items()},
            "model": None if self._own is None else self._own.get_state(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.check_version(state, STATE_VERSION)
        self._metric = self._metric or state["metric"]
        self._mode = self._mode or state["mode"]
        self._progress = {str(t): int(p) for t, p in state["progress"].items()}
        self._target = {str(t): int(p) for t, p in state["target"].items()}
        self._best = {str(t): [float(b[0]), float(b[1])] for t, b in state["best"].items()}
        if state["model"] is not None and self._own is not None:
            self._own.set_state(state["model"])
            self._configure(self._own)


    def debug_string(self) -> str:
        paused = len(self.model.paused)
        return (
            f"FreezeThawScheduler: {len(self._progress)} trials, {paused} paused, "
            f"{self.model.observations.spent_s:.1f} s of cost spent"
        )
