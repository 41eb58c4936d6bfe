"""The searcher + scheduler pairs `hpo_suite.py` compares, each built fresh per (instance, seed) on the
same real space (``source.space()``), objective, seed and budget-step counter (``training_iteration``).

Ours (efficient_search objects):

- ``quicktune+freeze_thaw``: QuickTuneSearcher with the surrogate meta-trained on the scenario's other
  instances + FreezeThawScheduler (one budget step per pause);
- ``quicktune_no_meta+freeze_thaw`` (ablation): the same pair with no meta-training: the searcher's
  ``surrogate=None`` mode, the deep-kernel surrogate fitted on the run's own curves (smaller sizes,
  ``ONLINE_SETTINGS``), after ``initial_random`` random configs;
- ``evolution+asha``: EvolutionarySearcher (regularised evolution) + RestorableASHA;
- ``random+sh``: OptunaSearcher (RandomSampler) + LayerFreezingScheduler's successive-halving rungs
  over the blackbox's fidelity (the rungs' layer counts are labels a blackbox ignores; ``continue``
  promotion on a continuable fidelity, ``restart`` otherwise). Left out when the fidelity has fewer
  than ``ETA`` steps.

Peers (the libraries' own objects, default settings):

- ``random``: Ray's OptunaSearch with Optuna's RandomSampler + FIFO (every trial to the maximum);
- ``random+asha``: the same + Ray's AsyncHyperBandScheduler;
- ``bohb``: Ray's TuneBOHB + HyperBandForBOHB (needs ``hpbandster`` and ``ConfigSpace``);
- ``tpe+asha``: Ray's OptunaSearch with Optuna's TPESampler + Ray's AsyncHyperBandScheduler;
- ``tpe+hyperband``: the same TPE + Ray's HyperBandScheduler (synchronous brackets; Ray's opens with
  its full-budget bracket);
- ``optuna_tpe+pruner``, ``synetune_asha``, ``synetune_bohb``: other libraries through their own APIs
  (see ``_hpo_native.py``; syne-tune's need ``syne-tune`` and ``statsmodels``).

All schedulers use ``reduction_factor=ETA``, ``grace_period=1`` (ASHA) and ``max_t`` = the fidelity's
number of budget steps.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from _hpo_native import OptunaPruned, synetune, synetune_available  # benchmarks/ is on sys.path
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from efficient_search.schedulers import FreezeThawScheduler, LayerFreezingScheduler, RestorableASHA
from efficient_search.searchers import EvolutionarySearcher, OptunaSearcher, QuickTuneSearcher
from efficient_search.testing.replay import ReplayOutcome, ReplaySimulation
from efficient_search.testing.replay_blackbox import BlackboxReplay
from efficient_search.testing.replay_cluster import ClusterModel
from efficient_search.testing.replay_stepwise import StepwiseReplay

OURS = "quicktune+freeze_thaw"
ABLATION = "quicktune_no_meta+freeze_thaw"
ETA = 3
MAX_RUNGS = 4
TIME_ATTR = "training_iteration"
Pair = tuple[Searcher, TrialScheduler]


@dataclass(frozen=True)
class Prior:
    """What ours may know before the search by design: the meta-trained surrogate (never trained on the
    instance being tuned) and the instance's meta-features, if the blackbox has any; and the options
    a run gives both Quick-Tune pairs (``--searcher-options``, ``--scheduler-options``)."""

    surrogate: Any = None
    meta_features: dict[str, float] | None = None
    searcher_options: Mapping[str, Any] = field(default_factory=dict)
    scheduler_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """How to build one method: a Ray Tune pair, or (``native``) another library's own loop (a
    ``StepwiseMethod``); ``ours`` marks efficient_search's own methods."""

    name: str
    build: Callable[[BlackboxReplay, int, Prior], Any]
    ours: bool
    native: bool = False

    def replay(self, source: BlackboxReplay, seed: int, prior: Prior, budget_s: float,
               cluster: ClusterModel | None = None, *, max_trials: int = 10_000, latency_after: int = 0,
               until: Callable[[ReplayOutcome], bool] | None = None) -> ReplayOutcome:
        """One search of ``budget_s`` simulated seconds on ``source`` (one worker unless ``cluster``;
        call latencies kept once ``latency_after`` trials have started; ``until`` may end it early,
        see ``ReplaySimulation``). Python's and numpy's global
        generators are seeded with ``seed`` first: some peers draw from them (hpbandster's and
        syne-tune's samplers), and a rerun must give the same figures."""
        random.seed(seed)
        np.random.seed(seed)
        sim: ReplaySimulation | StepwiseReplay
        if self.native:
            sim = StepwiseReplay(source, self.build(source, seed, prior), budget_s=budget_s,
                                 max_trials=max_trials, cluster=cluster, until=until)
        else:
            searcher, scheduler = self.build(source, seed, prior)
            sim = ReplaySimulation(source, searcher, scheduler, budget_s=budget_s, max_trials=max_trials,
                                   cluster=cluster, until=until)
        sim.outcome.latency_after = latency_after
        return sim.run()


