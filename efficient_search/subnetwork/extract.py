"""Extract a sub-network as a new standalone Hugging Face model, its weights sliced from the super-network.

Example::

    importance = compute_importance(model, input_ids)
    sub = extract_subnetwork(model, SubNetwork(layer_indices=6, n_embd=384), order=importance)
    sub.save_pretrained("sub")      # uniform ones load back with AutoModelForCausalLM.from_pretrained
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

from efficient_search.subnetwork.architectures import PATHS, inspect_model
from efficient_search.subnetwork.dims import SuperDims
from efficient_search.subnetwork.layout import build_model, subnetwork_config
from efficient_search.subnetwork.selection import LayerSelection, Order, Selection, select
from efficient_search.subnetwork.spec import SubNetwork

# Per parameter, what each axis indexes: "E" embedding channels, "I" MLP neurons, "Q" query-head dimensions,
# "KV" key/value-group dimensions, "GPT2_QKV"/"NEOX_QKV" the fused projections, None all of it.
Axes = tuple[str | None, ...]
_GLOBAL: dict[str, dict[str, Axes]] = {
    "gpt2": {"transformer.wte.weight": (None, "E"), "transformer.wpe.weight": (None, "E"),
             "transformer.ln_f.weight": ("E",), "transformer.ln_f.bias": ("E",),
             "lm_head.weight": (None, "E")},
    "gpt_neox": {"gpt_neox.embed_in.weight": (None, "E"), "gpt_neox.final_layer_norm.weight": ("E",),
                 "gpt_neox.final_layer_norm.bias": ("E",), "lm_head.weight": (None, "E")},
    "llama": {"model.embed_tokens.weight": (None, "E"), "model.norm.weight": ("E",),
              "lm_head.weight": (None, "E")},
}
# Conv1D (GPT-2) stores weights as (in, out), nn.Linear as (out, in).
_LAYER: dict[str, dict[str, Axes]] = {
    "gpt2": {"ln_1.weight": ("E",), "ln_1.bias": ("E",), "ln_2.weight": ("E",), "ln_2.bias": ("E",),
             "attn.c_attn.weight": ("E", "GPT2_QKV"), "attn.c_attn.bias": ("GPT2_QKV",),
             "attn.c_proj.weight": ("Q", "E"), "attn.c_proj.bias": ("E",),
             "mlp.c_fc.weight": ("E", "I"), "mlp.c_fc.bias": ("I",),
             "mlp.c_proj.weight": ("I", "E"), "mlp.c_proj.bias": ("E",)},
    "gpt_neox": {"input_layernorm.weight": ("E",), "input_layernorm.bias": ("E",),
                 "post_attention_layernorm.weight": ("E",), "post_attention_layernorm.bias": ("E",),
                 "attention.query_key_value.weight": ("NEOX_QKV", "E"),
                 "attention.query_key_value.bias": ("NEOX_QKV",),
                 "attention.dense.weight": ("E", "Q"), "attention.dense.bias": ("E",),
                 "mlp.dense_h_to_4h.weight": ("I", "E"), "mlp.dense_h_to_4h.bias": ("I",),
                 "mlp.dense_4h_to_h.weight": ("E", "I"), "mlp.dense_4h_to_h.bias": ("E",)},
    "llama": {"input_layernorm.weight": ("E",), "post_attention_layernorm.weight": ("E",),
              "self_attn.q_proj.weight": ("Q", "E"), "self_attn.q_proj.bias": ("Q",),
              "self_attn.k_proj.weight": ("KV", "E"), "self_attn.k_proj.bias": ("KV",),
              "self_attn.v_proj.weight": ("KV", "E"), "self_attn.v_proj.bias": ("KV",),
              "self_attn.o_proj.weight": ("E", "Q"), "self_attn.o_proj.bias": ("E",),
              "mlp.gate_proj.weight": ("I", "E"), "mlp.gate_proj.bias": ("I",),
              "mlp.up_proj.weight": ("I", "E"), "mlp.up_proj.bias": ("I",),
              "mlp.down_proj.weight": ("E", "I"), "mlp.down_proj.bias": ("E",)},
}


def _head_columns(units: tuple[int, ...], head_dims: tuple[int, ...], stride: int,
                  offset: int = 0) -> list[int]:
    """Flat indices of `head_dims` within each of `units`, heads laid out every `stride` entries."""
    return [unit * stride + offset + d for unit in units for d in head_dims]


def _axis_indices(axis: str, dims: SuperDims, sel: Selection, layer: LayerSelection | None) -> list[int]:
    if axis == "E":
        return list(sel.embedding)
    if layer is None:
        raise ValueError(f"Axis {axis!r} belongs to a layer parameter.")
    d, hd = dims.head_size, sel.head_dims
    if axis == "I":
        return list(layer.neurons)
    if axis == "Q":
        return _head_columns(layer.heads, hd, d)
    if axis == "KV":
        return _head_columns(layer.groups, hd, d)
    if axis == "GPT2_QKV":  # [q | k | v], each n_heads * head_size wide
        width = dims.n_heads * d
        return [i for part in range(3) for i in _head_columns(layer.heads, hd, d, part * width)]
    if axis == "NEOX_QKV":  # per head [q_h, k_h, v_h], each head_size long
        return [head * 3 * d + part * d + i for head in layer.heads for part in range(3) for i in hd]
    raise ValueError(f"Unknown axis {axis!r}.")


def _sliced_state_dict(model: Any, new: Any, dims: SuperDims, sel: Selection) -> dict[str, torch.Tensor]:
    source = model.state_dict()
    layers_prefix = PATHS[dims.arch].layers
    pattern = re.compile(rf"^{re.escape(layers_prefix)}\.(\d+)\.(.+)$")
    cache: dict[tuple[str, int], torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    for name, target in new.state_dict().items():
        match = pattern.match(name)
        layer: LayerSelection | None = None
        if match:
            position, suffix = int(match.group(1)), match.group(2)
            layer = sel.layers[position]
            source_name = f"{layers_prefix}.{layer.source}.{suffix}"
            axes = _LAYER[dims.arch].get(suffix)
        else:
            source_name, position = name, -1
            axes = _GLOBAL[dims.arch].get(name)
        if axes is None:
            raise ValueError(
                f"Cannot slice parameter {name!r}: it is not part of the supported {dims.arch} layout "
                "(a model variant with extra modules?)."
            )
        tensor = source[source_name]
        for axis_number, axis in enumerate(axes):
            if axis is None:
                continue
            key = (axis, position if axis != "E" else -1)
            if key not in cache:
                cache[key] = torch.tensor(_axis_indices(axis, dims, sel, layer), device=tensor.device)
            tensor = tensor.index_select(axis_number, cache[key])
        if tensor.shape != target.shape:
            raise RuntimeError(f"Sliced {name!r} to {tuple(tensor.shape)}, but the sub-network needs "
                               f"{tuple(target.shape)}.")
        out[name] = tensor
    return out


def _check_layer_scaling(model: Any, sel: Selection) -> None:
    if getattr(model.config, "scale_attn_by_inverse_layer_idx", False):
        moved = [layer.source for position, layer in enumerate(sel.layers) if layer.source != position]
        if moved:
            raise ValueError(
                "This GPT-2 scales attention by 1 / (layer index + 1) (`scale_attn_by_inverse_layer_idx`), "
                f"so layers {moved} would change their scaling at a new depth. Keep a prefix of the layers "
                "(layer_indices=k with order='first-k')."
            )


def _check_rotary(model: Any, new: Any, dims: SuperDims, sel: Selection) -> None:
    """The sub-network must rotate each kept pair at the super-network's frequency."""
    path = PATHS[dims.arch].rotary
    if path is None:
        return
    kept_pairs = dims.rotary_dims(sel.resolved.head_size) // 2
    # `original_inv_freq`: dynamic rope types rewrite `inv_freq` during long forward passes.
    expected = model.get_submodule(path).original_inv_freq[:kept_pairs].float().cpu()
    got = new.get_submodule(path).original_inv_freq.float().cpu()
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-5, atol=0.0):
        raise ValueError(
            f"The sub-network's rotary frequencies differ from the super-network's for "
            f"rope_type={dims.rope_type!r} at head_size={sel.resolved.head_size}. Leave head_size at None."
        )


def extract_subnetwork(model: Any, subnetwork: SubNetwork, order: Order = "first-k") -> Any:
    """A new model of the same class holding `subnetwork`, with weights sliced from `model` (left untouched).

    `order` is "first-k" (keep the first units) or an `Importance` (keep the most important, placed in
    decreasing importance). The result has the source's dtype, device and train/eval mode; its config is
    updated (sizes, layer count, rotary base when the head size shrinks), and tied embeddings stay tied.
    """
    dims, _ = inspect_model(model)
    sel = select(dims, subnetwork, order)
    _check_layer_scaling(model, sel)
    config = subnetwork_config(model.config, dims, sel.resolved)
    new = build_model(type(model), config)
    with torch.no_grad():
        weights = _sliced_state_dict(model, new, dims, sel)
    new.load_state_dict(weights, strict=True)
    reference = model.get_input_embeddings().weight
    new = new.to(device=reference.device, dtype=reference.dtype)
    _check_rotary(model, new, dims, sel)
    if getattr(model, "generation_config", None) is not None:
        new.generation_config = copy.deepcopy(model.generation_config)
    return new.train(model.training)
