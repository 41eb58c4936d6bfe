"""A blackbox cut to a shorter horizon: the same outputs, with the fidelity's maximum lowered.

Searches on ``ShortHorizon(YahpoBenchmark("lcbench"), 10)`` see LCBench as if every run were 10
epochs long: a full run, the reference best and worst values and a meta-dataset sampled from it all
end at epoch 10 (what short fine-tuning runs, e.g. SAM's, look like).

Example::

    bench = ShortHorizon(YahpoBenchmark("lcbench"), 10)
    bench.fidelity.max       # 10
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from efficient_search.blackbox.base import Blackbox, Fidelity
from efficient_search.validate import is_number


class ShortHorizon(Blackbox):
    """``blackbox`` with its fidelity ending at ``maximum`` (between its minimum and its maximum)."""

    def __init__(self, blackbox: Blackbox, maximum: float):
        if not isinstance(blackbox, Blackbox):
            raise TypeError(f"`blackbox` must be a Blackbox, but got {type(blackbox).__name__}.")
        full = blackbox.fidelity
        if not is_number(maximum, finite=True) or not full.min <= maximum <= full.max:
            raise ValueError(f"`maximum` must be a {full.name} value in [{full.min}, {full.max}], but got "
                             f"{maximum!r}. Fix: e.g. ShortHorizon(bench, {min(full.max, 10)}).")
        self.blackbox = blackbox
        self._fidelity = replace(full, max=full.check(maximum))

    @property
    def instances(self) -> list[str]:
        return self.blackbox.instances

    def space(self) -> dict[str, Any]:
        return self.blackbox.space()

    @property
    def fidelity(self) -> Fidelity:
        return self._fidelity

    @property
    def metric_names(self) -> list[str]:
        return self.blackbox.metric_names

    @property
    def metric(self) -> str:
        return self.blackbox.metric

    @property
    def mode(self) -> str:
        return self.blackbox.mode

    @property
    def modes(self) -> dict[str, str]:
        return dict(getattr(self.blackbox, "modes", {}))

    def evaluate(self, config: Mapping[str, Any], instance: str, fidelity: float) -> dict[str, Any]:
        return self.blackbox.evaluate(config, instance, self._fidelity.check(fidelity))

    def evaluate_many(self, configs: Sequence[Mapping[str, Any]], instance: str,
                      fidelities: Sequence[float]) -> list[dict[str, Any]]:
        return self.blackbox.evaluate_many(configs, instance, [self._fidelity.check(f) for f in fidelities])

    def __repr__(self) -> str:
        return f"ShortHorizon({self.blackbox!r}, {self._fidelity.name} <= {self._fidelity.max})"
