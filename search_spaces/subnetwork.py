"""Sub-network search spaces derived from a super-network's Hugging Face config.

Two variants over the same axes:

- ``coarse``: one value per axis for every layer: ``n_layer`` (how many layers; the task's
  ordering picks which), ``intermediate_size``, attention heads and ``head_size``, and for
  Llama-family models ``n_embd`` and ``n_query_groups`` with ``heads_per_group`` (GQA: the same
  number of query heads is kept in every kept key/value group).
- ``fine``: as coarse, but one MLP width (``intermediate_size_<i>``) and, for Llama-family
  models, one head count (``heads_per_group_<i>``) per super-network layer ``i`` instead of
  one for all; a layer's values apply when that layer is kept.

GPT-2 and GPT-NeoX compute the head size as ``n_embd / n_heads``, so there the embedding
width is not an axis of its own: it is ``n_heads * head_size``.

The space is an object for the :class:`~efficient_search.searchers.EvolutionarySearcher`
(``param_space``, ``cost`` = analytic parameter count, ``bins`` = parameter-count bin edges at
25/50/75% of the super-network, ``identity`` = the sub-network a config describes, so that
configs differing only in unused axes count as one) and a plain Ray Tune dict (``param_space``)
for any other searcher. With a layer ranking (importance order), ``param_space`` carries it as
the constant ``layer_order``, so the driver's budget and every trial keep the same layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ray import tune

from efficient_search.subnetwork import SubNetwork, SuperDims, count_parameters
from efficient_search.validate import is_int

VARIANTS = ("coarse", "fine")
BIN_FRACTIONS = (0.25, 0.5, 0.75)


def width_grid(maximum: int, steps: int, multiple: int = 1) -> list[int]:
    """Up to ``steps`` evenly spaced widths up to ``maximum``, each a multiple of ``multiple``."""
    values = {max(multiple, round(maximum * k / steps / multiple) * multiple) for k in range(1, steps + 1)}
    values.add(maximum)
    return sorted(v for v in values if v <= maximum)


def _count_grid(maximum: int) -> list[int]:
    return list(range(1, maximum + 1))


def head_size_grid(dims: SuperDims, steps: int) -> list[int]:
    """Head sizes; Llama's rotary halves need even sizes, NeoX keeps its own (partial rotary)."""
    if dims.arch == "gpt_neox":
        return [dims.head_size]
    return width_grid(dims.head_size, steps, multiple=2 if dims.arch == "llama" else 1)


