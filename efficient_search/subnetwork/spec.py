"""What a sub-network keeps (`SubNetwork`) and its concrete per-layer sizes (`ResolvedSubNetwork`).

Example::

    sub = SubNetwork(layer_indices=6, n_embd=384, intermediate_size=1024, n_heads=6, n_query_groups=3)
    resolved = sub.resolve(SuperDims.from_config(model.config))   # raises ValueError if it cannot be built
    resolved.intermediate_sizes                                     # one value per kept layer
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from efficient_search.subnetwork.dims import HEAD_SIZE_ROPE_TYPES, SuperDims, known_fields
from efficient_search.validate import is_int

_PER_LAYER = ("intermediate_size", "n_heads")


def _check_int(name: str, value: object) -> int:
    if not is_int(value):
        raise TypeError(f"`{name}` must be an int, but got {value!r} ({type(value).__name__}).")
    return value


def _int_or_ints(name: str, value: object) -> int | tuple[int, ...] | None:
    """None, an int, or a non-empty tuple of ints (lists become tuples, so the dataclass stays hashable)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"`{name}` must not be empty; use None to keep the super-network's value.")
        return tuple(_check_int(f"{name}[{i}]", v) for i, v in enumerate(value))
    return _check_int(name, value)


@dataclass(frozen=True)
class SubNetwork:
    """A sub-network of a decoder-only transformer, described by the sizes it keeps.

    Every field left at None keeps the super-network's value. Per-layer tuples list one value per kept layer,
    in the original order of the kept layers. JSON-able through `to_dict`/`from_dict`.
    """

    layer_indices: int | tuple[int, ...] | None = None
    """An int keeps that many layers, chosen by the ordering; a tuple keeps those layer indices. Kept layers
    always run in their original order."""
    n_embd: int | None = None
    """Embedding channels (residual stream width)."""
    intermediate_size: int | tuple[int, ...] | None = None
    """MLP neurons, for all kept layers or per kept layer."""
    n_heads: int | tuple[int, ...] | None = None
    """Query heads, for all kept layers or per kept layer."""
    n_query_groups: int | None = None
    """Key/value heads; each kept group keeps n_heads / n_query_groups of its query heads."""
    head_size: int | None = None
    """Dimensions per head (query, key and value)."""

    def __post_init__(self) -> None:
        for name in ("layer_indices", *_PER_LAYER):
            object.__setattr__(self, name, _int_or_ints(name, getattr(self, name)))
        for name in ("n_embd", "n_query_groups", "head_size"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name))
        layers = self.layer_indices
        if isinstance(layers, tuple):
            negative = [i for i in layers if i < 0]
            if negative:
                raise ValueError(
                    f"`layer_indices` must be non-negative, but got {negative} in layer_indices={layers}. "
                    "Count layers from 0."
                )
            duplicates = sorted({i for i in layers if layers.count(i) > 1})
            if duplicates:
                raise ValueError(
                    f"`layer_indices` must not repeat a layer, but got {duplicates} more than once in "
                    f"layer_indices={layers}. List each kept layer once."
                )
        for name in ("layer_indices", "n_embd", *_PER_LAYER, "n_query_groups", "head_size"):
            value = getattr(self, name)
            if name == "layer_indices" and isinstance(value, tuple):
                continue  # indices, checked above
            values = value if isinstance(value, tuple) else (value,)
            if any(v is not None and v < 1 for v in values):
                raise ValueError(
                    f"`{name}` must be positive, but got {name}={value!r}. Use None to keep the "
                    "super-network's value."
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubNetwork:
        return cls(**known_fields(cls, data))

    def resolve(self, dims: SuperDims, layer_ranking: Sequence[int] | None = None) -> ResolvedSubNetwork:
        """Concrete per-layer sizes within `dims`, validated.

        `layer_ranking` lists the super-network's layers from most to least important; an int `layer_indices`
        keeps its first entries (default: the first layers). Raises ValueError naming the field, the value and
        the fix when the sub-network does not fit the super-network or cannot be built for its architecture.
        """
        layers = self._resolve_layers(dims, layer_ranking)
        n_embd = _at_most("n_embd", self.n_embd, dims.n_embd, "channels")
        head_size = _at_most("head_size", self.head_size, dims.head_size, "dimensions per head")
        intermediate = _per_layer("intermediate_size", self.intermediate_size, dims.intermediate_size,
                                  len(layers), "MLP neurons")
        heads = _per_layer("n_heads", self.n_heads, dims.n_heads, len(layers), "query heads")
        groups = self._resolve_groups(dims, heads)
        _check_head_size(dims, head_size)
        if dims.head_size_from_width:
            _check_width_rule(dims, n_embd, heads, head_size, self.n_heads)
        return ResolvedSubNetwork(
            arch=dims.arch, layer_indices=layers, n_embd=n_embd, intermediate_sizes=intermediate,
            n_heads=heads, n_query_groups=groups, head_size=head_size,
        )

    def _resolve_layers(self, dims: SuperDims, ranking: Sequence[int] | None) -> tuple[int, ...]:
        value = self.layer_indices
        if value is None:
            return tuple(range(dims.n_layer))
        if isinstance(value, tuple):
            out_of_range = [i for i in value if i >= dims.n_layer]
            if out_of_range:
                raise ValueError(
                    f"`layer_indices` must lie in [0, {dims.n_layer - 1}] (the super-network has "
                    f"{dims.n_layer} layers), but got {out_of_range} in layer_indices={value}. "
                    "Drop those indices."
                )
            return tuple(sorted(value))
        _at_most("layer_indices", value, dims.n_layer, "layers")
        if ranking is None:
            return tuple(range(value))
        if sorted(ranking) != list(range(dims.n_layer)):
            raise ValueError(
                f"`layer_ranking` must order all {dims.n_layer} layers once, but got {list(ranking)}. Pass "
                "`rank(importance.layers)`."
            )
        return tuple(sorted(ranking[:value]))

    def _resolve_groups(self, dims: SuperDims, heads: tuple[int, ...]) -> int:
        uniform = len(set(heads)) == 1
        if dims.arch != "llama":
            if self.n_query_groups is not None and (not uniform or self.n_query_groups != heads[0]):
                raise ValueError(
                    f"{dims.arch} has no grouped-query attention: `n_query_groups` must equal n_heads or be "
                    f"None, but got n_query_groups={self.n_query_groups} and n_heads={self.n_heads!r}. "
                    "Leave n_query_groups at None."
                )
            return heads[0] if uniform else dims.n_query_groups
        if self.n_query_groups is None:
            # A multi-head super-network stays multi-head; a grouped one keeps its groups.
            groups = heads[0] if dims.n_query_groups == dims.n_heads and uniform else dims.n_query_groups
        else:
            groups = _at_most("n_query_groups", self.n_query_groups, dims.n_query_groups, "key/value groups")
        for h in sorted(set(heads)):
            if h % groups:
                divisors = [g for g in range(1, min(h, dims.n_query_groups) + 1) if h % g == 0]
                raise ValueError(
                    f"`n_heads` must be a multiple of `n_query_groups` (every kept group keeps the same "
                    f"number of query heads), but got n_heads={h} and n_query_groups={groups}. Set "
                    f"n_query_groups to one of {divisors}, or n_heads to a multiple of {groups}."
                )
            if h // groups > dims.heads_per_group:
                raise ValueError(
                    f"`n_heads`={h} with n_query_groups={groups} needs {h // groups} query heads per group, "
                    f"but the super-network has {dims.heads_per_group} per group ({dims.n_heads} heads / "
                    f"{dims.n_query_groups} groups). Keep at most {groups * dims.heads_per_group} heads, or "
                    "more groups."
                )
        return groups


def _at_most(name: str, value: int | None, high: int, what: str) -> int:
    if value is None:
        return high
    if value > high:
        raise ValueError(
            f"`{name}` must be at most the super-network's {high} {what}, but got {name}={value}. "
            f"Choose a value in [1, {high}]."
        )
    return value


def _per_layer(name: str, value: int | tuple[int, ...] | None, high: int, n_layers: int,
               what: str) -> tuple[int, ...]:
    if isinstance(value, tuple):
        if len(value) != n_layers:
            raise ValueError(
                f"`{name}` lists one value per kept layer, so it needs {n_layers} values, but got "
                f"{len(value)}: {name}={value}. Give {n_layers} values or a single int."
            )
        for v in value:
            _at_most(name, v, high, what)
        return value
    return (_at_most(name, value, high, what),) * n_layers


def _head_size_ok(dims: SuperDims, head_size: int) -> bool:
    if dims.rope_type is None or head_size == dims.head_size:
        return True
    rotary, super_rotary = dims.rotary_dims(head_size), dims.rotary_dims(dims.head_size)
    return rotary % 2 == 0 and head_size - rotary <= dims.head_size - super_rotary


def _check_head_size(dims: SuperDims, head_size: int) -> None:
    if head_size == dims.head_size or dims.rope_type is None:
        return
    if dims.rope_type not in HEAD_SIZE_ROPE_TYPES:
        raise ValueError(
            f"`head_size`={head_size} differs from the super-network's {dims.head_size}, which keeps rotary "
            f"frequencies exact only for rope types {HEAD_SIZE_ROPE_TYPES}, but this model uses "
            f"rope_type={dims.rope_type!r}. Leave head_size at None."
        )
    if not _head_size_ok(dims, head_size):
        valid = [d for d in range(1, dims.head_size + 1) if _head_size_ok(dims, d)]
        raise ValueError(
            f"`head_size`={head_size} would split rotary pairs: rotary embeddings rotate "
            f"int(head_size * {dims.partial_rotary_factor}) = {dims.rotary_dims(head_size)} dimensions in "
            f"pairs, which must be even and leave at most "
            f"{dims.head_size - dims.rotary_dims(dims.head_size)} non-rotary dimensions. "
            f"Choose head_size in {valid}."
        )


def _check_width_rule(dims: SuperDims, n_embd: int, heads: tuple[int, ...], head_size: int,
                      given_heads: object) -> None:
    if len(set(heads)) > 1:
        raise ValueError(
            f"{dims.arch} computes the head size as n_embd / n_heads in every layer, so per-layer head "
            f"counts cannot be built, but got n_heads={given_heads!r}. Give one n_heads for all layers."
        )
    if heads[0] * head_size != n_embd:
        raise ValueError(
            f"{dims.arch} computes the head size as n_embd / n_heads, so n_heads * head_size must equal "
            f"n_embd, but got n_heads={heads[0]} and head_size={head_size} (product "
            f"{heads[0] * head_size}) with n_embd={n_embd}. Set n_embd={heads[0] * head_size}, or n_heads "
            f"and head_size (at most {dims.n_heads} and {dims.head_size}) whose product is {n_embd}."
        )


@dataclass(frozen=True)
class ResolvedSubNetwork:
    """A sub-network's concrete sizes; per-layer tuples follow `layer_indices` (sorted)."""

    arch: str
    layer_indices: tuple[int, ...]
    n_embd: int
    intermediate_sizes: tuple[int, ...]
    n_heads: tuple[int, ...]
    n_query_groups: int
    head_size: int

    @property
    def n_layer(self) -> int:
        return len(self.layer_indices)

    @property
    def is_stock(self) -> bool:
        """Whether a stock Hugging Face config expresses it, so plain `from_pretrained` loads it.

        Per-layer sizes need `load_subnetwork`; so does Llama when n_embd is not a multiple of n_heads (its
        config insists on that even though it stores `head_dim`).
        """
        uniform = len(set(self.intermediate_sizes)) == 1 and len(set(self.n_heads)) == 1
        return uniform and (self.arch != "llama" or self.n_embd % self.n_heads[0] == 0)
