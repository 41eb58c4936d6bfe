"""``QuickTuneSearcher``: Quick-Tune's meta-learned, cost-aware searcher as a Ray Tune ``Searcher``.

Each suggestion is the candidate with the highest cost-aware expected improvement (see
:mod:`~efficient_search.searchers.quicktune_model`) among a pool: every unseen config of a small
finite space, else ``pool_size`` configs drawn from the space with the searcher's seeded generator.
``points_to_evaluate`` come first; an online-only surrogate starts with ``initial_random`` random
configs.

Paired with :class:`~efficient_search.schedulers.FreezeThawScheduler` (``searcher: quicktune,
scheduler: freeze_thaw``), the scheduler pauses trials at every budget step and decides whether a
paused trial continues or the searcher's new config starts; new configs are then scored at the first
budget step. Alone (with ASHA or FIFO) the searcher scores them at the maximum budget (``max_t``).
Paused trials do not count against ``max_concurrent`` (Tune's ``ConcurrencyLimiter`` hands the limit
to the searcher), so pausing never starves the search.

Example::

    searcher = QuickTuneSearcher(surrogate="surrogates/quicktune", metric="accuracy", mode="max",
                                 meta_features={"num_samples": 5000, "num_classes": 10,
                                                "image_size": 224, "channels": 3})
    scheduler = FreezeThawScheduler(searcher=searcher, max_t=50)
    tune.Tuner(fn, param_space=space, tune_config=tune.TuneConfig(search_alg=searcher,
                                                                  scheduler=scheduler))
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.search import UNDEFINED_SEARCH_SPACE, Searcher

from efficient_search.searchers.axes import ChoiceAxis, IntAxis
from efficient_search.searchers.checks import check_points, check_ready
from efficient_search.searchers.quicktune_model import Featurize, QuickTuneModel
from efficient_search.searchers.space import Genome, SearchSpace, as_search_space
from efficient_search.searchers.state_file import read_state, write_state
from efficient_search.validate import check_int, check_name, is_number

if TYPE_CHECKING:
    from efficient_search.surrogate.deep_kernel import DeepKernelSurrogate

logger = logging.getLogger(__name__)

STATE_VERSION = 1
TIME_ATTRS = ("fidelity/epoch", "training_iteration")


def step_of(result: Mapping[str, Any], time_attr: str | None, default: int) -> int:
    """The budget step a result stands for: ``time_attr`` (else fidelity/epoch, else the iteration)."""
    names = (time_attr,) if time_attr else TIME_ATTRS
    for name in names:
        value = result.get(name)
        if is_number(value, numpy=True, finite=True):
            return max(int(round(float(value))), 1)
    return default


def metric_value(result: Mapping[str, Any] | None, metric: str) -> float:
    """The metric as a float; NaN when it is missing or not a number."""
    value = (result or {}).get(metric)
    if not is_number(value, numpy=True):
        return math.nan
    return float(value)


class QuickTuneSearcher(Searcher):
    """Cost-aware expected improvement over a (meta-learned) deep-kernel GP of learning curves.

    Args:
        space: a Ray Tune param space; leave it out to take Tune's ``param_space``.
        metric, mode: the objective (usually set through ``tune.TuneConfig``).
        points_to_evaluate: configs to try first, exactly.
        seed: seeds the candidate pool and the online surrogate.
        surrogate: a folder saved by ``meta_train``, a meta-dataset path (meta-trained at first use),
            a ``DeepKernelSurrogate``, or None (fitted on this run only).
        meta_train_options: settings and ``hold_out``/``datasets`` for meta-training at start.
        meta_features: the task's meta-features, if the surrogate uses some.
        alpha: exponent of the predicted cost (0, the default: plain expected improvement; 1 favoured
            cheap, low-ceiling configurations on every replayed regime, see README).
        horizon: the expected improvement of the value at the end of the next segment (``next``) or
            at the last budget step (``final``); see ``quicktune_model.HORIZONS``.
        pool_size: candidates scored per suggestion (finite spaces up to this size are enumerated).
        max_t: the maximum budget step (epochs); a paired scheduler sets it.
        time_attr: the result key counting budget steps (default fidelity/epoch, else the iteration).
        cost_attr: the result key with seconds spent (none reported: costs are left out).
        cumulative_cost: whether ``cost_attr`` counts from the trial's start (our tasks do).
        initial_random: random configs first when the surrogate is fitted online only.
        online_steps: gradient steps of each online fit (40; 200 fit slower and gained nothing clear
            on held-out replays, see README's warm-start benchmark).
        featurize: config -> the hyperparameters the surrogate knows (Python only).
    """

    def __init__(
        self,
        space: Mapping[str, Any] | None = None,
        *,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        seed: int = 0,
        surrogate: str | os.PathLike[str] | DeepKernelSurrogate | None = None,
        meta_train_options: Mapping[str, Any] | None = None,
        meta_features: Mapping[str, float] | None = None,
        alpha: float = 0.0,
        horizon: str = "next",
        pool_size: int = 256,
        max_t: int | None = None,
        time_attr: str | None = None,
        cost_attr: str = "cost/seconds",
        cumulative_cost: bool = True,
        initial_random: int = 3,
        online_steps: int = 40,
        featurize: Featurize | None = None,
    ):
        if mode not in (None, "min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', but got {mode!r}.")
        if metric is not None and not isinstance(metric, str):
            raise TypeError(
                f"`metric` must be one metric name, but got {metric!r}: QuickTuneSearcher "
                "optimises a single objective."
            )
        for name, value, low in (("pool_size", pool_size, 1), ("initial_random", initial_random, 0)):
            check_int(name, value, min=low)
        check_int("max_t", max_t, min=1, optional=True, expected="an integer >= 1 (epochs)")
        check_int("seed", seed, error=TypeError)
        check_name("time_attr", time_attr, optional=True)
        check_name("cost_attr", cost_attr)
        super().__init__(metric=metric, mode=mode)
        self.model = QuickTuneModel(
            surrogate=surrogate,
            meta_train_options=meta_train_options,
            meta_features=meta_features,
            alpha=alpha,
            horizon=horizon,
            seed=seed,
            online_steps=online_steps,
            featurize=featurize,
        )
        self.model.max_steps = max_t
        self.pool_size, self.initial_random = pool_size, initial_random
        self.time_attr, self.cost_attr, self.cumulative_cost = time_attr, cost_attr, cumulative_cost
        self._points = check_points(points_to_evaluate)
        self._rng = np.random.default_rng(seed)
        self._space: SearchSpace | None = None
        self._max_concurrent = 0
        self._reset()
        if metric and mode:
            self.model.set_objective(metric, mode)
        if space is not None:
            self._set_space(space)

    def _reset(self) -> None:
        self._live: dict[str, Genome] = {}  # suggested, not finished (running, pending or paused)
        self._finished: set[str] = set()
        self._seen: set[tuple[Any, ...]] = set()
        self._suggested = 0
        self._warm = 0  # trials of an earlier search added by ``add_evaluated_point``
        self._proposal: tuple[list[int], Genome, float | None] | None = None

    def _set_space(self, space: Mapping[str, Any]) -> None:
        self._space = as_search_space(space)
        for i, point in enumerate(self._points):
            self._space.encode_point(point, f"points_to_evaluate[{i}]")  # clear errors up front

    # -- Ray's Searcher interface -------------------------------------------------------------------
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        if self._space is not None:
            return False
        if mode not in (None, "min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', but got {mode!r}.")
        self._set_space(config)
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        if self._metric and self._mode:
            self.model.set_objective(self._metric, self._mode)
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Take the limit from Tune's ``ConcurrencyLimiter``: paused trials must not count."""
        self._max_concurrent = int(max_concurrent)
        return True

    @property
    def max_concurrent(self) -> int:
        """Trials that may train at once (paused ones not counted); 0 for no limit."""
        return self._max_concurrent

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        space = check_ready(self, self._space)
        if trial_id in self._live:
            return space.decode(self._live[trial_id])
        if self.model.exhausted:
            return Searcher.FINISHED  # type: ignore[return-value]  # Ray's documented end marker
        running = [t for t in self._live if t not in self.model.paused]
        if self._max_concurrent and len(running) >= self._max_concurrent:
            return None
        genome, score = self._propose()
        if score is not None and self.model.paired and self._paused_trial_beats(score):
            return None  # the scheduler will resume a paused trial instead: no new trial now
        self._proposal = None
        self._live[trial_id] = genome
        self._seen.add(tuple(genome))
        self._suggested += 1
        config = space.decode(genome)
        self.model.register(trial_id, config)
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self._live:
            self._observe(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id not in self._live:
            logger.debug("QuickTuneSearcher: result of unknown or finished trial %s ignored.", trial_id)
            return
        del self._live[trial_id]
        self._finished.add(trial_id)
        self.model.on_unpause(trial_id)
        if error or result is None:
            self.model.observations.mark_failed(trial_id)
        else:
            self._observe(trial_id, result)

    # Ray's BOHB hooks (``ConcurrencyLimiter`` forwards them): paused trials free their slot.
    def on_pause(self, trial_id: str) -> None:
        self.model.on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        self.model.on_unpause(trial_id)

    def _observe(self, trial_id: str, result: Mapping[str, Any]) -> None:
        observe_result(
            self.model,
            trial_id,
            result,
            time_attr=self.time_attr,
            cost_attr=self.cost_attr,
            cumulative_cost=self.cumulative_cost,
            metric=str(self._metric),
        )

    def add_evaluated_point(self, parameters: dict[str, Any], value: Any, error: bool = False,
                            pruned: bool = False, intermediate_values: list[Any] | None = None) -> None:
        """Record a trial run elsewhere (a warm start): its learning curve joins the observations the
        surrogate is fine-tuned and conditioned on; it is never suggested again nor continued, and its
        seconds do not count against this search's time budget.

        ``intermediate_values``: the trial's results in order, as Tune reported them (mappings with
        the metric, the budget step and ``cost_attr``), or the metric's values after budget steps
        1, 2, ...; without them ``value`` (a number or a result mapping) is the final result.
        """
        space = check_ready(self, self._space)
        genome = space.encode_whole(parameters, "add_evaluated_point")
        trial_id = f"warm-start-{self._warm}"
        self._warm += 1
        self._seen.add(tuple(genome))
        self._finished.add(trial_id)
        self.model.register(trial_id, space.decode(genome))
        metric = str(self._metric)
        if intermediate_values is None:
            results: list[Any] = [value if isinstance(value, Mapping) else {metric: value}]
        else:
            results = [r if isinstance(r, Mapping) else {metric: r, "training_iteration": i}
                       for i, r in enumerate(intermediate_values, start=1)]
        spent = self.model.observations.spent_s
        for result in results:
            self._observe(trial_id, result)
        self.model.observations.spent_s = spent
        if error:
            self.model.observations.mark_failed(trial_id)

    # -- proposals ----------------------------------------------------------------------------------
    def _propose(self) -> tuple[Genome, float | None]:
        """The next new config and its acquisition (None before the surrogate can score); kept until
        it is suggested or the observations change, so repeated asks draw no new candidates."""
        key = [self.model.observations.version, self._suggested]
        if self._proposal is not None and self._proposal[0] == key:
            return list(self._proposal[1]), self._proposal[2]
        space = self._space
        if space is None:
            raise RuntimeError(UNDEFINED_SEARCH_SPACE.format(cls=type(self).__name__, space="space"))
        genome: Genome
        score: float | None = None
        if self._suggested < len(self._points):
            genome = space.fill(
                space.encode_point(self._points[self._suggested], "points_to_evaluate"), self._rng
            )
        else:
            pool = self._pool(space)
            genome = pool[0]
            learned = (self.model.source != "online"
                       or self._suggested + self._warm >= self.initial_random)
            if learned and self.model.ready:
                # Paired with FreezeThawScheduler a new config runs one budget step before the
                # scheduler weighs it again; alone, it runs to the end (or until ASHA stops it).
                target = (
                    self.model.budget_step
                    if self.model.paired
                    else (self.model.max_steps or self.model.steps())
                )
                scores = self.model.score_new([space.decode(g) for g in pool], target)
                best = int(np.argmax(scores))
                genome, score = pool[best], float(scores[best])
        self._proposal = (key, list(genome), score)
        return genome, score

    def _paused_trial_beats(self, score: float) -> bool:
        """Whether some paused trial's next step promises more per second than the new config."""
        model = self.model
        limit = model.max_steps or model.steps()
        ids = [
            t
            for t in sorted(model.paused)
            if t in model.observations.trials
            and not model.observations.trials[t].failed
            and 0 < model.observations.trials[t].last_step < limit
        ]
        ids = [t for t, ok in zip(ids, model.promotable(ids), strict=True) if ok]
        if not ids:
            return False
        targets = [min(model.observations.trials[t].last_step + model.budget_step, limit) for t in ids]
        return bool(np.max(model.score_continue(ids, targets)) > score)

    def _pool(self, space: SearchSpace) -> list[Genome]:
        """Unseen candidates: all of a small finite space (in random order), else random draws."""
        ranges: list[list[Any]] = []
        for axis in space.axes:
            if isinstance(axis, ChoiceAxis):
                ranges.append(list(range(len(axis.categories))))
            elif isinstance(axis, IntAxis) and axis.high_index - axis.low_index < self.pool_size:
                ranges.append([i * axis.q for i in range(axis.low_index, axis.high_index + 1)])
            else:
                ranges = []
                break
        size = math.prod(len(r) for r in ranges) if ranges or not space.axes else 0
        if 0 < size <= self.pool_size or not space.axes:
            every = [list(g) for g in itertools.product(*ranges) if tuple(g) not in self._seen]
            if every:
                order = self._rng.permutation(len(every))
                return [every[int(i)] for i in order]
            return [list(g) for g in itertools.product(*ranges)][:1]  # exhausted: repeat one
        pool = [space.sample(self._rng) for _ in range(self.pool_size)]
        fresh = [g for g in pool if tuple(g) not in self._seen]
        return fresh or pool

    # -- state --------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Plain JSON-able data; the surrogate's weights travel beside ``save``'s file."""
        return {
            "version": STATE_VERSION,
            "searcher": type(self).__name__,
            "space": self._space.describe() if self._space else None,
            "metric": self._metric,
            "mode": self._mode,
            "rng": self._rng.bit_generator.state,
            "suggested": self._suggested,
            "warm": self._warm,
            "live": [[t, list(g)] for t, g in self._live.items()],
            "finished": sorted(self._finished),
            "seen": [list(k) for k in self._seen],
            "max_concurrent": self._max_concurrent,
            "proposal": None
            if self._proposal is None
            else [self._proposal[0], list(self._proposal[1]), self._proposal[2]],
            "model": self.model.get_state(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"QuickTuneSearcher state version {state.get('version')!r} is not supported "
                f"(expected {STATE_VERSION})."
            )
        if self._space is None and state["space"] is not None:
            rebuilt = SearchSpace.from_description(state["space"])
            if rebuilt is not None:
                self._space = rebuilt
        elif (
            self._space is not None
            and state["space"] is not None
            and json.dumps(self._space.describe()["axes"]) != json.dumps(state["space"]["axes"])
        ):
            raise ValueError(
                "The saved QuickTuneSearcher state belongs to another search space. Fix: restore "
                "with the same space."
            )
        self._metric = self._metric or state["metric"]
        self._mode = self._mode or state["mode"]
        self._reset()
        self._rng.bit_generator.state = state["rng"]
        self._suggested = int(state["suggested"])
        self._warm = int(state.get("warm", 0))
        self._live = {str(t): list(g) for t, g in state["live"]}
        self._finished = set(state["finished"])
        self._seen = {tuple(k) for k in state["seen"]}
        self._max_concurrent = int(state["max_concurrent"]) or self._max_concurrent
        proposal = state.get("proposal")
        self._proposal = (
            None if proposal is None else ([int(k) for k in proposal[0]], list(proposal[1]), proposal[2])
        )
        self.model.set_state(state["model"])
        if self._metric and self._mode:
            self.model.set_objective(self._metric, self._mode)

    def save(self, checkpoint_path: str) -> None:
        """The state as JSON at ``checkpoint_path`` (atomically); the surrogate as safetensors + JSON in
        ``quicktune-surrogate/`` beside it."""
        self.model.save_weights(os.path.dirname(os.path.abspath(checkpoint_path)))
        write_state(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(read_state(checkpoint_path))
        self.model.load_weights(os.path.dirname(os.path.abspath(checkpoint_path)))


def observe_result(
    model: QuickTuneModel,
    trial_id: str,
    result: Mapping[str, Any],
    *,
    time_attr: str | None,
    cost_attr: str,
    cumulative_cost: bool,
    metric: str,
) -> tuple[int, float, float]:
    """Record one Tune result in ``model``: (step, signed value, the step's seconds)."""
    if trial_id not in model.observations.trials:
        return 0, math.nan, 0.0
    # A result without any step counter (a bare final result) counts as the last budget step.
    default = model.max_steps or max(model.observations.trials[trial_id].last_step, 1)
    step = step_of(result, time_attr, default)
    value = metric_value(result, metric)
    signed = model.signed(value) if math.isfinite(value) else math.nan
    cost = result.get(cost_attr)
    if is_number(cost, numpy=True):
        if cumulative_cost:
            seconds = model.observations.observe(trial_id, step, signed, cumulative=float(cost))
        else:
            seconds = model.observations.observe(trial_id, step, signed, seconds=float(cost))
    else:
        # No reported cost: the step is free to the acquisition (Tune's wall-clock time_this_iter_s
        # would make a seeded search depend on machine load; name it as cost_attr to use it).
        seconds = model.observations.observe(trial_id, step, signed)
    return step, value, seconds
