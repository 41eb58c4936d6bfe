"""Which super-network units a sub-network keeps, and in which order (no torch).

An ordering ranks each kind of unit; "keep k" keeps the k best-ranked. With ``"first-k"`` the ranking is the
original order. With an `Importance`, units are placed from most to least important, so keeping everything
yields a function-preserving permutation whose first-k units are the most important ones. Layers always keep
their original order (depth order matters).
"""

from __future__ import annotations

from dataclasses import dataclass

from efficient_search.subnetwork.dims import SuperDims
from efficient_search.subnetwork.importance import Importance, rank
from efficient_search.subnetwork.spec import ResolvedSubNetwork, SubNetwork

Order = str | Importance
"""``"first-k"`` or an `Importance`."""


@dataclass(frozen=True)
class LayerSelection:
    """Units kept in one layer, as super-network indices in their new order."""

    source: int
    """The super-network layer this one comes from."""
    neurons: tuple[int, ...]
    groups: tuple[int, ...]
    """Key/value groups kept."""
    heads: tuple[int, ...]
    """Query heads kept: those of the first kept group, then of the second, and so on."""


@dataclass(frozen=True)
class Selection:
    resolved: ResolvedSubNetwork
    embedding: tuple[int, ...]
    head_dims: tuple[int, ...]
    """Dimensions kept within every head (query, key and value alike)."""
    layers: tuple[LayerSelection, ...]


def head_dims(dims: SuperDims, head_size: int) -> tuple[int, ...]:
    """Dimensions of a head kept when shrinking it to `head_size`.

    Rotary embeddings rotate dimension i with i + r/2 (Hugging Face's `rotate_half`, r rotary dims): keep
    the first r'/2 of both halves, then the first non-rotary dimensions. The kept pairs have the lowest
    indices, i.e. frequencies base^(-2i/r); the sub-network's config raises its rotary base to the power r'/r
    so that its own frequencies base'^(-2i/r') are the same.
    """
    if head_size == dims.head_size:  # whole heads, also for odd rotary widths
        return tuple(range(head_size))
    rotary, kept_rotary = dims.rotary_dims(dims.head_size), dims.rotary_dims(head_size)
    half, kept_half = rotary // 2, kept_rotary // 2
    passing = range(rotary, rotary + head_size - kept_rotary)
    return (*range(kept_half), *range(half, half + kept_half), *passing)


def _check_order(order: object, dims: SuperDims) -> Importance | None:
    if isinstance(order, Importance):
        order.check_matches(dims)
        return order
    if order != "first-k":
        raise ValueError(f"`order` must be 'first-k' or an Importance, but got order={order!r}.")
    return None


def select(dims: SuperDims, subnetwork: SubNetwork, order: Order = "first-k") -> Selection:
    """Resolve `subnetwork` against `dims` and pick the kept units by `order`."""
    importance = _check_order(order, dims)
    resolved = subnetwork.resolve(dims, None if importance is None else rank(importance.layers))

    def ranked(field: str, n: int, layer: int | None = None, part: slice = slice(None)) -> list[int]:
        if importance is None:
            return list(range(n))
        scores = getattr(importance, field)
        return rank((scores if layer is None else scores[layer])[part])

    per_group = dims.heads_per_group
    layers = []
    for position, layer in enumerate(resolved.layer_indices):
        neurons = ranked("neurons", dims.intermediate_size, layer)[: resolved.intermediate_sizes[position]]
        groups = ranked("groups", dims.n_query_groups, layer)[: resolved.n_query_groups]
        keep_per_group = resolved.n_heads[position] // resolved.n_query_groups
        heads: list[int] = []
        for group in groups:
            within = ranked("heads", per_group, layer, slice(group * per_group, (group + 1) * per_group))
            heads += [group * per_group + h for h in within[:keep_per_group]]
        layers.append(LayerSelection(source=layer, neurons=tuple(neurons), groups=tuple(groups),
                                     heads=tuple(heads)))
    embedding = ranked("embedding", dims.n_embd)[: resolved.n_embd]
    return Selection(resolved=resolved, embedding=tuple(embedding),
                     head_dims=head_dims(dims, resolved.head_size), layers=tuple(layers))
