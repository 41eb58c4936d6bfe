"""YAHPO Gym surrogate benchmarks (Pfisterer et al., 2022) as a :class:`Blackbox`, through yahpo-gym.

Everything scenario-specific comes from yahpo's own scenario configuration and the data folder's
``config_space.json``, so any scenario with a data folder works, not only ``lcbench``:

- instances: the choices of the scenario's instance parameter (``instance_names``; e.g.
  ``OpenML_task_id``), or its fixed ``instances`` list when it has none (``nb301``);
- fidelity: the first of ``fidelity_params`` is the budget; any others (e.g. ``repl`` of ``rbv2_*``)
  are held at their maximum. Only an epoch budget can be continued; any other (e.g. ``trainsize``)
  restarts (``fidelity.continuable`` is False);
- space: every other hyperparameter as Ray Tune domains (see
  :mod:`efficient_search.blackbox.config_space` for the conversion and how conditional ones are
  handled);
- outputs: ``y_names``; the default metric is the first that is neither the runtime nor the memory
  output, its mode from ``y_minimize``; ``cost/seconds`` is the runtime output (``runtime_name``;
  ``time`` in ``lcbench``: seconds of the whole run up to that epoch) clipped at 0.

Data: read in place from ``data_path`` (one sub-folder per scenario); by default the folder named by
``$EFFICIENT_SEARCH_YAHPO_DATA``, else ``../shared/data/yahpo`` beside the repository.

Example::

    bench = YahpoBenchmark("lcbench")
    config = {name: domain.sample() for name, domain in bench.space().items()}
    bench.evaluate(config, bench.instances[0], 52)["val_accuracy"]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ConfigSpace import OrdinalHyperparameter, UniformFloatHyperparameter, UniformIntegerHyperparameter

from efficient_search.blackbox import _yahpo_compat as compat
from efficient_search.blackbox.base import (
    COST_KEY,
    Blackbox,
    Fidelity,
    check_config,
    check_instance,
    check_lengths,
    check_mode,
    is_continuable,
)
from efficient_search.blackbox.config_space import active_values, ray_space

DATA_ENV = "EFFICIENT_SEARCH_YAHPO_DATA"
#: ``<repository>/../shared/data/yahpo``: where the project keeps the shipped surrogate data.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "yahpo"
DATA_FIX = (f"pass data_path=<folder with one sub-folder per scenario> or set ${DATA_ENV}; YAHPO data "
            f"is the slds-lmu/yahpo_data repository")


def default_data_path() -> Path:
    """``$EFFICIENT_SEARCH_YAHPO_DATA`` if set, else ``../shared/data/yahpo`` if it exists."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    raise ValueError(f"no YAHPO data folder: ${DATA_ENV} is unset and {SHARED_DATA} does not exist. Fix: "
                     f"{DATA_FIX}.")


def _maximum(hp: Any) -> Any:
    if isinstance(hp, (UniformFloatHyperparameter, UniformIntegerHyperparameter)):
        return hp.upper
    if isinstance(hp, OrdinalHyperparameter):
        return hp.sequence[-1]
    raise TypeError(f"fidelity parameter {hp.name!r} is a {type(hp).__name__}; only numeric or ordinal "
                    f"fidelities have a maximum.")


