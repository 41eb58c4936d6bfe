"""A sub-network's Hugging Face config, its per-layer module sizes, and loading it back from disk.

A stock config describes uniform layers only. A sub-network with per-layer sizes (or a Llama one whose n_embd
is not a multiple of its heads, which `LlamaConfig` rejects) stores the true per-layer sizes in the config
attribute `subnetwork_layout`; the stock fields then hold placeholders that validate (the largest per-layer
value where allowed). `load_subnetwork` builds the model, resizes those layers and loads the safetensors
weights; plain `from_pretrained` loads uniform sub-networks only.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from torch import nn

from efficient_search.subnetwork.architectures import PATHS
from efficient_search.subnetwork.dims import (
    LAYOUT_ATTRIBUTE,
    SUPPORTED_ARCHS,
    SuperDims,
    unsupported_arch_error,
)
from efficient_search.subnetwork.spec import ResolvedSubNetwork


def subnetwork_config(config: Any, dims: SuperDims, resolved: ResolvedSubNetwork) -> Any:
    """A copy of the super-network's `config` describing `resolved`."""
    r = resolved
    intermediate, heads = max(r.intermediate_sizes), max(r.n_heads)
    new = copy.deepcopy(config)
    if dims.arch == "gpt2":
        updates: dict[str, Any] = {"n_embd": r.n_embd, "n_layer": r.n_layer, "n_head": heads,
                                   "n_inner": intermediate}
    else:
        updates = {"hidden_size": r.n_embd, "num_hidden_layers": r.n_layer, "intermediate_size": intermediate,
                   "num_attention_heads": heads}
    if dims.arch == "llama":
        updates.update(num_key_value_heads=r.n_query_groups, head_dim=r.head_size)
        if r.n_embd % heads:
            updates["num_attention_heads"] = 1  # placeholder LlamaConfig accepts; the layout holds the truth
    rotary, super_rotary = dims.rotary_dims(r.head_size), dims.rotary_dims(dims.head_size)
    if rotary != super_rotary:
        rope = dict(config.rope_parameters)
        # Keeps the kept pairs' frequencies: (theta ** (r'/r)) ** (-2i/r') == theta ** (-2i/r).
        rope["rope_theta"] = float(rope["rope_theta"]) ** (rotary / super_rotary)
        updates["rope_parameters"] = rope
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == dims.n_layer:
        updates["layer_types"] = [layer_types[i] for i in r.layer_indices]
    for name, value in updates.items():
        setattr(new, name, value)
    if hasattr(new, LAYOUT_ATTRIBUTE):
        delattr(new, LAYOUT_ATTRIBUTE)
    if not r.is_stock:
        setattr(new, LAYOUT_ATTRIBUTE, {"intermediate_size": list(r.intermediate_sizes),
                                        "num_attention_heads": list(r.n_heads)})
    new.validate()
    return new


def _like(module: nn.Module, new: nn.Module) -> nn.Module:
    reference = next(module.parameters())
    return new.to(device=reference.device, dtype=reference.dtype)


def _resize_mlp(arch: str, mlp: Any, n_embd: int, size: int, bias: bool) -> None:
    if arch == "gpt2":
        from transformers.pytorch_utils import Conv1D

        mlp.c_fc = _like(mlp.c_fc, Conv1D(size, n_embd))
        mlp.c_proj = _like(mlp.c_proj, Conv1D(n_embd, size))
    elif arch == "gpt_neox":
        mlp.dense_h_to_4h = _like(mlp.dense_h_to_4h, nn.Linear(n_embd, size))
        mlp.dense_4h_to_h = _like(mlp.dense_4h_to_h, nn.Linear(size, n_embd))
    else:
        mlp.gate_proj = _like(mlp.gate_proj, nn.Linear(n_embd, size, bias=bias))
        mlp.up_proj = _like(mlp.up_proj, nn.Linear(n_embd, size, bias=bias))
        mlp.down_proj = _like(mlp.down_proj, nn.Linear(size, n_embd, bias=bias))
        mlp.intermediate_size = size


def _resize_llama_attention(attn: Any, config: Any, heads: int) -> None:
    width, bias = heads * config.head_dim, config.attention_bias
    attn.q_proj = _like(attn.q_proj, nn.Linear(config.hidden_size, width, bias=bias))
    attn.o_proj = _like(attn.o_proj, nn.Linear(width, config.hidden_size, bias=bias))
    attn.num_key_value_groups = heads // config.num_key_value_heads


def apply_layout(model: Any) -> None:
    """Resize the layers of a freshly built `model` to its config's `subnetwork_layout`, if any."""
    config = model.config
    layout = getattr(config, LAYOUT_ATTRIBUTE, None)
    if not layout:
        return
    arch = config.model_type
    layers = model.get_submodule(PATHS[arch].layers)
    sizes, heads = layout["intermediate_size"], layout["num_attention_heads"]
    if not len(sizes) == len(heads) == len(layers):
        raise ValueError(
            f"`{LAYOUT_ATTRIBUTE}` lists {len(sizes)} MLP sizes and {len(heads)} head counts, but the model "
            f"has {len(layers)} layers. The config was edited by hand or is not a sub-network config."
        )
    n_embd = config.n_embd if arch == "gpt2" else config.hidden_size
    for layer, size, n_heads in zip(layers, sizes, heads, strict=True):
        _resize_mlp(arch, layer.mlp, n_embd, int(size), bool(getattr(config, "mlp_bias", True)))
        if arch == "llama":
            _resize_llama_attention(layer.self_attn, config, int(n_heads))


def build_model(model_class: type, config: Any) -> Any:
    """An uninitialised model of `model_class` shaped like `config` (layout applied): weights come next."""
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = model_class(config)
    model.tie_weights()  # part of the initialisation skipped above
    apply_layout(model)
    return model


def initialised_model(model_class: type, config: Any) -> Any:
    """A freshly initialised model of `model_class` shaped like `config` (per-layer layout included)."""
    model = _with_layout(model_class)(config)
    model.__class__ = model_class
    return model


def _with_layout(model_class: Any) -> Any:
    """A subclass of `model_class` that resizes its layers to the config's layout as it is built."""

    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        super(resized, self).__init__(config, *args, **kwargs)
        apply_layout(self)

    # Same names, so Hugging Face finds the class's checkpoint conversions (e.g. GPT-NeoX's embed_out).
    resized: Any = type(model_class.__name__, (model_class,),
                        {"__init__": __init__, "__module__": model_class.__module__,
                         "__qualname__": model_class.__qualname__})
    return resized


def load_subnetwork(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Load a sub-network saved with `save_pretrained`, including one with per-layer sizes.

    Runs `from_pretrained` (safetensors only; `kwargs` go to it) on a class that resizes its layers to the
    config's `subnetwork_layout` while it is built; the result is an instance of the plain Hugging Face class.

    Example::

        extract_subnetwork(model, SubNetwork(intermediate_size=(64, 32))).save_pretrained("sub")
        model = load_subnetwork("sub")
    """
    import transformers

    config = transformers.AutoConfig.from_pretrained(path)
    if config.model_type not in SUPPORTED_ARCHS:
        raise unsupported_arch_error(config.model_type)
    model_class = getattr(transformers, SUPPORTED_ARCHS[config.model_type])
    model = _with_layout(model_class).from_pretrained(path, config=config, use_safetensors=True, **kwargs)
    model.__class__ = model_class  # the subclass only differs in how it is built
    return model
