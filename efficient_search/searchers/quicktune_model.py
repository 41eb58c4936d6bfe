"""The state a ``QuickTuneSearcher`` and a ``FreezeThawScheduler`` share (no Ray here).

:class:`QuickTuneModel` owns the surrogate and what the run has observed, and scores candidates by
cost-aware expected improvement: a new configuration at a budget, or a paused trial at its next
budget, against the best value any trial reached at that budget, divided by the predicted seconds of
getting there to the power ``alpha``.

Where the surrogate comes from (``surrogate=``):

- a folder saved by ``meta_train`` / ``DeepKernelSurrogate.save`` (``surrogate.json`` inside),
- any meta-dataset path ``load_meta_dataset`` reads: meta-trained when first needed,
- a ``DeepKernelSurrogate`` object (copied),
- ``None``: a small surrogate fitted on this run's own curves only, refitted each time the number of
  observed points grew by ``REFIT_GROWTH`` (so ``suggest`` stays well under a second).

Between refits the GP conditions on every observation (``fine_tune``; cheap: no gradient steps by
default). Observations are kept in the surrogate's own direction (larger is better for an online
surrogate, whatever the run's ``mode``), so min and max searches decide alike.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from efficient_search.durable import atomic_write
from efficient_search.searchers.quicktune_guard import RungRanks, promotable, rung_steps
from efficient_search.searchers.quicktune_observations import Observations, flat_features
from efficient_search.surrogate.loading import detect_format, load_meta_dataset
from efficient_search.surrogate.meta_dataset import MetaDataset
from efficient_search.surrogate.settings import SurrogateSettings
from efficient_search.validate import check_int, check_mapping, check_number

if TYPE_CHECKING:  # torch and gpytorch load when a surrogate is first needed, not on import
    from efficient_search.surrogate.deep_kernel import DeepKernelSurrogate

logger = logging.getLogger(__name__)

STATE_VERSION = 1
#: Folder (beside the searcher's checkpoint file) that holds the surrogate's safetensors + JSON.
SURROGATE_FOLDER = "quicktune-surrogate"
MARKER_FILE = "quicktune-fit.json"
#: An online surrogate is fitted once this many values were observed (over at least two trials) ...
MIN_ONLINE_POINTS = 3
#: ... and refitted each time the number of observed values grew by this factor.
REFIT_GROWTH = 2.0
#: The GP re-conditions once the observed values grew by this share since it last did (at least one
#: value): conditioning on hundreds of points costs ~0.1 s on a CPU, and a paused trial's newest values
#: reach its prediction through its partial curve anyway.
CONDITION_GROWTH = 0.1
#: Hyperparameters of this many configs are kept, so that scoring a pool again does not re-derive them.
FEATURE_CACHE = 20_000
#: Sizes of the online surrogate: small, so that a refit takes a fraction of a second on a CPU.
ONLINE_SETTINGS = SurrogateSettings(
    hidden=32,
    features=8,
    curve_channels=4,
    cost_hidden=16,
    meta_train_steps=40,
    batch_size=64,
    cost_train_steps=40,
    max_train_points=2000,
)
META_TRAIN_KEYS = ("hold_out", "datasets")
#: What the acquisition's expected improvement is of: the value at the end of the next segment over the
#: best seen there (``next``, DyHPO's multi-fidelity EI), or the value at the last budget step over the
#: best value seen at any step (``final``); the cost is that of the next segment in both.
HORIZONS = ("next", "final")
SOURCES = ("online", "saved", "meta_dataset", "object")

Featurize = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class QuickTuneModel:
    """Surrogate, observations and pause bookkeeping of one Quick-Tune search.

    Args:
        surrogate: see the module docstring.
        meta_train_options: when ``surrogate`` is a meta-dataset path: :class:`SurrogateSettings`
            fields plus ``hold_out``/``datasets`` (data set names to leave out / keep).
        meta_features: the task's meta-features, when the surrogate was trained with some.
        alpha: exponent of the predicted cost in the acquisition (0: plain expected improvement).
        horizon: ``next`` or ``final`` (see :data:`HORIZONS`).
        seed: seeds the online surrogate's fits.
        online_steps: gradient steps of each online fit (the surrogate fitted on this run only).
        featurize: maps a Tune config to the hyperparameters the surrogate knows (default: the
            flattened config without fidelity keys).
    """

    def __init__(
        self,
        *,
        surrogate: str | os.PathLike[str] | DeepKernelSurrogate | None = None,
        meta_train_options: Mapping[str, Any] | None = None,
        meta_features: Mapping[str, float] | None = None,
        alpha: float = 0.0,
        horizon: str = "next",
        seed: int = 0,
        online_steps: int = ONLINE_SETTINGS.meta_train_steps,
        featurize: Featurize | None = None,
    ):
        check_int("online_steps", online_steps, min=1, expected="an integer >= 1 (gradient steps)")
        check_number("alpha", alpha, min=0, expected="a finite number >= 0", fix="e.g. alpha=1.")
        if horizon not in HORIZONS:
            raise ValueError(f"`horizon` must be one of {HORIZONS}, but got {horizon!r}. Fix: "
                             "horizon='final' to score the value at the last budget step.")
        check_int("seed", seed, error=TypeError)
        if meta_features is not None:
            check_mapping("meta_features", meta_features, example="{num_classes: 102}")
            for name, value in meta_features.items():
                check_number(f"meta_features.{name}", value, numpy=True, error=TypeError)
        if featurize is not None and not callable(featurize):
            raise TypeError(
                f"`featurize` must be a function config -> hyperparameters, but got {featurize!r}."
            )
        self.alpha, self.seed, self.featurize = float(alpha), seed, featurize
        self.online_steps = int(online_steps)
        self.horizon = horizon
        self.meta_features = None if meta_features is None else dict(meta_features)
        self._path: str | None = None
        self._base: DeepKernelSurrogate | None = None
        self._settings, self._meta_keep = self._meta_train_options(meta_train_options, surrogate)
        from efficient_search.surrogate.deep_kernel import INFO_FILE, DeepKernelSurrogate

        if surrogate is None:
            self.source = "online"
        elif isinstance(surrogate, DeepKernelSurrogate):
            self.source, self._base = "object", surrogate.copy()
        elif isinstance(surrogate, (str, os.PathLike)):
            self._path = os.fspath(surrogate)
            if os.path.isfile(os.path.join(self._path, INFO_FILE)):
                self.source, self._base = "saved", DeepKernelSurrogate.load(self._path)
            else:
                detect_format(self._path)  # a clear error now if it is no meta-dataset either
                self.source = "meta_dataset"
        else:
            raise TypeError(
                f"`surrogate` must be a saved surrogate folder, a meta-dataset path, a "
                f"DeepKernelSurrogate or None, but got {type(surrogate).__name__}."
            )
        self.observations = Observations()
        self.paused: set[str] = set()
        self.metric: str | None = None
        self.mode: str | None = None
        self.max_steps: int | None = None
        self.cost_budget_s: float | None = None
        self.budget_step = 1  # epochs between two pauses (a paired scheduler sets it)
        self.paired = False  # a FreezeThawScheduler drives the budgets
        self.eta: int | None = None  # successive-halving guard on continuing (a paired scheduler sets it)
        self._ranks = RungRanks()  # values per rung, best first, for the guard
        self._fit: dict[str, Any] | None = None  # online: what the base was fitted on
        self._cond: dict[str, Any] | None = None  # what the GP conditions on: {"marks", "points"}
        self._cond_due: dict[str, Any] | None = None  # restored: condition on exactly this first
        self._features: dict[str, dict[str, Any]] = {}
        # Predictions (mean, variance, seconds) by row: a continued trial's stay valid until the
        # surrogate changes; new candidates' until the next observation (they are drawn afresh).
        self._predicted: dict[str, dict[Any, tuple[float, float, float]]] = {"new": {}, "old": {}}
        self._predicted_at: dict[str, Any] = {"new": None, "old": None}
        self._surrogate_changes = 0

    @staticmethod
    def _meta_train_options(
        options: Mapping[str, Any] | None, surrogate: Any
    ) -> tuple[SurrogateSettings | None, dict[str, list[str]]]:
        if options is None:
            return None, {}
        if not isinstance(surrogate, (str, os.PathLike)):
            raise ValueError(
                "`meta_train_options` apply when `surrogate` is a meta-dataset path. Fix: "
                "pass surrogate=PATH or leave meta_train_options out."
            )
        known = {f.name for f in fields(SurrogateSettings)}
        unknown = sorted(set(options) - known - set(META_TRAIN_KEYS))
        if unknown:
            raise ValueError(
                f"Unknown `meta_train_options` {unknown}. Valid: {list(META_TRAIN_KEYS)} and "
                f"surrogate settings {sorted(known)}."
            )
        settings = SurrogateSettings(**{k: v for k, v in options.items() if k in known})
        keep = {k: [str(n) for n in options[k]] for k in META_TRAIN_KEYS if options.get(k) is not None}
        return settings, keep

    # -- objective and observations ---------------------------------------------------------------
    def set_objective(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode

    @property
    def ei_mode(self) -> str:
        return "max" if self.source == "online" else self.base().mode

    def signed(self, value: float) -> float:
        """A run's metric value in the surrogate's direction."""
        if self.source == "online":
            return value if self.mode != "min" else -value
        return value

    def features(self, config: Mapping[str, Any]) -> dict[str, Any]:
        key = json.dumps(config, sort_keys=True, default=str)
        cached = self._features.get(key)
        if cached is None:
            given = self.featurize(config) if self.featurize is not None else config
            cached = flat_features(given)
            if len(self._features) >= FEATURE_CACHE:
                self._features.clear()
            self._features[key] = cached
        return cached

    def register(self, trial_id: str, config: Mapping[str, Any]) -> None:
        self.observations.register(trial_id, self.features(config))

    def on_pause(self, trial_id: str) -> None:
        self.paused.add(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        self.paused.discard(trial_id)

    @property
    def exhausted(self) -> bool:
        """Whether the time budget (reported cost seconds over all trials) is spent."""
        return self.cost_budget_s is not None and self.observations.spent_s >= self.cost_budget_s

    def rungs(self) -> set[int]:
        """The steps where the successive-halving guard applies (none while ``eta`` is None)."""
        return rung_steps(self.budget_step, self.eta, self.max_steps or self.steps()) if self.eta else set()

    def promotable(self, trial_ids: list[str]) -> np.ndarray:
        """Whether each paused trial may continue under the guard (see ``quicktune_guard``)."""
        sign = 1.0 if not self.eta or self.ei_mode == "max" else -1.0
        return promotable(self.observations, trial_ids, rungs=self.rungs(), eta=self.eta, sign=sign,
                          ranks=self._ranks)

    # -- the surrogate ----------------------------------------------------------------------------
    def base(self) -> DeepKernelSurrogate:
        """The surrogate before this run's conditioning (meta-trained here on first use if needed)."""
        if self._base is None and self.source == "meta_dataset":
            data = load_meta_dataset(str(self._path))
            if "datasets" in self._meta_keep:
                data = data.select(self._meta_keep["datasets"])
            if "hold_out" in self._meta_keep:
                data = data.drop(self._meta_keep["hold_out"])
            logger.info("QuickTune: meta-training the surrogate on %s", data.summary())
            from efficient_search.surrogate.deep_kernel import DeepKernelSurrogate

            self._base = DeepKernelSurrogate(settings=self._settings, seed=self.seed).fit(data)
        if self._base is None:
            raise RuntimeError("the online surrogate is not fitted yet; check `ready` first.")
        if self.source != "online" and self.mode is not None and self._base.mode != self.mode:
            raise ValueError(
                f"The surrogate predicts {self._base.metric!r} to {self._base.mode}imise, but "
                f"the search has mode={self.mode!r}. Fix: search with mode="
                f"{self._base.mode!r}, or use a surrogate trained on this metric."
            )
        return self._base

    @property
    def ready(self) -> bool:
        """Whether candidates can be scored (an online surrogate needs a first fit)."""
        self.refresh()
        return self.source != "online" or self._base is not None

    def steps(self) -> int:
        """Budget steps the surrogate's curves have."""
        if self.source == "online":
            return int(self._fit["steps"]) if self._fit else max(self.max_steps or 1, 1)
        return len(self.base().budgets)

    def refresh(self) -> None:
        """Refit an online surrogate when due, and condition the GP on new observations."""
        obs = self.observations
        if self.source == "online":
            usable = obs.usable()
            due = (
                self._fit is None or (self._base is None) or obs.points >= REFIT_GROWTH * self._fit["points"]
            )
            if self._fit is not None and self._base is None:
                self._refit(self._fit)  # restored: the same fit as before the restore
            elif due and obs.points >= MIN_ONLINE_POINTS and len(usable) >= 2:
                last = max(obs.trials[t].last_step for t in usable)
                self._refit(
                    {
                        "marks": {t: obs.trials[t].last_step for t in usable},
                        "steps": max(self.max_steps or 0, last),
                        "points": obs.points,
                        "count": (self._fit or {}).get("count", 0) + 1,
                    }
                )
        if self._base is None and self.source == "online":
            return
        if self._cond_due is not None:
            self._condition(self._cond_due)
        elif self._cond is None or obs.points - self._cond["points"] >= max(
            1, math.ceil(CONDITION_GROWTH * self._cond["points"])
        ):
            self._condition(
                {"marks": {t: obs.trials[t].last_step for t in obs.usable()}, "points": obs.points}
            )

    def _refit(self, fit: dict[str, Any]) -> None:
        marks = {str(t): int(s) for t, s in dict(fit["marks"]).items()}
        ids = self.observations.usable(marks)
        features, values, costs = self.observations.arrays(ids, int(fit["steps"]), marks)
        data = MetaDataset(
            configs=pd.DataFrame(features),
            curves=values,
            costs=costs,
            datasets=np.asarray(["task"] * len(ids)),
            budgets=np.arange(1, int(fit["steps"]) + 1),
            metric=self.metric or "metric",
            mode="max",
        )
        from efficient_search.surrogate.deep_kernel import DeepKernelSurrogate

        settings = replace(ONLINE_SETTINGS, meta_train_steps=self.online_steps)
        self._base = DeepKernelSurrogate(settings=settings, seed=self.seed).fit(data)
        self._surrogate_changes += 1
        self._fit = {**fit, "marks": marks}
        self._cond = None

    def _condition(self, cond: dict[str, Any]) -> None:
        base = self.base()
        marks = {str(t): int(v) for t, v in dict(cond["marks"]).items()}
        ids = self.observations.usable(marks)
        if ids:
            features, values, costs = self.observations.arrays(ids, self.steps(), marks)
            base.fine_tune(
                pd.DataFrame(features),
                values,
                costs if np.isfinite(costs).any() else None,
                meta_features=self.meta_features,
            )
        else:
            base.reset()
        self._cond, self._cond_due = {"marks": marks, "points": int(cond["points"])}, None
        self._surrogate_changes += 1

    # -- scoring ----------------------------------------------------------------------------------
    def _budget(self, step: int) -> float:
        budgets = self.base().budgets
        return float(budgets[min(max(step, 1), len(budgets)) - 1])

    def acquisition(
        self,
        features: list[dict[str, Any]],
        targets: list[int],
        starts: list[int],
        curves: np.ndarray | None = None,
    ) -> np.ndarray:
        """Cost-aware EI of reaching step ``targets[i]`` from step ``starts[i]`` (0: a new config)."""
        return self._improvement(self._predict(features, targets, starts, curves), targets)

    def _predict(
        self,
        features: list[dict[str, Any]],
        targets: list[int],
        starts: list[int],
        curves: np.ndarray | None,
    ) -> np.ndarray:
        """Predicted mean, variance and seconds ``(3, N)`` of going from ``starts`` to ``targets``."""
        self.refresh()
        base, steps = self.base(), self.steps()
        frame = pd.DataFrame(features)
        targets_c = [min(max(t, 1), steps) for t in targets]
        predicted = [steps] * len(targets_c) if self.horizon == "final" else targets_c
        mean, variance = base.predict(
            frame,
            budgets=[self._budget(t) for t in predicted],
            curves=curves,
            meta_features=self.meta_features,
            latent=True,
        )
        cost = self._cost(frame, [min(s, steps) for s in starts], targets_c)
        return np.stack([mean, np.maximum(variance, 0.0), cost])

    def _improvement(self, predicted: np.ndarray, targets: list[int]) -> np.ndarray:
        """Cost-aware EI from predictions ``(3, N)`` against the best value seen at each target step."""
        # scipy.stats loads here, not when the searchers package is imported.
        from efficient_search.surrogate.acquisition import best_at_budgets, cost_aware_expected_improvement

        steps = self.steps()
        per_step = self.observations.best_per_step(steps, self.ei_mode)
        if self.horizon == "final":
            seen = per_step[np.isfinite(per_step)]
            reduce = np.max if self.ei_mode == "max" else np.min
            best = np.full(len(targets), float(reduce(seen)) if seen.size else np.nan)
        else:
            columns = np.clip(np.asarray(targets, dtype=np.int64), 1, steps) - 1
            best = best_at_budgets(per_step[None, :], columns, mode=self.ei_mode)
        mean, variance, cost = predicted
        return cost_aware_expected_improvement(
            mean, variance, best, cost, alpha=self.alpha, mode=self.ei_mode
        )

    def _cost(self, frame: pd.DataFrame, starts: list[int], targets: list[int]) -> np.ndarray:
        base = self.base()
        if not base.has_cost_data or self.alpha == 0:
            return np.ones(len(frame))
        rows, budgets = [], []
        for i, (start, target) in enumerate(zip(starts, targets, strict=True)):
            for step in range(start + 1, max(target, start + 1) + 1):
                rows.append(i)
                budgets.append(self._budget(step))
        seconds = base.predict_cost(
            frame.iloc[rows].reset_index(drop=True), budgets, meta_features=self.meta_features
        )
        return np.bincount(np.asarray(rows), weights=seconds, minlength=len(frame))

    def _memoised(
        self, kind: str, keys: list[Any], compute: Callable[[list[int]], np.ndarray]
    ) -> np.ndarray:
        """Predictions ``(3, N)`` by row key; only rows not predicted since the surrogate last changed
        (for new candidates: since the last observation) are computed. Expected improvement is not
        kept: it moves with the best value seen, and is cheap to recompute from the predictions."""
        self.refresh()
        now = (self._surrogate_changes, self.observations.version if kind == "new" else None)
        table = self._predicted[kind]
        if self._predicted_at[kind] != now:
            table.clear()
            self._predicted_at[kind] = now
        missing = [i for i, k in enumerate(keys) if k not in table]
        if missing:
            for i, column in zip(missing, compute(missing).T, strict=True):
                table[keys[i]] = (float(column[0]), float(column[1]), float(column[2]))
        return np.asarray([table[k] for k in keys], dtype=np.float64).reshape(len(keys), 3).T

    def predict_new(self, configs: list[Mapping[str, Any]], target: int) -> tuple[np.ndarray, np.ndarray]:
        """Predicted mean and variance of new configs' metric at step ``target`` (the surrogate's
        scale and direction: see ``signed``), to check how it ranks configs."""
        features = [self.features(c) for c in configs]
        mean, variance, _ = self._predict(features, [target] * len(configs), [0] * len(configs), None)
        return mean, variance

    def score_new(self, configs: list[Mapping[str, Any]], target: int) -> np.ndarray:
        """Acquisition of new configs trained up to step ``target``."""
        if not configs:
            return np.zeros(0)
        features = [self.features(c) for c in configs]
        keys = [("new", json.dumps(f, sort_keys=True, default=str), target) for f in features]

        def compute(rows: list[int]) -> np.ndarray:
            return self._predict([features[i] for i in rows], [target] * len(rows), [0] * len(rows), None)

        return self._improvement(self._memoised("new", keys, compute), [target] * len(configs))

    def score_continue(self, trial_ids: list[str], targets: list[int]) -> np.ndarray:
        """Acquisition of continuing trials from their last step to ``targets``."""
        if not trial_ids:
            return np.zeros(0)
        trials = self.observations.trials
        keys = [("old", t, trials[t].last_step, target) for t, target in zip(trial_ids, targets, strict=True)]

        def compute(rows: list[int]) -> np.ndarray:
            ids = [trial_ids[i] for i in rows]
            features, curves, _ = self.observations.arrays(ids, self.steps())
            return self._predict(
                features, [targets[i] for i in rows], [trials[t].last_step for t in ids], curves
            )

        return self._improvement(self._memoised("old", keys, compute), targets)

    # -- plain-data state -------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "source": self.source,
            "path": self._path,
            "metric": self.metric,
            "mode": self.mode,
            "max_steps": self.max_steps,
            "observations": self.observations.to_state(),
            "paused": sorted(self.paused),
            "fit": None if self._fit is None else {**self._fit, "marks": list(self._fit["marks"].items())},
            "conditioned": None
            if self._cond is None
            else {"marks": list(self._cond["marks"].items()), "points": self._cond["points"]},
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"QuickTune state version {state.get('version')!r} is not {STATE_VERSION}.")
        if state["source"] != self.source or state["path"] != self._path:
            raise ValueError(
                f"The saved Quick-Tune state used surrogate {state['source']} {state['path']!r}, "
                f"this one {self.source} {self._path!r}. Fix: restore with the same `surrogate`."
            )
        self.metric = self.metric or state["metric"]
        self.mode = self.mode or state["mode"]
        self.max_steps = self.max_steps or state["max_steps"]
        self.observations.set_state(state["observations"])
        self.paused = set(state["paused"])
        fit = state["fit"]
        if self.source == "online":
            same = (
                fit is not None
                and self._fit is not None
                and self._fit["count"] == fit["count"]
                and self._base is not None
                and self._fit["marks"] == dict(fit["marks"])
            )
            if not same:
                self._base = None  # refitted on the same marks when next needed
            self._fit = None if fit is None else {**fit, "marks": dict(fit["marks"])}
        self._cond, self._cond_due = None, state.get("conditioned")
        self._surrogate_changes += 1

    def save_weights(self, folder: str) -> None:
        """The surrogate (safetensors + JSON) into ``folder/quicktune-surrogate``; nothing if none."""
        if self._base is None:
            return
        target = os.path.join(folder, SURROGATE_FOLDER)
        self._base.save(target)
        marker = {
            "source": self.source,
            "path": self._path,
            "fit": None if self._fit is None else {**self._fit, "marks": list(self._fit["marks"].items())},
        }
        atomic_write(os.path.join(target, MARKER_FILE), json.dumps(marker))

    def load_weights(self, folder: str) -> bool:
        """Take the surrogate saved in ``folder`` if it is the one the restored state needs."""
        target = os.path.join(folder, SURROGATE_FOLDER)
        marker_path = os.path.join(target, MARKER_FILE)
        if self.source in ("saved", "object") or not os.path.isfile(marker_path):
            return False
        with open(marker_path) as stream:
            marker = json.load(stream)
        wanted = None if self._fit is None else {**self._fit, "marks": list(self._fit["marks"].items())}
        if (
            marker["source"] != self.source
            or marker["path"] != self._path
            or json.dumps(marker["fit"]) != json.dumps(wanted)
        ):
            return False
        from efficient_search.surrogate.deep_kernel import DeepKernelSurrogate

        self._base = DeepKernelSurrogate.load(target)
        self._cond = None
        self._surrogate_changes += 1
        return True