class YahpoBenchmark(Blackbox):
    """One YAHPO Gym scenario; see the module docstring.

    ``metric`` picks the default objective among the outputs (its mode comes from the scenario).
    """

    def __init__(self, scenario: str, *, data_path: str | os.PathLike[str] | None = None,
                 metric: str | None = None):
        self.scenario = str(scenario)
        self.settings = compat.scenario_settings(self.scenario)
        self.data_path = Path(data_path) if data_path is not None else default_data_path()
        folder = self.data_path / self.scenario
        if not folder.is_dir():
            raise ValueError(f"YAHPO scenario folder {folder} does not exist. Fix: {DATA_FIX}.")
        runtime_name = self.settings.get("runtime_name")
        if not runtime_name:
            raise ValueError(f"YAHPO scenario {self.scenario!r} records no runtime, so `cost/seconds` cannot "
                             f"be simulated. Fix: use a scenario with a runtime output.")
        #: The output that holds the simulated seconds (``cost/seconds``).
        self.runtime_name: str = str(runtime_name)
        self._bench = compat.open_benchmark(self.scenario, self.data_path)
        self.config_space = self._bench.config_space
        self.instance_param: str | None = self.settings.get("instance_names") or None
        fidelity_params = list(self.settings.get("fidelity_params") or [])
        if not fidelity_params:
            raise ValueError(f"YAHPO scenario {self.scenario!r} has no fidelity parameter.")
        self.fidelity_params = fidelity_params
        budget = self.config_space[fidelity_params[0]]
        if not isinstance(budget, (UniformFloatHyperparameter, UniformIntegerHyperparameter)):
            raise TypeError(f"the budget {budget.name!r} of {self.scenario!r} must be a uniform float or "
                            f"integer, but is a {type(budget).__name__}.")
        self._fidelity = Fidelity(budget.name, budget.lower, budget.upper,
                                  continuable=is_continuable(budget.name),
                                  integer=isinstance(budget, UniformIntegerHyperparameter))
        #: The other fidelity parameters, held at their maximum.
        self.held: dict[str, Any] = {n: _maximum(self.config_space[n]) for n in fidelity_params[1:]}
        self._not_searched = {*fidelity_params, *([self.instance_param] if self.instance_param else [])}
        self._searched = [n for n in self.config_space if n not in self._not_searched]
        self._instances = self._read_instances()
        y_names = [str(y) for y in self.settings["y_names"]]
        minimize = list(self.settings.get("y_minimize") or [False] * len(y_names))
        self.modes = {y: "min" if low else "max" for y, low in zip(y_names, minimize, strict=True)}
        costs: set[str | None] = {self.runtime_name, self.settings.get("memory_name")}
        self._metric = metric if metric is not None else next(y for y in y_names if y not in costs)
        if self._metric not in self.modes:
            raise ValueError(f"`metric` {metric!r} is not an output of {self.scenario!r}. Known: {y_names}.")
        check_mode(self.modes[self._metric])

    def _read_instances(self) -> dict[str, Any]:
        """``{name: the instance parameter's value}`` (the name itself where there is no parameter)."""
        if self.instance_param is None:
            return {str(i): i for i in self.settings.get("instances") or []}
        return {str(c): c for c in self.config_space[self.instance_param].choices}

    # -- Blackbox ------------------------------------------------------------------------
    @property
    def instances(self) -> list[str]:
        return list(self._instances)

    def space(self) -> dict[str, Any]:
        return ray_space(self.config_space, exclude=self._not_searched)

    @property
    def fidelity(self) -> Fidelity:
        return self._fidelity

    @property
    def metric_names(self) -> list[str]:
        return list(self.modes)

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def mode(self) -> str:
        return self.modes[self._metric]

    @property
    def citation(self) -> list[str]:
        """What to cite when publishing results on this scenario."""
        return list(self.settings.get("citation") or [])

    def evaluate(self, config: Mapping[str, Any], instance: str, fidelity: float) -> dict[str, Any]:
        """The surrogate's outputs for ``config`` on ``instance`` at ``fidelity``.

        Hyperparameters inactive given the others are dropped; keys outside :meth:`space` are ignored.
        """
        instance = check_instance(instance, self._instances)
        value = self._fidelity.check(fidelity)
        return self._outputs(compat.evaluate(self._bench, self._inputs(config, instance, value)), value)

    def evaluate_many(self, configs: Sequence[Mapping[str, Any]], instance: str,
                      fidelities: Sequence[float]) -> list[dict[str, Any]]:
        """:meth:`evaluate` for each (config, fidelity) pair, in batched surrogate calls (~20x faster
        per evaluation). Batched float32 inference rounds differently: outputs match :meth:`evaluate`
        to about 1e-5 relative (2e-4 at worst measured on lcbench), not bit for bit."""
        check_lengths(configs, fidelities)
        instance = check_instance(instance, self._instances)
        values = [self._fidelity.check(f) for f in fidelities]
        checked: dict[int, dict[str, Any]] = {}  # a config repeated over a curve is checked once
        rows = []
        for config, value in zip(configs, values, strict=True):
            if id(config) not in checked:
                checked[id(config)] = self._inputs(config, instance, value)
            rows.append({**checked[id(config)], self._fidelity.name: value})
        outs = compat.evaluate_many(self._bench, rows)
        return [self._outputs(out, value) for out, value in zip(outs, values, strict=True)]

    def _inputs(self, config: Mapping[str, Any], instance: str, value: float) -> dict[str, Any]:
        """The full, checked surrogate input for ``config`` at fidelity ``value`` (instance checked)."""
        unconditional = set(self.config_space.unconditional_hyperparameters)
        check_config(config, [n for n in self._searched if n in unconditional])
        values = {name: config[name] for name in self._searched if name in config}
        values.update(self.held)
        values[self._fidelity.name] = value
        if self.instance_param is not None:
            values[self.instance_param] = self._instances[instance]
        return active_values(self.config_space, values)

    def _outputs(self, out: dict[str, float], value: float) -> dict[str, Any]:
        out[COST_KEY] = max(out[self.runtime_name], 0.0)
        out[self._fidelity.key] = value
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its arguments (the ONNX session cannot be pickled): Ray ships it to workers."""
        reopen = functools.partial(YahpoBenchmark, self.scenario, data_path=self.data_path,
                                   metric=self._metric)
        return (reopen, ())

    def __repr__(self) -> str:
        return (f"YahpoBenchmark({self.scenario!r}, {len(self._instances)} instances, fidelity "
                f"{self._fidelity.name} [{self._fidelity.min}, {self._fidelity.max}], metric "
                f"{self._metric!r} ({self.mode}))")
