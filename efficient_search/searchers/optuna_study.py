"""Optuna's samplers as a Ray Tune ``Searcher`` whose state is Optuna's own journal, as plain data.

Ray's ``OptunaSearch`` saves itself by pickling the study and its sampler; Optuna 5.1's
``NSGAIISampler`` holds a thread lock, so that fails whenever Tune checkpoints the searcher. Here the
study lives in Optuna's ``JournalStorage`` over an in-memory log, ``get_state`` returns that log (the
same JSON operations a ``JournalFileBackend`` writes, one per line), and a restore replays it. No
sampler is kept between suggestions: each one gets a fresh sampler seeded by the searcher's seed and
the trial's number, so a restored searcher suggests exactly what an uninterrupted one would::

    searcher = OptunaSearcher(metric=["loss", "params"], mode=["min", "min"], sampler="nsga2", seed=0)
    tuner = tune.Tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       tune_config=tune.TuneConfig(search_alg=searcher, num_samples=64))

``write_journal(path)`` writes the study as a journal file that Optuna's own tools read
(``optuna.load_study(study_name="efficient-search", storage=JournalStorage(JournalFileBackend(path)))``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import TrialState
from ray.tune.search import UNDEFINED_METRIC_MODE, Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.utils.util import flatten_dict, unflatten_dict

from efficient_search.durable import atomic_write
from efficient_search.searchers.checks import (
    check_objectives,
    check_points,
    check_ready,
    log_ignored_result,
    objective_values,
    tune_objectives,
)
from efficient_search.searchers.state_file import read_state, write_state
from efficient_search.validate import is_int

logger = logging.getLogger(__name__)

STATE_VERSION = 1
STUDY_NAME = "efficient-search"
SAMPLERS = ("tpe", "nsga2", "random")


class MemoryJournal(BaseJournalBackend):
    """Optuna's journal log held in memory as JSON-normal dicts (what a journal file holds)."""

    def __init__(self, logs: Iterable[dict[str, Any]] = ()) -> None:
        self.logs: list[dict[str, Any]] = [dict(log) for log in logs]

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        # The JSON round trip turns enums into ints and checks every log is plain data.
        self.logs.extend(json.loads(json.dumps(log, allow_nan=False)) for log in logs)


