"""Fidelity-aware resource requests: a trial at a lower fidelity asks for fewer CPUs.

Tune computes a trial's request once, when the trial is added, from its config at that time;
a scheduler that writes a trial's fidelity into its config later (the layer-freezing scheduler
does so in ``on_trial_add`` and again when it promotes a trial) would leave the first request in
place. :class:`FidelityResources` wraps any scheduler and re-computes the request right after the
wrapped scheduler wrote the config, before Tune asks the cluster for it.

Example (in-process trials of 1 CPU at full fidelity, 6 trainable layers)::

    request = FidelityRequest(key="trainable_layers", max_value=6, cpus=1.0)
    scheduler = FidelityResources(LayerFreezingScheduler(...), request)
    # z=1 asks for 0.25 CPU (the floor), z=3 for 0.5, z=6 for 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from efficient_search.validate import is_number


@dataclass(frozen=True)
class FidelityRequest:
    """CPUs of a trial in proportion to the fidelity value its config holds."""

    key: str
    """Config key of the fidelity (``trainable_layers``, ``epochs``...)."""
    max_value: float
    """The full-fidelity value: a trial there asks for all of ``cpus``."""
    cpus: float = 1.0
    """CPUs of a trial at full fidelity."""
    min_cpus: float = 0.25
    """The least a trial asks for, however low its fidelity."""

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"`fidelity key` must be a config key such as 'trainable_layers', but "
                             f"got {self.key!r}.")
        for name in ("max_value", "cpus", "min_cpus"):
            value = getattr(self, name)
            if not is_number(value, finite=True) or not value > 0:
                raise ValueError(f"`{name}` of the fidelity request must be a number > 0, but got "
                                 f"{value!r}. Fix: e.g. --fidelity-resources trainable_layers=6.")
        if self.min_cpus > self.cpus:
            raise ValueError(f"`min_cpus` {self.min_cpus} exceeds `cpus` {self.cpus}. Fix: a floor "
                             "at most the full request.")

    @classmethod
    def parse(cls, text: str, cpus: float = 1.0, min_cpus: float = 0.25) -> FidelityRequest:
        """From ``KEY=MAX`` (e.g. ``trainable_layers=6``)."""
        key, sep, value = text.partition("=")
        try:
            max_value = float(value)
        except ValueError:
            max_value = float("nan")
        if not sep or not key or not math.isfinite(max_value):
            raise ValueError(f"`--fidelity-resources` must be KEY=MAX, e.g. trainable_layers=6, but "
                             f"got {text!r}.")
        return cls(key=key, max_value=max_value, cpus=cpus, min_cpus=min(min_cpus, cpus))

    def cpus_for(self, config: dict[str, Any]) -> float:
        """CPUs for ``config``: full when it holds no fidelity value."""
        value = config.get(self.key)
        if not is_number(value):
            return self.cpus
        share = min(1.0, max(0.0, float(value) / self.max_value))
        return round(max(self.min_cpus, self.cpus * share), 2)

    def resources_for(self, config: dict[str, Any]) -> dict[str, float]:
        """The resource dict Tune takes for an in-process trial."""
        return {"CPU": self.cpus_for(config), "GPU": 0.0}


class FidelityResources(TrialScheduler):
    """A scheduler that delegates every decision to ``scheduler`` and sets each trial's CPU
    request from its fidelity (for in-process trials, ``resources.num_workers: 0``)."""

    def __init__(self, scheduler: TrialScheduler, request: FidelityRequest):
        super().__init__()
        self.scheduler = scheduler
        self.request = request
        make = getattr(scheduler, "state_callback", None)
        if callable(make):
            # `efficient_search.run` passes a scheduler's state callback to Tune: keep the inner one.
            self.state_callback = make

    def _refresh(self, trial: Trial) -> None:
        if trial.status == Trial.RUNNING:
            return  # Tune refuses; the next (re)start asks again
        wanted = self.request.resources_for(trial.config)
        current = trial.placement_group_factory
        if current is None or current.required_resources.get("CPU") != wanted["CPU"]:
            trial.update_resources(wanted)

    # -- the TrialScheduler interface, delegated --------------------------------------------
    @property
    def metric(self) -> Any:
        return self.scheduler.metric

    @property
    def supports_buffered_results(self) -> bool:
        return self.scheduler.supports_buffered_results

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.scheduler.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self.scheduler.on_trial_add(tune_controller, trial)
        self._refresh(trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.scheduler.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self.scheduler.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.scheduler.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trial = self.scheduler.choose_trial_to_run(tune_controller)
        if trial is not None:
            self._refresh(trial)
        return trial

    def debug_string(self) -> str:
        return self.scheduler.debug_string()

    def save(self, checkpoint_path: str) -> None:
        self.scheduler.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.scheduler.restore(checkpoint_path)
