"""Evolutionary search as a Ray Tune ``Searcher``.

One objective: regularized (aging) evolution. Several objectives: steady-state NSGA-II. Both start
from an initial design (``points_to_evaluate``, then the largest, smallest and middle configs,
then random ones until ``population_size`` configs were suggested) and then mutate one axis of a
tournament winner per child. An optional ``cost(config)`` with ``min_cost``/``max_cost`` rejects
configs outside a budget; cost ``bins`` stratify the random part of the design::

    searcher = EvolutionarySearcher(metric="loss", mode="min", seed=0, population_size=16)
    tuner = tune.Tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, 4),
                                                   num_samples=64))
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray.tune.search import UNDEFINED_SEARCH_SPACE, Searcher

from efficient_search.searchers.budget import Cost, CostBudget
from efficient_search.searchers.checks import (
    check_objectives,
    check_points,
    check_ready,
    check_sizes,
    is_int,
    log_ignored_result,
    objective_values,
    tune_objectives,
)
from efficient_search.searchers.pareto import non_dominated_sort
from efficient_search.searchers.population import AgingPopulation, ParetoPopulation
from efficient_search.searchers.space import Gene, Genome, SearchSpace, SpaceLike, as_search_space
from efficient_search.searchers.state_file import read_state, write_state

logger = logging.getLogger(__name__)

STATE_VERSION = 1
#: Mutations of one parent tried before a child comes from elsewhere (a parent late in a search
#: has few untried one-axis neighbours).
CHILD_TRIES = 32
#: Memoised costs and identities kept before the memo is cleared (float axes rarely repeat).
MEMO_LIMIT = 100_000


@dataclass
class Record:
    """A finished trial: its genome and objective values (``None`` when it failed)."""

    trial_id: str
    genome: Genome
    values: list[float] | None
    error: bool = False


class EvolutionarySearcher(Searcher):
    """Regularized evolution for one metric, NSGA-II for a list of metrics.

    Args:
        space: A Ray Tune param space, or one of our spaces (anything with ``param_space``, and
            optionally ``cost(config)`` and ``bins``). Leave it out to take Tune's ``param_space``.
        metric: The metric to optimise, or a list of metrics (NSGA-II).
        mode: ``"min"``/``"max"``, or one of them per metric.
        points_to_evaluate: Nested configs to try first, exactly; gaps are sampled.
        population_size: Members that parents are drawn from; also the initial design's size.
        sample_size: Members in each parent tournament; by default a quarter of the population
            (at least 2).
        seed: Seed of the searcher's own ``numpy`` generator.
        cost: ``cost(config) -> float``, e.g. a parameter count; needed by the three below.
        max_cost: Configs costing more are never suggested.
        min_cost: Configs costing less are never suggested.
        bins: Increasing cost edges; the random initial configs visit the bins in turn.
        keep_bin: Children stay in their parent's cost bin.
        max_retries: Draws before a constraint is declared unsatisfiable.
    """

    _empty_bins: set[int]  # cost bins no config within the budget falls into
    _pending: dict[str, Genome]  # suggested, not finished: trial id -> genome
    _history: list[Record]  # finished trials in order
    _finished: dict[str, int]  # trial id -> index in _history
    _seen: set[Hashable]  # identities of every suggested genome
    _population: AgingPopulation | ParetoPopulation | None

    def __init__(
        self,
        space: Mapping[str, Any] | SpaceLike | None = None,
        *,
        metric: str | list[str] | None = None,
        mode: str | list[str] | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        population_size: int = 20,
        sample_size: int | None = None,
        seed: int | None = None,
        cost: Cost | None = None,
        max_cost: float | None = None,
        min_cost: float | None = None,
        bins: Sequence[float] | None = None,
        keep_bin: bool = False,
        max_retries: int = 100,
    ):
        metric, mode = check_objectives(metric, mode)
        if sample_size is None and is_int(population_size):
            sample_size = min(max(2, population_size // 4), population_size)
        check_sizes(population_size, sample_size, max_retries)
        if space is not None and not isinstance(space, (Mapping, SpaceLike)):
            raise TypeError(f"`space` must be a dict of Ray Tune domains or have a `param_space`, "
                            f"but got {space!r} ({type(space).__name__}).")
        self._identity: Callable[[dict[str, Any]], Hashable] | None = None
        if isinstance(space, SpaceLike) and not isinstance(space, Mapping):
            self._identity = getattr(space, "identity", None)
            cost = cost if cost is not None else getattr(space, "cost", None)
            bins = bins if bins is not None else getattr(space, "bins", None)
        self.budget = CostBudget(cost, min_cost=min_cost, max_cost=max_cost, bins=bins,
                                 keep_bin=keep_bin)
        super().__init__(metric=metric, mode=mode)  # type: ignore[arg-type]
        self.population_size = population_size
        self.sample_size: int = sample_size  # type: ignore[assignment]
        self.max_retries = max_retries
        self._points = check_points(points_to_evaluate)
        self._seed = seed
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._space: SearchSpace | None = None
        self._design: list[tuple[list[Gene | None], bool]] = []  # (genes, given by the user)
        self._saved_space: dict[str, Any] | None = None  # from set_state, before a space
        self._reset()
        if space is not None:
            self._set_space(space)

    # -- Ray's Searcher interface -------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        if self._space is not None:
            return False
        metric_, mode_ = tune_objectives(self._metric, self._mode, metric, mode)
        self._set_space(config)
        self._metric, self._mode = metric_, mode_
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        space = check_ready(self, self._space)
        if trial_id in self._pending:  # asked again: the same answer
            return space.decode(self._pending[trial_id])
        genome = self._next_genome()
        self._pending[trial_id] = genome
        self._seen.add(self._identity_of(genome))
        self._suggested += 1
        return space.decode(genome)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._pending:
            log_ignored_result(self, trial_id, trial_id in self._finished)
            return
        genome = self._pending.pop(trial_id)
        values = None if error else self._objective_values(result)
        self._record(Record(trial_id, genome, values, error))

    def add_evaluated_point(self, parameters: dict[str, Any], value: Any, error: bool = False,
                            pruned: bool = False, intermediate_values: list[float] | None = None) -> None:
        """Record an evaluation made elsewhere (a warm start): it joins the population, counts
        toward the initial design (which it replaces) and is not suggested again.

        ``parameters``: a nested config of this space; ``value``: the metric's value, or a mapping
        of metric -> value (for several objectives).
        """
        space = self._searched
        genome = space.encode_whole(parameters, "add_evaluated_point")
        result = value if isinstance(value, Mapping) else {self._metrics[0]: value}
        values = None if error else self._objective_values(result)
        if self._design_position == 0:  # earlier results stand in for the initial design
            self._design = [entry for entry in self._design if entry[1]]
        self._seen.add(self._identity_of(genome))
        self._suggested += 1
        self._record(Record(f"warm-start-{len(self._history)}", genome, values, error))

    def get_state(self) -> dict[str, Any]:
        """Plain JSON-able data; ``set_state`` on a fresh searcher continues exactly."""
        return {
            "version": STATE_VERSION,
            "searcher": type(self).__name__,
            "space": self._space.describe() if self._space else self._saved_space,
            "metric": self._metric,
            "mode": self._mode,
            "rng": self._rng.bit_generator.state,
            "suggested": self._suggested,
            "design_position": self._design_position,
            "skipped_points": self._skipped_points,
            "bin_turn": self._bin_turn,
            "empty_bins": sorted(self._empty_bins),
            "pending": [[trial_id, list(genome)] for trial_id, genome in self._pending.items()],
            "history": [{"trial_id": r.trial_id, "genome": list(r.genome), "values": r.values,
                         "error": r.error} for r in self._history],
            "population": self._population.members if self._population else [],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{type(self).__name__} state version {state.get('version')!r} is not "
                             f"supported (expected {STATE_VERSION}).")
        if self._space is not None:
            _check_same_space(self._space.describe(), state["space"])
        elif state["space"] is not None:
            # Tuner.restore without a param_space: rebuild the space from the state if it can.
            rebuilt = SearchSpace.from_description(state["space"])
            if rebuilt is None:
                self._saved_space = state["space"]
            else:
                self._install_space(rebuilt)
        for name, saved in (("metric", state["metric"]), ("mode", state["mode"])):
            current = getattr(self, f"_{name}")
            if current is not None and saved is not None and current != saved:
                raise ValueError(f"The saved state optimises {name}={saved!r}, but this searcher "
                                 f"has {name}={current!r}. Fix: create it with {name}={saved!r}.")
        self._metric = self._metric or state["metric"]
        self._mode = self._mode or state["mode"]
        self._reset()
        self._rng.bit_generator.state = state["rng"]
        self._suggested = state["suggested"]
        self._design_position = state["design_position"]
        self._skipped_points = state["skipped_points"]
        self._bin_turn = state["bin_turn"]
        self._empty_bins = set(state["empty_bins"])
        self._pending = {trial_id: list(genome) for trial_id, genome in state["pending"]}
        for item in state["history"]:
            self._history.append(Record(item["trial_id"], list(item["genome"]), item["values"],
                                        item["error"]))
            self._finished[item["trial_id"]] = len(self._history) - 1
        self._seen = {self._identity_of(g) for g in
                      [*self._pending.values(), *(r.genome for r in self._history)]}
        if state["population"]:
            population = self._ensure_population()
            for index in state["population"]:
                population.add(index, self._losses(self._history[index].values or []))

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON, atomically (temp file, then rename)."""
        write_state(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(read_state(checkpoint_path))

    # -- results ------------------------------------------------------------------------------

    @property
    def skipped_points(self) -> int:
        """Initial-design points left out because their cost was outside the budget."""
        return self._skipped_points

    @property
    def failed_trials(self) -> list[str]:
        """Finished trials with an error, a missing metric or a NaN/infinite value."""
        return [r.trial_id for r in self._history if r.values is None]

    def pareto_front(self) -> list[tuple[dict[str, Any], dict[str, float]]]:
        """The non-dominated finished configs with their metrics (the best ones for one metric)."""
        valid = [r for r in self._history if r.values is not None]
        if not valid or self._space is None:
            return []
        ranks = non_dominated_sort([self._losses(r.values or []) for r in valid])
        return [(self._space.decode(r.genome), dict(zip(self._metrics, r.values or [], strict=True)))
                for r, rank in zip(valid, ranks, strict=True) if rank == 0]

    def best(self) -> tuple[dict[str, Any], dict[str, float]] | None:
        """The best finished config and its metric (one objective); ``None`` before any."""
        if isinstance(self._metric, list):
            raise ValueError("`best()` needs a single metric; with several use `pareto_front()`.")
        front = self.pareto_front()
        return front[0] if front else None

    # -- internals ----------------------------------------------------------------------------

    def _reset(self) -> None:
        self._suggested = 0
        self._design_position = 0
        self._skipped_points = 0
        self._bin_turn = 0
        self._empty_bins = set()
        self._pending = {}
        self._history = []
        self._finished = {}
        self._seen = set()
        self._costs: dict[tuple[Gene, ...], Any] = {}
        self._identities: dict[tuple[Gene, ...], Any] = {}
        self._population = None

    def _set_space(self, space: Mapping[str, Any] | SpaceLike) -> None:
        parsed = as_search_space(space)
        if self._saved_space is not None:
            _check_same_space(parsed.describe(), self._saved_space)
        self._install_space(parsed)

    def _install_space(self, space: SearchSpace) -> None:
        points = [(space.encode_point(p, f"points_to_evaluate[{i}]"), True)
                  for i, p in enumerate(self._points)]
        corners: list[tuple[list[Gene | None], bool]] = [(list(c), False) for c in space.corners()]
        self._space, self._design = space, points + corners

    @property
    def _metrics(self) -> list[str]:
        metric = self._metric
        return list(metric) if isinstance(metric, list) else [metric]  # type: ignore[list-item]

    def _losses(self, values: Sequence[float]) -> list[float]:
        modes = self._mode if isinstance(self._mode, list) else [self._mode]
        return [v if m == "min" else -v for v, m in zip(values, modes, strict=True)]

    def _objective_values(self, result: Mapping[str, Any] | None) -> list[float] | None:
        return objective_values(self._metrics, result)

    def _ensure_population(self) -> AgingPopulation | ParetoPopulation:
        if self._population is None:
            kind = ParetoPopulation if isinstance(self._metric, list) else AgingPopulation
            self._population = kind(self.population_size)
        return self._population

    def _record(self, record: Record) -> None:
        self._history.append(record)
        index = len(self._history) - 1
        self._finished[record.trial_id] = index
        if record.values is not None:
            self._ensure_population().add(index, self._losses(record.values))

    @property
    def _searched(self) -> SearchSpace:
        """The space being searched (``suggest`` refuses to run before there is one)."""
        if self._space is None:
            raise RuntimeError(UNDEFINED_SEARCH_SPACE.format(cls=type(self).__name__, space="space"))
        return self._space

    @property
    def _parents(self) -> AgingPopulation | ParetoPopulation:
        """The population children are bred from (there is one once a trial finished)."""
        if self._population is None:
            raise RuntimeError(f"{type(self).__name__} has no finished trial to breed from yet.")
        return self._population

    def _next_genome(self) -> Genome:
        point = self._next_design_point()
        if point is not None:
            return point
        if self._suggested < self.population_size or not self._population:
            return self._random_genome()
        return self._child()

    def _next_design_point(self) -> Genome | None:
        while self._design_position < len(self._design):
            genes, given = self._design[self._design_position]
            self._design_position += 1
            genome = self._searched.fill(genes, self._rng)
            if not given and self._identity_of(genome) in self._seen:
                continue
            cost = self._cost_of(genome)
            if not self.budget.allows(cost):
                self._skipped_points += 1
                kind = "a points_to_evaluate" if given else "an initial-design"
                logger.warning("%s skips %s config that costs %s, outside [%s, %s]: %s",
                               type(self).__name__, kind, cost, self.budget.min_cost,
                               self.budget.max_cost, self._searched.decode(genome))
                continue
            return genome
        return None

    def _random_genome(self) -> Genome:
        while True:
            target = self._target_bin()
            repeat: Genome | None = None
            costs: list[float] = []
            for _ in range(self.max_retries):
                genome = self._searched.sample(self._rng)
                cost = self._cost_of(genome)
                if cost is not None:
                    costs.append(cost)
                if not self.budget.allows(cost):
                    continue
                if target is not None and self.budget.bin_of(cost) != target:
                    continue
                if self._identity_of(genome) in self._seen:
                    repeat = repeat or genome
                    continue
                self._advance_bin(target)
                return genome
            if repeat is not None:  # the space (or bin) is exhausted: repeat a config
                self._advance_bin(target)
                return repeat
            if target is None:
                raise RuntimeError(f"{type(self).__name__}: "
                                   f"{self.budget.excluded(costs, self.max_retries)}")
            logger.warning("%s found no config in cost bin [%s, %s) within the budget after %d "
                           "draws; the bin is left out from now on.", type(self).__name__,
                           self.budget.edges[target], self.budget.edges[target + 1],
                           self.max_retries)
            self._empty_bins.add(target)

    def _child(self) -> Genome:
        parent = self._history[self._parents.select_parent(self._rng, self.sample_size)].genome
        parent_bin = self.budget.bin_of(self._cost_of(parent)) if self.budget.keep_bin else None
        repeat: Genome | None = None
        for _ in range(min(self.max_retries, CHILD_TRIES)):
            child = self._searched.mutate(parent, self._rng)
            seen = self._identity_of(child) in self._seen
            if seen and repeat is not None:  # late in a search most neighbours were tried
                continue
            cost = self._cost_of(child)
            if not self.budget.allows(cost):
                continue
            if parent_bin is not None and self.budget.bin_of(cost) != parent_bin:
                continue
            if seen:
                repeat = child
                continue
            return child
        # No new neighbour within the budget (and bin): a new random config there, else a repeat.
        fresh = self._fresh_random(parent_bin)
        if fresh is not None:
            return fresh
        return repeat if repeat is not None else self._random_genome()

    def _fresh_random(self, within_bin: int | None) -> Genome | None:
        """An unseen random config within the budget (and the bin), or None after the retries."""
        for _ in range(self.max_retries):
            genome = self._searched.sample(self._rng)
            cost = self._cost_of(genome)
            if not self.budget.allows(cost):
                continue
            if within_bin is not None and self.budget.bin_of(cost) != within_bin:
                continue
            if self._identity_of(genome) not in self._seen:
                return genome
        return None

    def _identity_of(self, genome: Genome) -> Hashable:
        """What makes two configs the same to evaluate: the space's ``identity(config)`` when it
        has one (e.g. the sub-network a config describes), else the genome; memoised."""
        identity = self._identity
        if identity is None:
            return SearchSpace.key(genome)
        return _memoised(self._identities, genome, lambda: ("identity", identity(self._decode(genome))))

    def _cost_of(self, genome: Genome) -> float | None:
        """The budget's cost of a genome, memoised (costs are pure functions of the config)."""
        if self.budget.cost is None:
            return None
        return _memoised(self._costs, genome, lambda: self.budget.cost_of(self._decode(genome)))

    def _decode(self, genome: Genome) -> dict[str, Any]:
        return self._searched.decode(genome)

    def _target_bin(self) -> int | None:
        """The next cost bin in turn that still has configs; None without bins."""
        count = self.budget.num_bins
        for step in range(count):
            candidate = (self._bin_turn + step) % count
            if candidate not in self._empty_bins:
                return candidate
        return None

    def _advance_bin(self, target: int | None) -> None:
        if target is not None:
            self._bin_turn = (target + 1) % self.budget.num_bins


def _memoised(table: dict[tuple[Gene, ...], Any], genome: Genome, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per genome; the table is cleared past ``MEMO_LIMIT`` entries."""
    key = SearchSpace.key(genome)
    if key not in table:
        if len(table) > MEMO_LIMIT:
            table.clear()
        table[key] = compute()
    return table[key]


def _check_same_space(current: dict[str, Any], saved: Any) -> None:
    if saved is not None and json.dumps(current["axes"]) != json.dumps(saved["axes"]):
        raise ValueError("The saved searcher state belongs to another search space: saved axes "
                         f"{saved['axes']}, current {current['axes']}. Fix: restore with the same "
                         "space.")
