"""Layer freezing: the number of trainable layers as a fidelity.

A model is read as an ordered list of *layer units*, input to output: the stem (embeddings,
first convolution), each block (residual block, transformer block) and the head (final norm,
classifier or LM head). Freezing ``trainable_layers = z`` keeps the last ``z`` units trainable
and freezes the first ``L - z``.

No autograd graph is built for the frozen prefix: its parameters do not require gradients and
neither does the model input, so PyTorch records nothing until the first trainable unit and
keeps no prefix activations for the backward pass. That is where the memory saving comes from
(plus no gradients and no optimiser state for frozen parameters). A weight shared with a
trainable unit (tied input/output embeddings) would drag the graph back in, so the outputs of
frozen units are detached by forward hooks: the shared weight learns from its trainable use only.

How units are found, in order:

1. blocks are the children of the outermost ``nn.ModuleList``/``nn.Sequential`` containers whose
   children all share one non-leaf class (``model.layers`` of a Llama, ``encoder.layer`` of a
   BERT, ``layer1``...``layer4`` of a torchvision ResNet); consecutive parameterised modules
   between them (in registration order) form one stem or head unit;
2. without such containers, a top-level ``nn.Sequential``/``nn.ModuleList`` (reached through
   single-child wrappers) gives one unit per parameterised child.

Example::

    units = layer_units(model)                   # [stem, block_1, ..., block_n, head]
    params = freeze_layers(model, trainable_layers=2)
    optimizer = torch.optim.AdamW(params, lr=1e-3)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from efficient_search.validate import is_int

CONTAINERS = (nn.ModuleList, nn.Sequential)


class LayerGroup(nn.Module):
    """Several sibling modules that form one unit (e.g. ``conv1`` + ``bn1`` of a ResNet stem).

    It only groups references for freezing and counting; it is never called.
    """

    def __init__(self, modules: list[tuple[str, nn.Module]]):
        super().__init__()
        self.names = [name for name, _ in modules]
        self.parts = nn.ModuleList([module for _, module in modules])

    def forward(self, *args: object) -> None:  # pragma: no cover - never called
        raise RuntimeError("LayerGroup only groups modules for freezing; call the model instead.")

    def extra_repr(self) -> str:
        return ", ".join(self.names)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _is_block_container(module: nn.Module) -> bool:
    children = list(module.children())
    if not isinstance(module, CONTAINERS) or not children:
        return False
    kind = type(children[0])
    return all(
        type(c) is kind and _has_params(c) and any(True for _ in c.children()) for c in children
    )


def _block_containers(model: nn.Module) -> set[nn.Module]:
    """The outermost homogeneous block containers below ``model``."""
    found: set[nn.Module] = set()

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if _is_block_container(child):
                found.add(child)
            else:
                visit(child)

    if _is_block_container(model):
        found.add(model)
    else:
        visit(model)
    return found


def _contains(module: nn.Module, targets: set[nn.Module]) -> bool:
    return any(m in targets for m in module.modules())


def _units_around_blocks(model: nn.Module, containers: set[nn.Module]) -> list[nn.Module]:
    blocks = {id(b) for c in containers for b in c.children()}
    units: list[nn.Module] = []
    pending: list[tuple[str, nn.Module]] = []
    # Parameters set directly on a module that holds blocks (a class token, a position
    # embedding) are input-side: they join the stem.
    direct: list[nn.Parameter] = []

    def close_group() -> None:
        if pending:
            units.append(pending[0][1] if len(pending) == 1 else LayerGroup(list(pending)))
            pending.clear()

    def walk(module: nn.Module, prefix: str) -> None:
        direct.extend(module.parameters(recurse=False))
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if child in containers:
                close_group()
                units.extend(child.children())
            elif _contains(child, containers):
                walk(child, f"{path}.")
            elif _has_params(child):
                pending.append((path, child))

    if model in containers:
        units.extend(model.children())
    else:
        walk(model, "")
        close_group()
    if direct:
        extra = _DirectParameters(direct)
        if units and id(units[0]) not in blocks:
            units[0] = LayerGroup([("stem", units[0]), ("direct", extra)])
        else:
            units.insert(0, extra)
    return units


class _DirectParameters(nn.Module):
    """Parameters set directly on a container module, as a unit member."""

    def __init__(self, params: list[nn.Parameter]):
        super().__init__()
        self.params = nn.ParameterList(params)


def _sequential_children(model: nn.Module) -> list[nn.Module] | None:
    module = model
    while True:
        if isinstance(module, CONTAINERS):
            children = [c for c in module.children() if _has_params(c)]
            return children if len(children) >= 2 else None
        parameterised = [c for c in module.children() if _has_params(c)]
        if len(parameterised) != 1 or list(module.parameters(recurse=False)):
            return None
        module = parameterised[0]


def layer_units(model: nn.Module) -> list[nn.Module]:
    """The model's ordered layer units, input to output (see the module docstring)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, but got {type(model).__name__}.")
    containers = _block_containers(model)
    units = _units_around_blocks(model, containers) if containers else None
    if not units:
        units = _sequential_children(model)
    if not units:
        raise ValueError(
            f"Cannot find layer units in {type(model).__name__}: it has no nn.ModuleList/"
            "nn.Sequential of same-class blocks and is not an nn.Sequential. Fix: keep the "
            "blocks in an nn.ModuleList (as Hugging Face and torchvision models do)."
        )
    return units


def max_fidelity(model: nn.Module) -> int:
    """L: the number of layer units, the highest ``trainable_layers`` value."""
    return len(layer_units(model))


def _unique(params: Iterator[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    unique = []
    for param in params:
        if id(param) not in seen:
            seen.add(id(param))
            unique.append(param)
    return unique


def _detach(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.detach() if value.requires_grad else value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_detach(v) for v in value)
    if isinstance(value, list):
        return [_detach(v) for v in value]
    return value


def _detach_output(module: nn.Module, args: object, output: object) -> object:
    return _detach(output)


HOOKS_ATTRIBUTE = "_efficient_search_freeze_hooks"


def freeze_layers(model: nn.Module, trainable_layers: int) -> list[nn.Parameter]:
    """Freeze all but the last ``trainable_layers`` units; returns the trainable parameters.

    Parameters outside every unit are frozen too. A parameter shared between a frozen and a
    trainable unit (tied input and output embeddings) stays trainable, and learns only from
    its use in the trainable unit. Calling it again re-freezes from scratch.
    """
    units = layer_units(model)
    total = len(units)
    if not is_int(trainable_layers):
        raise TypeError(
            f"`trainable_layers` must be an integer, but got {trainable_layers!r} "
            f"({type(trainable_layers).__name__})."
        )
    if not 1 <= trainable_layers <= total:
        raise ValueError(
            f"`trainable_layers` must satisfy 1 <= trainable_layers <= {total} (the layer units "
            f"of {type(model).__name__}), but got {trainable_layers}."
        )
    for param in model.parameters():
        param.requires_grad_(False)
    trainable = _unique(p for unit in units[total - trainable_layers :] for p in unit.parameters())
    for param in trainable:
        param.requires_grad_(True)
    for handle in getattr(model, HOOKS_ATTRIBUTE, []):
        handle.remove()
    hooks = []
    for unit in units[: total - trainable_layers]:
        for module in unit.parts if isinstance(unit, LayerGroup) else [unit]:
            hooks.append(module.register_forward_hook(_detach_output))
    object.__setattr__(model, HOOKS_ATTRIBUTE, hooks)
    return trainable


__all__ = ["LayerGroup", "freeze_layers", "layer_units", "max_fidelity"]

