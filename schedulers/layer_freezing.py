"""``LayerFreezingScheduler``: successive halving whose budget is the number of trainable layers.

Low rungs train only the top ``z`` layer units (the rest frozen: faster steps, less memory);
trials that rank in the top ``1/eta`` of their rung are promoted to more trainable layers.

Promotion modes:

- ``restart`` (the Frozen Layers paper's protocol): the promoted configuration trains afresh at
  the higher ``z``;
- ``continue`` (thaw): the paused trial resumes from its checkpoint with more layers trainable.

Either way the trial is paused at the end of its rung and ``trial.set_config`` writes the new
fidelity (``trainable_layers``, ``epochs``, ``fidelity_restart``) before Tune resumes it.

Ray does not save scheduler state on ``Tuner.restore``: pass ``scheduler.state_callback()``
to ``RunConfig(callbacks=...)`` (``efficient_search.run`` does) and the rungs come back.

Resources may depend on the fidelity: wrap the trainable as
``tune.with_resources(fn, lambda config: {"CPU": 1, "GPU": 0.5 if config["trainable_layers"] < 4 else 1})``;
Tune asks for the new resources when a promoted trial restarts.

Example::

    scheduler = LayerFreezingScheduler(max_trainable_layers=6, epochs=4, reduction_factor=2)
    tune.Tuner(fn, tune_config=tune.TuneConfig(metric="val_accuracy", mode="max",
                                               scheduler=scheduler))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from efficient_search.fidelity import EPOCHS, RESTART, TRAINABLE_LAYERS
from efficient_search.schedulers.rungs import Decision, Rung, RungLadder, make_rungs
from efficient_search.schedulers.state import Restorable

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

PROMOTION_MODES = ("continue", "restart")
STATE_VERSION = 1


class LayerFreezingScheduler(Restorable, FIFOScheduler):
    """Asynchronous successive halving over trainable layers (and optionally epochs).

    Args:
        max_trainable_layers: L, the model's number of layer units (``max_fidelity(model)``).
        epochs: epochs of the last rung (of every rung without ``min_epochs``). With
            ``continue`` every rung adds its epochs to the trial's count, so the top rung
            ends at the sum over rungs.
        min_trainable_layers: ``z`` of the first rung.
        reduction_factor: eta: rungs grow ``z`` by eta, and the top 1/eta are promoted.
        promotion: ``continue`` (thaw from the checkpoint) or ``restart`` (train afresh).
        min_epochs: epochs of the first rung; makes a rung a (layers, epochs) pair.
        time_attr: the reported counter of epochs.
        metric, mode: usually set through ``tune.TuneConfig``.
    """

    def __init__(
        self,
        *,
        max_trainable_layers: int,
        epochs: int,
        min_trainable_layers: int = 1,
        reduction_factor: float = 3,
        promotion: str = "continue",
        min_epochs: int | None = None,
        time_attr: str = "fidelity/epoch",
        metric: str | None = None,
        mode: str | None = None,
    ):
        super().__init__()
        if promotion not in PROMOTION_MODES:
            raise ValueError(
                f"`promotion` must be one of {', '.join(PROMOTION_MODES)}, but got {promotion!r}."
            )
        if mode not in (None, "min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', but got {mode!r}.")
        self.rungs = make_rungs(min_layers=min_trainable_layers, max_layers=max_trainable_layers,
                                eta=reduction_factor, epochs=epochs, min_epochs=min_epochs)
        self.promotion = promotion
        self.time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._ladder = RungLadder(self.rungs, reduction_factor, 1.0 if mode != "min" else -1.0)
        # Promoted trials in promotion order -> whether choose_trial_to_run handed them out yet.
        # A promoted trial stays RUNNING while Tune saves it, so only a trial seen RUNNING
        # *after* being handed out has resumed.
        self._promoted: dict[str, bool] = {}
        self._finished_rung: set[str] = set()  # ended their current rung's epochs already

    # -- Ray's search-property handshake ------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        self._ladder.sign = -1.0 if self._mode == "min" else 1.0
        return True

    def _check_objective(self) -> None:
        if not self._metric or not self._mode:
            raise ValueError(
                "LayerFreezingScheduler has no `metric`/`mode`: pass them when instantiating "
                "the scheduler, or to `tune.TuneConfig()`."
            )

    # -- rung bookkeeping ---------------------------------------------------------------------
    def _rung_config(self, trial: Trial, rung: Rung, restart: bool) -> dict[str, Any]:
        epochs = rung.epochs
        if self.promotion == "continue":
            # A continuing trial keeps its epoch count: each rung adds its own epochs.
            epochs = sum(r.epochs for r in self.rungs[: self.rungs.index(rung) + 1])
        return {**trial.config, TRAINABLE_LAYERS: rung.trainable_layers, EPOCHS: epochs,
                RESTART: restart}

    def rung_target(self, trial: Trial) -> int:
        """The epoch count at which ``trial`` ends its current rung."""
        return int(trial.config.get(EPOCHS, self._ladder.current(trial.trial_id).epochs))

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        self._check_objective()
        if trial.trial_id in self._ladder.rung_of:
            if trial.trial_id in self._promoted:
                # Tuner.restore makes every unfinished trial PENDING, and Tune starts PENDING
                # trials without asking: write the next rung's config now.
                rung = self._ladder.current(trial.trial_id)
                trial.set_config(self._rung_config(trial, rung,
                                                   restart=self.promotion == "restart"))
            return
        z = trial.config.get(TRAINABLE_LAYERS)
        known = [r.trainable_layers for r in self.rungs]
        if z in known and trial.last_result:
            # A trial that ran before, re-added by Tuner.restore without saved scheduler
            # state (no state callback): rebuild its rung from its config.
            self._ladder.add(trial.trial_id, known.index(z))
            return
        rung = self._ladder.add(trial.trial_id, 0)
        trial.set_config(self._rung_config(trial, rung, restart=False))

    def on_trial_result(self, tune_controller: TuneController, trial: Trial,
                        result: dict[str, Any]) -> str:
        self._check_objective()
        if trial.trial_id not in self._ladder.rung_of:
            self.on_trial_add(tune_controller, trial)
        if self._metric not in result:
            raise ValueError(
                f"LayerFreezingScheduler's metric {self._metric!r} is not in the trial's "
                f"result (keys: {', '.join(sorted(result))}). Fix: report it, or set `metric`."
            )
        if self.time_attr not in result:
            raise ValueError(
                f"LayerFreezingScheduler needs {self.time_attr!r} in every result to know when "
                "a rung ends. Fix: report it (tasks report fidelity/epoch), or set `time_attr`."
            )
        if result[self.time_attr] < self.rung_target(trial):
            return TrialScheduler.CONTINUE
        score = float(result[self._metric])
        decision = self._ladder.end_rung(trial.trial_id, score)
        if decision is Decision.PROMOTE:
            self._promoted[trial.trial_id] = False
            return TrialScheduler.PAUSE
        return TrialScheduler.STOP

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        trials = {t.trial_id: t for t in tune_controller.get_trials()}
        for trial_id, handed_out in list(self._promoted.items()):
            trial = trials.get(trial_id)
            if trial is None or trial.status == Trial.ERROR:
                del self._promoted[trial_id]
                continue
            if handed_out and trial.status == Trial.RUNNING:
                del self._promoted[trial_id]  # resumed one rung up: promotion done
                continue
            if trial.status in (Trial.PAUSED, Trial.PENDING):
                # Tune marks a paused trial it starts as PENDING (and Tuner.restore makes every
                # unfinished trial PENDING): it resumes one rung up either way.
                rung = self._ladder.current(trial_id)
                config = self._rung_config(trial, rung, restart=self.promotion == "restart")
                if config != trial.config:
                    trial.set_config(config)
                self._promoted[trial_id] = True
                return trial
        for trial in trials.values():
            if trial.status == Trial.PENDING:
                return trial
        return None

    def _forget(self, trial: Trial) -> None:
        self._promoted.pop(trial.trial_id, None)

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial,
                          result: dict[str, Any]) -> None:
        self._forget(trial)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        self._forget(trial)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        self._forget(trial)

    # -- state ----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Plain, JSON-able state: rungs, scores, pending promotions."""
        return {"version": STATE_VERSION, "promotion": self.promotion, "metric": self._metric,
                "mode": self._mode, "ladder": self._ladder.get_state(),
                "promoted": [[t, handed] for t, handed in self._promoted.items()]}

    def set_state(self, state: dict[str, Any]) -> None:
        self.check_version(state, STATE_VERSION)
        if state["promotion"] != self.promotion:
            raise ValueError(
                f"Saved promotion mode {state['promotion']!r} differs from {self.promotion!r}."
            )
        self._metric, self._mode = state["metric"], state["mode"]
        self._ladder.set_state(state["ladder"])
        self._promoted = {str(t): bool(handed) for t, handed in state["promoted"]}


    def debug_string(self) -> str:
        counts = [sum(1 for k in self._ladder.rung_of.values() if k == i)
                  for i in range(len(self.rungs))]
        rungs = ", ".join(f"z={r.trainable_layers}/e={r.epochs}: {n}"
                          for r, n in zip(self.rungs, counts, strict=True))
        return f"LayerFreezingScheduler ({self.promotion}): {rungs}"