def make_sampler(name: str, seed: int, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    """A fresh Optuna sampler by name."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=options.get("population_size", 50))
    return optuna.samplers.RandomSampler(seed=seed)


class OptunaSearcher(Searcher):
    """Optuna's TPE, NSGA-II or random sampler on a Ray Tune space; one or several objectives.

    Args:
        space: A Ray Tune param space (nested dicts of domains and constants); leave it out to take
            Tune's ``param_space``.
        metric: The metric to optimise, or a list of metrics.
        mode: ``"min"``/``"max"``, or one per metric.
        sampler: ``"tpe"``, ``"nsga2"`` or ``"random"``.
        population_size: NSGA-II's population (``sampler="nsga2"`` only; default 50).
        points_to_evaluate: Configs (nested, or flat with ``/`` keys) to try first, exactly.
        seed: Seeds every sampler; drawn at random (and kept in the state) when left out.
    """

    def __init__(
        self,
        space: Mapping[str, Any] | None = None,
        *,
        metric: str | list[str] | None = None,
        mode: str | list[str] | None = None,
        sampler: str = "tpe",
        population_size: int | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        seed: int | None = None,
    ) -> None:
        metric, mode = check_objectives(metric, mode)
        if sampler not in SAMPLERS:
            raise ValueError(f"Unknown `sampler` {sampler!r} for the Optuna searcher. "
                             f"Valid samplers: {', '.join(SAMPLERS)}.")
        if population_size is not None:
            if sampler != "nsga2":
                raise ValueError(f"`population_size` applies to sampler 'nsga2' only, but sampler is "
                                 f"{sampler!r}. Fix: leave population_size out.")
            if not is_int(population_size) or population_size < 2:
                raise ValueError(f"`population_size` must be an integer >= 2, but got "
                                 f"{population_size!r}. Fix: e.g. population_size=50.")
        if space is not None and not isinstance(space, Mapping):
            raise TypeError(f"`space` must be a dict of Ray Tune domains, but got {space!r} "
                            f"({type(space).__name__}).")
        if seed is not None and not is_int(seed):
            raise TypeError(f"`seed` must be an integer or None, but got {seed!r}.")
        super().__init__(metric=metric, mode=mode)  # type: ignore[arg-type]
        self._sampler = sampler
        self._sampler_options: dict[str, Any] = (
            {} if population_size is None else {"population_size": population_size})
        self._seed = int(np.random.default_rng().integers(2**31)) if seed is None else seed
        self._points = [flatten_dict(dict(p), delimiter="/") for p in check_points(points_to_evaluate)]
        self._space: dict[str, BaseDistribution] | None = None
        self._journal = MemoryJournal()
        self._study: optuna.Study | None = None
        self._pending: dict[str, int] = {}  # trial id -> Optuna trial number
        self._finished: set[str] = set()
        if space:
            self._set_space(space)

    # -- Ray's Searcher interface -------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        if self._space is not None:
            return False
        self._metric, self._mode = tune_objectives(self._metric, self._mode, metric, mode)
        self._set_space(config)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        space = check_ready(self, self._space)
        study = self._ensure_study()
        if trial_id not in self._pending:
            number = len(study.get_trials(deepcopy=False))
            study.sampler = make_sampler(self._sampler, self._trial_seed(number), self._sampler_options)
            self._pending[trial_id] = study.ask(fixed_distributions=space).number
        params = study.get_trials(deepcopy=False)[self._pending[trial_id]].params
        return unflatten_dict(dict(params))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._pending:
            log_ignored_result(self, trial_id, trial_id in self._finished)
            return
        number = self._pending.pop(trial_id)
        self._finished.add(trial_id)
        metrics = self._metric if isinstance(self._metric, list) else [str(self._metric)]
        values = None if error else objective_values(metrics, result)
        study = self._ensure_study()
        if values is None:
            study.tell(number, state=TrialState.FAIL)
        else:
            study.tell(number, values if isinstance(self._metric, list) else values[0])

    def add_evaluated_point(self, parameters: dict[str, Any], value: Any, error: bool = False,
                            pruned: bool = False, intermediate_values: list[float] | None = None) -> None:
        """Add an evaluation made elsewhere (a warm start) to the study as a finished trial.

        ``parameters``: a nested config of this space; ``value``: the metric's value, or a mapping
        of metric -> value (for several objectives).
        """
        space = check_ready(self, self._space)
        flat = flatten_dict(dict(parameters))
        missing = sorted(set(space) - set(flat))
        if missing:
            raise ValueError(f"add_evaluated_point: the point {parameters!r} lacks {missing}, which the "
                             "space samples. Fix: give a value for every sampled axis.")
        metrics = self._metric if isinstance(self._metric, list) else [str(self._metric)]
        result = value if isinstance(value, Mapping) else {metrics[0]: value}
        values = None if error else objective_values(metrics, result)
        study = self._ensure_study()
        params = {k: flat[k] for k in space}
        if values is None:
            trial = optuna.trial.create_trial(params=params, distributions=space, state=TrialState.FAIL)
        else:
            trial = optuna.trial.create_trial(params=params, distributions=space, values=values)
        study.add_trial(trial)

    def get_state(self) -> dict[str, Any]:
        """Plain JSON-able data: the settings, the trial ids and Optuna's journal of the study."""
        return {
            "version": STATE_VERSION,
            "searcher": type(self).__name__,
            "space": None if self._space is None else
            {name: distribution_to_json(d) for name, d in self._space.items()},
            "metric": self._metric,
            "mode": self._mode,
            "sampler": self._sampler,
            "sampler_options": self._sampler_options,
            "seed": self._seed,
            "points": self._points,
            "pending": dict(self._pending),
            "finished": sorted(self._finished),
            "journal": list(self._journal.logs),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION or state.get("searcher") != type(self).__name__:
            raise ValueError(f"{type(self).__name__} cannot read this state (searcher "
                             f"{state.get('searcher')!r}, version {state.get('version')!r}; expected "
                             f"{type(self).__name__!r}, version {STATE_VERSION}).")
        saved_space = None if state["space"] is None else {
            name: json_to_distribution(d) for name, d in state["space"].items()}
        if self._space is not None and saved_space is not None and saved_space != self._space:
            raise ValueError(f"The saved state searches {sorted(saved_space)}, but this searcher's space "
                             f"is {sorted(self._space)} (or differs in bounds). Fix: restore with the "
                             "space the experiment ran with.")
        for name in ("metric", "mode"):
            current, saved = getattr(self, f"_{name}"), state[name]
            if current is not None and saved is not None and current != saved:
                raise ValueError(f"The saved state optimises {name}={saved!r}, but this searcher "
                                 f"has {name}={current!r}. Fix: create it with {name}={saved!r}.")
        self._metric = state["metric"] if state["metric"] is not None else self._metric
        self._mode = state["mode"] if state["mode"] is not None else self._mode
        self._sampler = state["sampler"]
        self._sampler_options = dict(state["sampler_options"])
        self._seed = state["seed"]
        self._points = [dict(p) for p in state["points"]]
        self._space = saved_space if saved_space is not None else self._space
        self._pending = {trial_id: int(number) for trial_id, number in state["pending"].items()}
        self._finished = set(state["finished"])
        self._journal = MemoryJournal(state["journal"])
        self._study = None
        if self._space is not None:
            self._ensure_study()

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON, atomically."""
        write_state(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(read_state(checkpoint_path))

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the searcher with the Tuner; the study is rebuilt from the journal.
        return self.get_state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        Searcher.__init__(self, metric=state["metric"], mode=state["mode"])  # type: ignore[arg-type]
        self._space = None
        self._journal = MemoryJournal()
        self._study = None
        self.set_state(state)

    # -- results ------------------------------------------------------------------------------

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (read it, e.g. ``best_trials``; suggestions go through Tune)."""
        return self._ensure_study()

    def best_configs(self) -> list[dict[str, Any]]:
        """The best config (one objective) or the Pareto front (several), nested."""
        trials = self._ensure_study().best_trials
        return [unflatten_dict(dict(t.params)) for t in trials]

    def write_journal(self, path: str | os.PathLike[str]) -> None:
        """Write the study as an Optuna journal file (one JSON operation per line), atomically."""
        atomic_write(path, "".join(json.dumps(log, allow_nan=False) + "\n" for log in self._journal.logs))

    # -- internals ----------------------------------------------------------------------------

    def _set_space(self, config: Mapping[str, Any]) -> None:
        space = OptunaSearch.convert_search_space(dict(config))
        if not space:
            raise ValueError(f"The search space has no Ray Tune domains to sample: {dict(config)!r}. "
                             "Fix: use tune.uniform/loguniform/randint/choice for what to search.")
        self._space = space
        for point in self._points:
            unknown = sorted(set(point) - set(space))
            if unknown:
                raise ValueError(f"`points_to_evaluate` names {unknown}, which the space does not "
                                 f"sample (sampled: {sorted(space)}). Fix: leave constants out.")
        if self._study is None and self._space is not None and self._mode:
            self._ensure_study()

    def _ensure_study(self) -> optuna.Study:
        if self._study is not None:
            return self._study
        if not self._mode:
            raise RuntimeError(UNDEFINED_METRIC_MODE.format(
                cls=type(self).__name__, metric=self._metric, mode=self._mode))
        modes = self._mode if isinstance(self._mode, list) else [self._mode]
        fresh = not self._journal.logs
        self._study = optuna.create_study(
            storage=JournalStorage(self._journal), study_name=STUDY_NAME, load_if_exists=True,
            directions=["minimize" if m == "min" else "maximize" for m in modes],
            sampler=make_sampler(self._sampler, self._seed, self._sampler_options))
        if fresh:
            for point in self._points:
                self._study.enqueue_trial(point)
        return self._study

    def _trial_seed(self, number: int) -> int:
        return int(np.random.SeedSequence([self._seed, number]).generate_state(1)[0])
