"""Importance scores of a super-network's units (plain data) and the rankings they induce.

`compute_importance` (in `measure`) fills an `Importance` from a calibration batch; `extract_subnetwork(...,
order=importance)` then keeps the highest-scoring units. Higher scores mean more important.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from efficient_search.subnetwork.dims import SuperDims

_VERSION = 1


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def rank(scores: Sequence[float]) -> list[int]:
    """Indices from the highest score to the lowest; ties keep the original order, NaN ranks last."""
    def key(i: int) -> tuple[float, int]:
        return (math.inf if math.isnan(scores[i]) else -scores[i], i)

    return sorted(range(len(scores)), key=key)


@dataclass(frozen=True)
class Importance:
    """Scores of every prunable unit of a super-network.

    Example::

        importance = compute_importance(model, input_ids)
        json.dumps(importance.to_dict())
    """

    embedding: tuple[float, ...]
    """One score per embedding channel."""
    neurons: tuple[tuple[float, ...], ...]
    """Per layer, one score per MLP neuron."""
    heads: tuple[tuple[float, ...], ...]
    """Per layer, one score per query head (ranks heads within their key/value group)."""
    groups: tuple[tuple[float, ...], ...]
    """Per layer, one score per key/value group (equal to `heads` without grouped-query attention)."""
    layers: tuple[float, ...]
    """One score per layer (block importance)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "embedding", _floats(self.embedding))
        object.__setattr__(self, "layers", _floats(self.layers))
        for name in ("neurons", "heads", "groups"):
            object.__setattr__(self, name, tuple(_floats(row) for row in getattr(self, name)))
        n_layer = len(self.layers)
        for name in ("neurons", "heads", "groups"):
            rows = len(getattr(self, name))
            if rows != n_layer:
                raise ValueError(f"`Importance.{name}` needs one row per layer ({n_layer}), but got {rows}.")

    def check_matches(self, dims: SuperDims) -> None:
        """Raise ValueError unless these scores were measured on a super-network with `dims`."""
        expected = {
            "embedding": (len(self.embedding), dims.n_embd),
            "layers": (len(self.layers), dims.n_layer),
            "neurons": ({len(r) for r in self.neurons}, {dims.intermediate_size}),
            "heads": ({len(r) for r in self.heads}, {dims.n_heads}),
            "groups": ({len(r) for r in self.groups}, {dims.n_query_groups}),
        }
        for name, (got, want) in expected.items():
            if got != want:
                raise ValueError(
                    f"These importance scores do not fit the super-network: `{name}` has sizes {got}, but "
                    f"the model needs {want}. Compute the importance on this model with `compute_importance`."
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "embedding": list(self.embedding),
            "neurons": [list(r) for r in self.neurons],
            "heads": [list(r) for r in self.heads],
            "groups": [list(r) for r in self.groups],
            "layers": list(self.layers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Importance:
        if data.get("version") != _VERSION:
            raise ValueError(f"Importance version must be {_VERSION}, but got {data.get('version')!r}.")
        return cls(**{k: v for k, v in data.items() if k != "version"})
