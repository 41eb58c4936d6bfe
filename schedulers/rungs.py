"""Asynchronous successive-halving rungs over (trainable layers, epochs): pure logic, no Ray.

A trial climbs rungs ``0..K-1``; rung ``k`` trains with ``trainable_layers = z_k`` for
``epochs_k`` epochs. When a trial ends a rung, it is promoted if its score is in the top
``1/eta`` of all scores recorded at that rung so far (the asynchronous rule of ASHA), otherwise
stopped. Decisions are made at once, so no trial ever waits for others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from efficient_search.validate import check_int, check_number

STATE_VERSION = 1


class Decision(Enum):
    """What happens to a trial that reported a result."""

    CONTINUE = "continue"  # still inside its rung
    PROMOTE = "promote"  # ended its rung among the best: pause, then resume one rung up
    STOP = "stop"  # ended its rung below the cut, or ended the last rung


@dataclass(frozen=True)
class Rung:
    trainable_layers: int
    epochs: int


def geometric(low: int, high: int, count: int) -> list[int]:
    """``count`` integers from ``low`` to ``high``, evenly spaced on a log scale."""
    if count == 1:
        return [high]
    values = [round(low * (high / low) ** (k / (count - 1))) for k in range(count)]
    return [max(low, min(high, v)) for v in values]


def make_rungs(*, min_layers: int, max_layers: int, eta: float, epochs: int,
               min_epochs: int | None = None) -> list[Rung]:
    """Rungs with ``z`` growing by ``eta`` from ``min_layers`` to ``max_layers``.

    With ``min_epochs`` the epoch budget grows too, from ``min_epochs`` to ``epochs``, over
    the same number of rungs (a rung is then a (layers, epochs) pair); otherwise every rung
    trains ``epochs`` epochs.
    """
    for name, value in (("min_trainable_layers", min_layers), ("max_trainable_layers", max_layers),
                        ("epochs", epochs)):
        check_int(name, value, min=1)
    if min_layers > max_layers:
        raise ValueError(
            f"`min_trainable_layers <= max_trainable_layers` must hold, but got "
            f"(min_trainable_layers={min_layers}, max_trainable_layers={max_layers})."
        )
    check_number("reduction_factor", eta, above=1)
    count = 1 + max(0, math.ceil(math.log(max_layers / min_layers, eta) - 1e-9))
    layers = [min(max_layers, round(min_layers * eta**k)) for k in range(count)]
    layers[-1] = max_layers
    layers = sorted(set(layers))
    if min_epochs is None:
        budgets = [epochs] * len(layers)
    else:
        check_int("min_epochs", min_epochs, min=1, max=epochs, expected=f"an integer in [1, epochs={epochs}]")
        budgets = geometric(min_epochs, epochs, len(layers))
    return [Rung(z, e) for z, e in zip(layers, budgets, strict=True)]


class RungLadder:
    """Which rung each trial is on, the scores recorded per rung, and promotions."""

    def __init__(self, rungs: list[Rung], eta: float, sign: float):
        self.rungs = rungs
        self.eta = float(eta)
        self.sign = sign  # +1 maximises, -1 minimises
        self.rung_of: dict[str, int] = {}
        self.scores: list[dict[str, float]] = [{} for _ in rungs]

    def add(self, trial_id: str, rung: int = 0) -> Rung:
        """Register a trial (idempotent); returns its current rung."""
        self.rung_of.setdefault(trial_id, rung)
        return self.rungs[self.rung_of[trial_id]]

    def remove(self, trial_id: str) -> None:
        self.rung_of.pop(trial_id, None)

    def current(self, trial_id: str) -> Rung:
        return self.rungs[self.rung_of[trial_id]]

    def end_rung(self, trial_id: str, score: float) -> Decision:
        """Record the score a trial reached at the end of its rung and decide its fate."""
        k = self.rung_of[trial_id]
        if math.isnan(score):
            return Decision.STOP  # never recorded: NaN must not shift the cut
        self.scores[k][trial_id] = self.sign * score
        if k == len(self.rungs) - 1:
            return Decision.STOP
        ranked = sorted(self.scores[k].values(), reverse=True)
        keep = max(1, math.floor(len(ranked) / self.eta))
        if self.sign * score >= ranked[keep - 1]:
            self.rung_of[trial_id] = k + 1
            return Decision.PROMOTE
        return Decision.STOP

    def get_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "rungs": [[r.trainable_layers, r.epochs] for r in self.rungs],
            "eta": self.eta,
            "sign": self.sign,
            "rung_of": dict(self.rung_of),
            "scores": [dict(s) for s in self.scores],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"Rung state version {state.get('version')!r} is not {STATE_VERSION}.")
        rungs = [Rung(int(z), int(e)) for z, e in state["rungs"]]
        if rungs != self.rungs:
            raise ValueError(
                f"The saved rungs {rungs} differ from this scheduler's {self.rungs}: restore "
                "with the same min/max trainable layers, epochs and reduction factor."
            )
        self.eta, self.sign = float(state["eta"]), float(state["sign"])
        self.rung_of = {str(k): int(v) for k, v in state["rung_of"].items()}
        self.scores = [{str(k): float(v) for k, v in s.items()} for s in state["scores"]]
