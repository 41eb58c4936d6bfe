"""The one place that touches yahpo-gym 1.0.2's and ConfigSpace's internals (tested in
tests/test_blackbox.py).

yahpo-gym 1.0.2 pins ``configspace<=0.6.1`` and ``numpy<2``; we install it with ``--no-deps`` beside
ConfigSpace 1.x and onnxruntime, where it gives identical outputs (the shipped reference evaluations
prove it) once these three things are handled:

- ``BenchmarkSet`` calls ``ConfigurationSpace._sort_hyperparameters()`` before every evaluation.
  ConfigSpace 1.x removed that method and already keeps hyperparameters in the sorted order yahpo
  expects, so a no-op stands in; it is installed only where the method is missing.
- yahpo reads its data folder from a settings file (``~/.config/yahpo_gym``, raising if absent) when a
  scenario is built. :func:`open_benchmark` sets yahpo's in-memory settings to the folder we are given
  only while the ``BenchmarkSet`` is built (it keeps the path), so no settings file is read or written.
- yahpo registers ``lcbench``, ``nb301``, ``rbv2_*`` and ``iaml_*`` on import but not ``fcnet`` and
  ``taskset``; importing their modules registers them too.

The 0.x calls yahpo makes raise DeprecationWarnings under ConfigSpace 1.x; they are silenced around
yahpo calls, as is the citation yahpo prints (``YahpoBenchmark.citation`` holds it).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

INSTALL_FIX = ("pip install onnxruntime 'ConfigSpace>=1' && pip install --no-deps yahpo-gym==1.0.2 "
               "(`make install` does this)")

try:
    import ConfigSpace
    import yahpo_gym
    from yahpo_gym.configuration import config_dict
    from yahpo_gym.local_config import local_config
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(f"YAHPO Gym benchmarks need yahpo-gym, onnxruntime and ConfigSpace>=1 ({error}). "
                      f"Fix: {INSTALL_FIX}.") from error

for _module in ("fcnet", "taskset"):
    importlib.import_module(f"yahpo_gym.benchmarks.{_module}")

_settings_lock = threading.Lock()


def install_configspace_stand_in() -> bool:
    """Give ``ConfigurationSpace`` the no-op ``_sort_hyperparameters`` yahpo calls; True if added now."""
    if hasattr(ConfigSpace.ConfigurationSpace, "_sort_hyperparameters"):
        return False

    def _sort_hyperparameters(self: Any) -> None:
        """No-op: ConfigSpace 1.x keeps hyperparameters sorted already (stand-in for yahpo-gym)."""

    ConfigSpace.ConfigurationSpace._sort_hyperparameters = _sort_hyperparameters  # type: ignore[attr-defined]
    return True


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence ConfigSpace's deprecation warnings about yahpo's 0.x calls, and yahpo's prints."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="The field 'default' should be 'default_value'")
        yield


def scenarios() -> list[str]:
    """Every scenario yahpo-gym has a configuration for."""
    return sorted(config_dict.configs)


def scenario_settings(scenario: str) -> dict[str, Any]:
    """yahpo's own configuration of ``scenario`` (``fidelity_params``, ``instance_names``, ``y_names``,
    ``y_minimize``, ``runtime_name``, ...), as a copy."""
    if scenario not in config_dict.configs:
        raise ValueError(f"`scenario` {scenario!r} is not a YAHPO Gym scenario. Known: "
                         f"{', '.join(scenarios())}.")
    return dict(config_dict.configs[scenario])


def open_benchmark(scenario: str, data_path: str | os.PathLike[str]) -> Any:
    """yahpo's ``BenchmarkSet`` for ``scenario`` reading the data folder ``data_path`` (one
    sub-folder per scenario), single-threaded ONNX inference, inputs checked by us, not by yahpo."""
    install_configspace_stand_in()
    scenario_settings(scenario)
    with _settings_lock, quiet():
        saved = local_config._config
        local_config._config = {"data_path": os.fspath(data_path)}
        try:
            return yahpo_gym.BenchmarkSet(scenario, active_session=True, multithread=False, check=False)
        finally:
            local_config._config = saved


def evaluate(bench: Any, values: dict[str, Any]) -> dict[str, float]:
    """One surrogate prediction for the full, already checked ``values``."""
    with quiet():
        out = bench.objective_function(values, multithread=False)[0]
    return {str(k): float(v) for k, v in out.items()}


#: Rows per surrogate call: yahpo stacks a batch's inputs row by row (quadratic in its size).
BATCH_ROWS = 512


def evaluate_many(bench: Any, rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Surrogate predictions for many full, already checked inputs, in batches of ``BATCH_ROWS``."""
    out: list[dict[str, float]] = []
    with quiet():
        for start in range(0, len(rows), BATCH_ROWS):
            batch = bench.objective_function(rows[start:start + BATCH_ROWS], multithread=False)
            out.extend({str(k): float(v) for k, v in result.items()} for result in batch)
    return out