def _objective(source: BlackboxReplay) -> dict[str, Any]:
    return {"metric": source.metric, "mode": source.mode}


def _quicktune(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    searcher = QuickTuneSearcher(source.space(), **_objective(source), seed=seed, surrogate=prior.surrogate,
                                 meta_features=prior.meta_features, time_attr=TIME_ATTR,
                                 **prior.searcher_options)
    return searcher, FreezeThawScheduler(searcher=searcher, max_t=source.max_steps, time_attr=TIME_ATTR,
                                         **prior.scheduler_options)


def quicktune(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    return _quicktune(source, seed, prior)


def quicktune_no_meta(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    return _quicktune(source, seed, Prior(searcher_options=prior.searcher_options,
                                          scheduler_options=prior.scheduler_options))  # no meta-data


def _ray_asha(source: BlackboxReplay) -> TrialScheduler:
    from ray.tune.schedulers import AsyncHyperBandScheduler

    return AsyncHyperBandScheduler(time_attr=TIME_ATTR, max_t=source.max_steps, grace_period=1,
                                   reduction_factor=ETA, **_objective(source))


def evolution_asha(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    searcher = EvolutionarySearcher(source.space(), **_objective(source), seed=seed)
    return searcher, RestorableASHA(seed=seed, time_attr=TIME_ATTR, max_t=source.max_steps, grace_period=1,
                                    reduction_factor=ETA, **_objective(source))


def rungs(steps: int) -> int:
    """Successive-halving rungs that fit ``steps`` budget steps with reduction factor ``ETA``."""
    return min(MAX_RUNGS, 1 + int(math.floor(math.log(steps, ETA) + 1e-9))) if steps >= 1 else 1


def random_sh(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    count = rungs(source.max_steps)
    top = ETA ** (count - 1)
    scheduler = LayerFreezingScheduler(
        max_trainable_layers=top, min_trainable_layers=1, reduction_factor=ETA, epochs=source.max_steps,
        min_epochs=max(1, math.ceil(source.max_steps / top)),
        promotion="continue" if source.continuable else "restart", time_attr=TIME_ATTR, **_objective(source))
    return OptunaSearcher(source.space(), **_objective(source), sampler="random", seed=seed), scheduler


def _ray_optuna(source: BlackboxReplay, seed: int, sampler: str) -> Searcher:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    made = (optuna.samplers.TPESampler(seed=seed) if sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=seed))
    return OptunaSearch(OptunaSearch.convert_search_space(source.space()), **_objective(source),
                        sampler=made)


def random_fifo(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    return _ray_optuna(source, seed, "random"), FIFOScheduler()


def random_asha(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    return _ray_optuna(source, seed, "random"), _ray_asha(source)


def bohb(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    from ray.tune.schedulers import HyperBandForBOHB
    from ray.tune.search.bohb import TuneBOHB

    searcher = TuneBOHB(TuneBOHB.convert_search_space(source.space()), **_objective(source), seed=seed)
    return searcher, HyperBandForBOHB(time_attr=TIME_ATTR, max_t=source.max_steps, reduction_factor=ETA,
                                      **_objective(source))


def tpe_asha(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    return _ray_optuna(source, seed, "tpe"), _ray_asha(source)


def tpe_hyperband(source: BlackboxReplay, seed: int, prior: Prior) -> Pair:
    from ray.tune.schedulers import HyperBandScheduler

    return _ray_optuna(source, seed, "tpe"), HyperBandScheduler(
        time_attr=TIME_ATTR, max_t=source.max_steps, reduction_factor=ETA, **_objective(source))


def bohb_available() -> bool:
    try:
        import ConfigSpace  # noqa: F401
        import hpbandster  # noqa: F401
    except ImportError:
        return False
    return True


def all_methods(steps: int) -> list[Method]:
    """Every method that can run on a fidelity of ``steps`` budget steps, with what it needs."""
    found = [Method(OURS, quicktune, True), Method(ABLATION, quicktune_no_meta, True),
             Method("evolution+asha", evolution_asha, True)]
    if rungs(steps) >= 2:
        found.append(Method("random+sh", random_sh, True))
    found += [Method("random", random_fifo, False), Method("random+asha", random_asha, False)]
    if bohb_available():
        found.append(Method("bohb", bohb, False))
    found += [Method("tpe+asha", tpe_asha, False), Method("tpe+hyperband", tpe_hyperband, False),
              Method("optuna_tpe+pruner", optuna_pruned, False, native=True)]
    if synetune_available():
        found += [Method(f"synetune_{kind}", functools.partial(_synetune, kind=kind), False, native=True)
                  for kind in ("asha", "bohb")]
    return found


def optuna_pruned(source: BlackboxReplay, seed: int, prior: Prior) -> Any:
    return OptunaPruned(source, seed)


def _synetune(source: BlackboxReplay, seed: int, prior: Prior, kind: str) -> Any:
    return synetune(source, seed, kind)


def pick_methods(text: str, steps: int) -> list[Method]:
    """The methods a comma-separated ``--methods`` names (all available when empty); ValueError unless
    they include ours and at least one peer."""
    available = {m.name: m for m in all_methods(steps)}
    wanted = [part.strip() for part in text.split(",") if part.strip()] or list(available)
    unknown = [m for m in wanted if m not in available]
    if unknown or OURS not in wanted or all(available[m].ours for m in wanted):
        raise ValueError(f"`--methods` must name {OURS!r} and at least one peer among the available methods "
                         f"{list(available)}, but got {wanted}. Fix: leave --methods out for all.")
    return [available[m] for m in wanted]


def parse_options(text: str, flag: str) -> dict[str, Any]:
    """A JSON object of keyword arguments given on the command line, e.g. ``{"alpha": 1.0}``."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"`{flag}` must be a JSON object, but got {text!r} ({error}). Fix: e.g. "
                         f"{flag} '{{\"alpha\": 1.0}}'.") from None
    if not isinstance(value, dict):
        raise ValueError(f"`{flag}` must be a JSON object of keyword arguments, but got {text!r}. Fix: e.g. "
                         f"{flag} '{{\"alpha\": 1.0}}'.")
    return value


def missing_peers() -> list[str]:
    """What to install for the peers left out on this machine."""
    missing = []
    if not bohb_available():
        missing.append("bohb: `pip install hpbandster` (Ray's BOHB pair)")
    if not synetune_available():
        missing.append("synetune_asha, synetune_bohb: `pip install --no-deps syne-tune` and "
                       "`pip install statsmodels sortedcontainers dill`")
    return missing
