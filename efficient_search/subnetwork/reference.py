"""Reference paths that run a sub-network inside the super-network, for checking `extract_subnetwork`.

Written apart from the extraction code: `sliced_forward` runs the super-network's own modules with weights
sliced at run time (heads through reshaped views rather than flat index lists) and head counts, head sizes,
scalings and norm shapes patched for the call, dropped layers skipped, and the rotary frequencies taken from
the super-network itself. `masked_copy` zeroes what a sub-network drops; that is exact when only layers,
heads, groups and MLP neurons are dropped, because those contribute additively to the residual stream.
"""

from __future__ import annotations

import contextlib
import copy
import re
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from efficient_search.subnetwork.architectures import inspect_model
from efficient_search.subnetwork.dims import SuperDims
from efficient_search.subnetwork.selection import LayerSelection, Order, Selection, select
from efficient_search.subnetwork.spec import SubNetwork


def _index(values: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long, device=like.device)


class _Slicer:
    """Slices one layer's parameters; heads are picked from (units, head_size, ...) views."""

    def __init__(self, dims: SuperDims, sel: Selection, layer: LayerSelection, like: torch.Tensor) -> None:
        self.d = dims.head_size
        self.emb = _index(sel.embedding, like)
        self.dims_kept = _index(sel.head_dims, like)
        self.heads = _index(layer.heads, like)
        self.groups = _index(layer.groups, like)
        self.neurons = _index(layer.neurons, like)

    def rows_by_head(self, w: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """(units * head_size, E) -> kept units, dims and channels."""
        w = w.view(-1, self.d, w.shape[-1])[units][:, self.dims_kept][:, :, self.emb]
        return w.reshape(-1, len(self.emb))

    def bias_by_head(self, b: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        return b.view(-1, self.d)[units][:, self.dims_kept].reshape(-1)

    def columns_by_head(self, w: torch.Tensor) -> torch.Tensor:
        """(E, heads * head_size) -> kept channels, heads and dims."""
        w = w[self.emb].view(len(self.emb), -1, self.d)[:, self.heads][:, :, self.dims_kept]
        return w.reshape(len(self.emb), -1)

    def llama(self, suffix: str, p: torch.Tensor) -> torch.Tensor:
        if suffix.endswith("layernorm.weight") or suffix in ("self_attn.o_proj.bias", "mlp.down_proj.bias"):
            return p[self.emb]
        if suffix.startswith("self_attn.q_proj"):
            return self.rows_by_head(p, self.heads) if p.ndim == 2 else self.bias_by_head(p, self.heads)
        if suffix.startswith(("self_attn.k_proj", "self_attn.v_proj")):
            return self.rows_by_head(p, self.groups) if p.ndim == 2 else self.bias_by_head(p, self.groups)
        if suffix == "self_attn.o_proj.weight":
            return self.columns_by_head(p)
        if suffix.startswith(("mlp.gate_proj", "mlp.up_proj")):
            return p[self.neurons][:, self.emb] if p.ndim == 2 else p[self.neurons]
        if suffix == "mlp.down_proj.weight":
            return p[self.emb][:, self.neurons]
        raise ValueError(f"Unexpected Llama parameter {suffix!r}.")

    def gpt_neox(self, suffix: str, p: torch.Tensor) -> torch.Tensor:
        if "layernorm" in suffix or suffix in ("attention.dense.bias", "mlp.dense_4h_to_h.bias"):
            return p[self.emb]
        if suffix == "attention.query_key_value.weight":  # rows: per head [q, k, v]
            w = p.view(-1, 3, self.d, p.shape[-1])[self.heads][:, :, self.dims_kept][..., self.emb]
            return w.reshape(-1, len(self.emb))
        if suffix == "attention.query_key_value.bias":
            return p.view(-1, 3, self.d)[self.heads][:, :, self.dims_kept].reshape(-1)
        if suffix == "attention.dense.weight":
            return self.columns_by_head(p)
        if suffix.startswith("mlp.dense_h_to_4h"):
            return p[self.neurons][:, self.emb] if p.ndim == 2 else p[self.neurons]
        if suffix == "mlp.dense_4h_to_h.weight":
            return p[self.emb][:, self.neurons]
        raise ValueError(f"Unexpected GPT-NeoX parameter {suffix!r}.")

    def gpt2(self, suffix: str, p: torch.Tensor) -> torch.Tensor:  # Conv1D weights are (in, out)
        if suffix.startswith(("ln_", "attn.c_proj.bias", "mlp.c_proj.bias")):
            return p[self.emb]
        if suffix == "attn.c_attn.weight":  # columns: [q | k | v], each (heads, head_size)
            w = p[self.emb].view(len(self.emb), 3, -1, self.d)[:, :, self.heads][..., self.dims_kept]
            return w.reshape(len(self.emb), -1)
        if suffix == "attn.c_attn.bias":
            return p.view(3, -1, self.d)[:, self.heads][..., self.dims_kept].reshape(-1)
        if suffix == "attn.c_proj.weight":
            return self.rows_by_head(p, self.heads)
        if suffix == "mlp.c_fc.weight":
            return p[self.emb][:, self.neurons]
        if suffix == "mlp.c_fc.bias":
            return p[self.neurons]
        if suffix == "mlp.c_proj.weight":
            return p[self.neurons][:, self.emb]
        raise ValueError(f"Unexpected GPT-2 parameter {suffix!r}.")


def _patch(stack: contextlib.ExitStack, obj: Any, name: str, value: Any) -> None:
    old = getattr(obj, name)
    setattr(obj, name, value)
    stack.callback(setattr, obj, name, old)


def _patch_layer(stack: contextlib.ExitStack, dims: SuperDims, block: Any, sel: Selection,
                 position: int) -> None:
    r = sel.resolved
    heads, size, n_embd = r.n_heads[position], r.head_size, r.n_embd
    if dims.arch == "llama":
        attn = block.self_attn
        _patch(stack, attn, "head_dim", size)
        _patch(stack, attn, "scaling", size**-0.5)
        _patch(stack, attn, "num_key_value_groups", heads // r.n_query_groups)
    elif dims.arch == "gpt_neox":
        attn = block.attention
        _patch(stack, attn, "head_size", size)
        _patch(stack, attn, "scaling", size**-0.5)
        _patch(stack, attn, "rotary_ndims", dims.rotary_dims(size))
    else:
        attn = block.attn
        _patch(stack, attn, "num_heads", heads)
        _patch(stack, attn, "head_dim", size)
        _patch(stack, attn, "split_size", heads * size)
        if attn.scale_attn_weights:  # scaling = head_dim ** -0.5, maybe / (layer index + 1)
            _patch(stack, attn, "scaling", attn.scaling * (dims.head_size / size) ** 0.5)
        _patch(stack, attn.c_attn, "nf", 3 * heads * size)
        _patch(stack, attn.c_proj, "nf", n_embd)
        _patch(stack, block.mlp.c_fc, "nf", r.intermediate_sizes[position])
        _patch(stack, block.mlp.c_proj, "nf", n_embd)


@torch.no_grad()
def sliced_forward(model: Any, subnetwork: SubNetwork, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None, order: Order = "first-k") -> torch.Tensor:
    """Logits of `subnetwork` computed by the super-network's own modules (restored afterwards)."""
    dims, paths = inspect_model(model)
    sel = select(dims, subnetwork, order)
    kept = {layer.source: position for position, layer in enumerate(sel.layers)}
    pattern = re.compile(rf"^{re.escape(paths.layers)}\.(\d+)\.(.+)$")
    emb = _index(sel.embedding, input_ids)
    tensors: dict[str, torch.Tensor] = {}
    slicers: dict[int, _Slicer] = {}
    for name, p in model.named_parameters():
        match = pattern.match(name)
        if match is None:  # embeddings, final norm, untied LM head: channels are their last axis
            tensors[name] = p[..., emb]
            continue
        source, suffix = int(match.group(1)), match.group(2)
        if source in kept:
            position = kept[source]
            slicer = slicers.setdefault(position, _Slicer(dims, sel, sel.layers[position], p))
            tensors[f"{paths.layers}.{position}.{suffix}"] = getattr(slicer, dims.arch)(suffix, p)
    for name, b in model.named_buffers():
        if paths.rotary is not None and name.startswith(paths.rotary + "."):
            b = b[: dims.rotary_dims(sel.resolved.head_size) // 2]  # the super-network's own frequencies
        tensors[name] = b

    parent_path, list_name = paths.layers.rsplit(".", 1)
    parent, blocks = model.get_submodule(parent_path), model.get_submodule(paths.layers)
    with contextlib.ExitStack() as stack:
        _patch(stack, parent, list_name, nn.ModuleList([blocks[layer.source] for layer in sel.layers]))
        for position, layer in enumerate(sel.layers):
            _patch_layer(stack, dims, blocks[layer.source], sel, position)
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                _patch(stack, module, "normalized_shape", (sel.resolved.n_embd,))
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
        out = functional_call(model, tensors, args=(), kwargs=inputs, strict=True)
    return out.logits


def masked_copy(model: Any, subnetwork: SubNetwork, order: Order = "first-k") -> Any:
    """A copy of `model` computing `subnetwork` by zeroing what it drops (layers, heads, groups, neurons).

    The output-projection weights reading dropped heads, the down-projection weights reading dropped neurons,
    and both output projections (with biases) of dropped layers become zero. Embedding width and head size
    cannot be masked exactly (norm statistics and attention scaling change): use `sliced_forward` for those.
    """
    dims, paths = inspect_model(model)
    sel = select(dims, subnetwork, order)
    r = sel.resolved
    if r.n_embd != dims.n_embd or r.head_size != dims.head_size:
        raise ValueError(
            f"Masking cannot express n_embd={r.n_embd} or head_size={r.head_size} smaller than the "
            f"super-network's {dims.n_embd} and {dims.head_size}. Use sliced_forward for those sub-networks."
        )
    masked = copy.deepcopy(model)
    kept = {layer.source: layer for layer in sel.layers}
    d = dims.head_size

    def zero_inputs(module: Any, units: list[int], width: int) -> None:
        if not units:
            return
        index = torch.tensor(units, device=module.weight.device)
        if isinstance(module, nn.Linear):  # weight (out, in)
            module.weight.view(module.weight.shape[0], -1, width).index_fill_(1, index, 0.0)
        else:  # GPT-2's Conv1D: weight (in, out)
            module.weight.view(-1, width, module.weight.shape[-1]).index_fill_(0, index, 0.0)

    with torch.no_grad():
        for i, block in enumerate(masked.get_submodule(paths.layers)):
            attention_out = block.get_submodule(paths.attention_out)
            mlp_out = block.get_submodule(paths.mlp_out)
            layer = kept.get(i)
            if layer is None:
                for module in (attention_out, mlp_out):
                    module.weight.zero_()
                    if module.bias is not None:
                        module.bias.zero_()
                continue
            zero_inputs(attention_out, sorted(set(range(dims.n_heads)) - set(layer.heads)), d)
            zero_inputs(mlp_out, sorted(set(range(dims.intermediate_size)) - set(layer.neurons)), 1)
    return masked
