"""Peers run through their own library's API, not through Ray Tune (driven by
``efficient_search.testing.replay_stepwise.StepwiseReplay``: one worker, trials stopped, never paused):

- ``optuna_tpe+pruner``: Optuna's ask/tell with ``TPESampler`` and ``HyperbandPruner`` (``min_resource=1``,
  ``max_resource`` = the fidelity's budget steps, ``reduction_factor=ETA``), the pairing Optuna's docs
  recommend; a pruned trial is told ``PRUNED``, as ``trial.report`` / ``should_prune`` code does;
- ``synetune_asha`` and ``synetune_bohb``: syne-tune's ``ASHA`` (random configs) and ``BOHB`` (its
  asynchronous BOHB: a KDE searcher over ASHA's stopping rungs), default settings, ``grace_period=1``,
  ``reduction_factor=ETA``; a stopped trial is removed (``on_trial_remove``) and a finished one
  completed, as syne-tune's own ``Tuner`` does; an out-of-domain proposal (a syne-tune 0.16 KDE bug on
  log-integer domains) is clipped into its domain and counted.

Each library samples the same space (``source.space()``, Ray Tune domains over the real
hyperparameters), converted to its own domains below.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from ray.tune.search import sample

from efficient_search.testing.replay_blackbox import BlackboxReplay

ETA = 3


def optuna_distributions(space: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune domains as Optuna distributions (upper bounds of integers made inclusive)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, domain in space.items():
        log = isinstance(domain.get_sampler(), sample.LogUniform)
        if isinstance(domain, sample.Categorical):
            out[name] = CategoricalDistribution(list(domain.categories))
        elif isinstance(domain, sample.Integer):
            out[name] = IntDistribution(int(domain.lower), int(domain.upper) - 1, log=log)
        elif isinstance(domain, sample.Float):
            out[name] = FloatDistribution(float(domain.lower), float(domain.upper), log=log)
        else:
            raise TypeError(f"space[{name!r}] is a {type(domain).__name__}: no Optuna distribution for it.")
    return out


def synetune_space(space: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune domains as syne-tune domains (syne-tune's integer upper bounds are inclusive)."""
    from syne_tune import config_space as st

    out: dict[str, Any] = {}
    for name, domain in space.items():
        log = isinstance(domain.get_sampler(), sample.LogUniform)
        if isinstance(domain, sample.Categorical):
            out[name] = st.choice(list(domain.categories))
        elif isinstance(domain, sample.Integer):
            make = st.lograndint if log else st.randint
            out[name] = make(int(domain.lower), int(domain.upper) - 1)
        elif isinstance(domain, sample.Float):
            out[name] = (st.loguniform if log else st.uniform)(float(domain.lower), float(domain.upper))
        else:
            raise TypeError(f"space[{name!r}] is a {type(domain).__name__}: no syne-tune domain for it.")
    return out


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class OptunaPruned:
    """Optuna's TPE with its HyperbandPruner, through ``study.ask`` / ``trial.report`` / ``study.tell``."""

    def __init__(self, source: BlackboxReplay, seed: int):
        import optuna

        self.metric = source.metric
        self.distributions = optuna_distributions(source.space())
        self.study = optuna.create_study(
            study_name=f"optuna-tpe-pruner-seed{seed}",  # the pruner's brackets hash it: fixed, reproducible
            direction="maximize" if source.mode == "max" else "minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=source.max_steps,
                                                  reduction_factor=ETA))

    def ask(self) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask(self.distributions)
        return trial, dict(trial.params)

    def report(self, trial: Any, step: int, result: dict[str, Any]) -> bool:
        value = float(result[self.metric])
        if not math.isfinite(value):
            return False
        trial.report(value, step)
        return not trial.should_prune()

    def end(self, trial: Any, result: dict[str, Any], completed: bool) -> None:
        from optuna.trial import TrialState

        value = float(result[self.metric])
        if completed and math.isfinite(value):
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=TrialState.PRUNED)


class SyneTuneLoop:
    """A syne-tune scheduler through the calls its ``Tuner`` makes with one worker.

    syne-tune 0.16's KDE searcher (its BOHB) can propose log-integer values outside their domain (e.g.
    ``max_units`` 53 for ``lograndint(64, 1024)``); such a value is clipped into the domain before it is
    evaluated, as a careful user's training script would, and counted in :attr:`clipped`."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self.count = 0
        self.clipped = 0

    def ask(self) -> tuple[Any, dict[str, Any]] | None:
        from syne_tune.backend.trial_status import Trial

        suggestion = self.scheduler.suggest()
        if suggestion is None or suggestion.config is None:
            return None
        trial = Trial(trial_id=self.count, config=dict(suggestion.config),
                      creation_time=datetime.datetime.now())
        self.count += 1
        self.scheduler.on_trial_add(trial)
        return trial, {k: self._inside(k, _plain(v)) for k, v in suggestion.config.items()}

    def _inside(self, name: str, value: Any) -> Any:
        domain = self.scheduler.config_space.get(name)
        lower, upper = getattr(domain, "lower", None), getattr(domain, "upper", None)
        if lower is None or upper is None or not isinstance(value, (int, float)) or lower <= value <= upper:
            return value
        self.clipped += 1
        return type(value)(min(max(value, lower), upper))

    def report(self, trial: Any, step: int, result: dict[str, Any]) -> bool:
        from syne_tune.optimizer.scheduler import SchedulerDecision

        return self.scheduler.on_trial_result(trial, dict(result)) == SchedulerDecision.CONTINUE

    def end(self, trial: Any, result: dict[str, Any], completed: bool) -> None:
        if completed:
            self.scheduler.on_trial_complete(trial, dict(result))
        else:
            self.scheduler.on_trial_remove(trial)


def synetune(source: BlackboxReplay, seed: int, kind: str) -> SyneTuneLoop:
    """syne-tune's ``ASHA`` (``kind="asha"``) or ``BOHB`` (``kind="bohb"``) on the source's space."""
    from syne_tune.optimizer.baselines import ASHA, BOHB

    make = {"asha": ASHA, "bohb": BOHB}[kind]
    return SyneTuneLoop(make(synetune_space(source.space()), metric=source.metric,
                             time_attr="training_iteration", max_t=source.max_steps,
                             do_minimize=source.mode == "min", random_seed=seed, grace_period=1,
                             reduction_factor=ETA))


def synetune_available() -> bool:
    try:
        import statsmodels  # noqa: F401  (BOHB's KDE)
        import syne_tune  # noqa: F401
    except ImportError:
        return False
    return True