@dataclass(frozen=True)
class SubnetworkSpace:
    """Axes of sub-networks of one super-network (see the module docstring)."""

    dims: SuperDims
    variant: str = "coarse"
    steps: int = 8
    """Values per width axis."""
    layer_order: tuple[int, ...] | None = None
    """Layer ranking (most important first) that picks the ``n_layer`` kept; None = first-k."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(
                f"Sub-network space `variant` must be one of {', '.join(VARIANTS)}, but got "
                f"{self.variant!r}. Fix: variant: coarse."
            )
        if not is_int(self.steps) or self.steps < 1:
            raise ValueError(f"Sub-network space `steps` must be an int >= 1, but got {self.steps!r}.")

    @property
    def gqa(self) -> bool:
        """Whether key/value groups and the embedding width are axes (Llama family)."""
        return self.dims.arch == "llama"

    @property
    def per_layer_heads(self) -> bool:
        # GPT-2 and GPT-NeoX tie heads to the embedding width, so only GQA models vary them.
        return self.variant == "fine" and self.gqa

    @property
    def param_space(self) -> dict[str, Any]:
        """Ray Tune domains, one per axis."""
        dims, steps = self.dims, self.steps
        fine = self.variant == "fine"
        space: dict[str, Any] = {
            "n_layer": tune.choice(_count_grid(dims.n_layer)),
            "head_size": tune.choice(head_size_grid(dims, steps)),
        }
        if not fine:
            space["intermediate_size"] = tune.choice(width_grid(dims.intermediate_size, steps))
        if self.gqa:
            space["n_embd"] = tune.choice(width_grid(dims.n_embd, steps))
            space["n_query_groups"] = tune.choice(_count_grid(dims.n_query_groups))
            if not fine:
                space["heads_per_group"] = tune.choice(_count_grid(dims.heads_per_group))
        else:
            space["n_heads"] = tune.choice(_count_grid(dims.n_heads))
        if self.layer_order is not None:
            space["layer_order"] = ",".join(map(str, self.layer_order))
        if fine:
            for i in range(dims.n_layer):
                space[f"intermediate_size_{i}"] = tune.choice(width_grid(dims.intermediate_size, steps))
                if self.per_layer_heads:
                    space[f"heads_per_group_{i}"] = tune.choice(_count_grid(dims.heads_per_group))
        return space

    @property
    def full_parameters(self) -> int:
        """Parameters of the super-network itself."""
        return count_parameters(self.dims, SubNetwork())

    @property
    def bins(self) -> list[float]:
        """Parameter-count bin edges: 0, 25%, 50%, 75% of the super-network, and above it."""
        full = self.full_parameters
        return [0.0, *(f * full for f in BIN_FRACTIONS), full + 1.0]

    def to_subnetwork(self, config: Mapping[str, Any]) -> SubNetwork:
        """The sub-network a configuration of this space describes."""
        return subnetwork_from_config(config, self.dims, self.layer_order)

    def identity(self, config: Mapping[str, Any]) -> SubNetwork:
        """What a configuration evaluates (configs differing in unused axes are the same)."""
        return self.to_subnetwork(config)

    def cost(self, config: Mapping[str, Any]) -> float:
        """Analytic parameter count of a configuration (pure arithmetic)."""
        return float(count_parameters(self.dims, self.to_subnetwork(config)))


def _kept_layers(config: Mapping[str, Any], dims: SuperDims) -> int | tuple[int, ...] | None:
    if "layer_indices" in config:
        indices = config["layer_indices"]
        return tuple(int(i) for i in indices) if isinstance(indices, Sequence) else int(indices)
    return int(config["n_layer"]) if "n_layer" in config else None


def subnetwork_from_config(config: Mapping[str, Any], dims: SuperDims,
                           order: Sequence[int] | None = None) -> SubNetwork:
    """Decode a configuration of either variant into a :class:`SubNetwork`.

    Per-layer keys (``intermediate_size_<i>``, ``heads_per_group_<i>``) name super-network
    layers; the layer ranking that decides which ``n_layer`` layers are kept (most important
    first) is the config's ``layer_order`` constant, else ``order``, else first-k.
    """
    if isinstance(config.get("layer_order"), str):
        order = [int(i) for i in config["layer_order"].split(",")]
    layers = _kept_layers(config, dims)
    if isinstance(layers, int):
        ranking = list(order) if order is not None else list(range(dims.n_layer))
        kept: list[int] = sorted(ranking[:layers])
    elif isinstance(layers, tuple):
        kept = sorted(layers)
    else:
        kept = list(range(dims.n_layer))
    per_layer = any(key.startswith(("intermediate_size_", "heads_per_group_")) for key in config)
    groups = config.get("n_query_groups")
    head_size = config.get("head_size")

    def heads_of(per_group: Any) -> int | None:
        if per_group is None:
            return None
        return int(per_group) * int(groups if groups is not None else dims.n_query_groups)

    intermediate: Any = config.get("intermediate_size")
    heads: Any = heads_of(config.get("heads_per_group")) if "heads_per_group" in config \
        else config.get("n_heads")
    if per_layer:
        intermediate = tuple(int(config.get(f"intermediate_size_{i}", intermediate or
                                            dims.intermediate_size)) for i in kept)
        if any(f"heads_per_group_{i}" in config for i in kept):
            default = config.get("heads_per_group", dims.heads_per_group)
            heads = tuple(heads_of(config.get(f"heads_per_group_{i}", default)) for i in kept)
    n_embd = config.get("n_embd")
    if n_embd is None and dims.arch != "llama" and heads is not None and not isinstance(heads, tuple):
        n_embd = int(heads) * int(head_size if head_size is not None else dims.head_size)
    return SubNetwork(
        layer_indices=tuple(kept) if layers is not None else None,
        n_embd=None if n_embd is None else int(n_embd),
        intermediate_size=intermediate if isinstance(intermediate, tuple) or intermediate is None
        else int(intermediate),
        n_heads=heads if isinstance(heads, tuple) or heads is None else int(heads),
        n_query_groups=None if groups is None else int(groups),
        head_size=None if head_size is None else int(head_size),
    )


def _space_for(task_options: Mapping[str, Any], variant: str) -> SubnetworkSpace:
    from transformers import AutoConfig

    from efficient_search.tasks.supernets import resolve_supernet

    if "model" not in task_options or "order" not in task_options:
        raise ValueError(
            "The sub-network search spaces read the super-network from `task_options.model` and "
            "`task_options.order`, which this task does not have. Fix: use task: subnetwork."
        )
    path = resolve_supernet(str(task_options["model"]))
    dims = SuperDims.from_config(AutoConfig.from_pretrained(path))
    layer_order = None
    if task_options["order"] == "importance":
        # Ranked once here and carried in the space, so trials keep the layers the budget counted.
        from efficient_search.subnetwork.importance import rank
        from efficient_search.tasks.subnetwork_eval import importance_of, option_key

        layer_order = tuple(rank(importance_of(str(path), option_key(task_options)).layers))
    return SubnetworkSpace(dims, variant=variant, layer_order=layer_order)


def subnetwork_space(task_options: Mapping[str, Any]) -> SubnetworkSpace:
    """The coarse sub-network space of the task's super-network (``task_options.model``)."""
    return _space_for(task_options, "coarse")


def subnetwork_fine_space(task_options: Mapping[str, Any]) -> SubnetworkSpace:
    """The fine (per-layer) sub-network space of the task's super-network."""
    return _space_for(task_options, "fine")
