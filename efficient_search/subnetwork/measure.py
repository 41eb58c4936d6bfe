"""Measure an `Importance` from activations on a calibration batch (forward hooks, one forward pass).

Scores, each averaged over the real tokens (`attention_mask` == 1):

- embedding channel: mean |output| of every norm reading the residual stream (both norms of each block and the
  final norm), summed over those norms;
- MLP neuron: mean |activation| entering the down projection;
- query head: mean L2 norm of the head's output entering the attention output projection; a key/value group
  scores the sum of its heads;
- layer (block importance): mean of 1 - cos(block input, block output) over tokens; a block that barely
  changes the residual stream scores near 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from efficient_search.subnetwork.architectures import inspect_model
from efficient_search.subnetwork.importance import Importance


def _first_tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else value[0]


@torch.no_grad()
def compute_importance(model: Any, input_ids: torch.Tensor,
                       attention_mask: torch.Tensor | None = None) -> Importance:
    """Score every prunable unit of `model` on the batch `input_ids` (B, T).

    Example::

        importance = compute_importance(model, tokenizer(texts, return_tensors="pt", padding=True).input_ids)
        sub = extract_subnetwork(model, SubNetwork(n_embd=256), order=importance)
    """
    dims, paths = inspect_model(model)
    if input_ids.ndim != 2:
        raise ValueError(f"`input_ids` must have shape (batch, seq_len), but got {tuple(input_ids.shape)}.")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    weights = mask.to(device=input_ids.device, dtype=torch.float32)  # (B, T)
    n_tokens = weights.sum()

    def token_mean(x: torch.Tensor) -> torch.Tensor:  # (B, T, ...) -> (...)
        w = weights.view(*weights.shape, *([1] * (x.ndim - 2)))
        return (x.float() * w).sum(dim=(0, 1)) / n_tokens

    embedding = torch.zeros(dims.n_embd, dtype=torch.float32, device=input_ids.device)
    neurons: list[torch.Tensor] = [torch.empty(0)] * dims.n_layer
    heads: list[torch.Tensor] = [torch.empty(0)] * dims.n_layer
    layers = [0.0] * dims.n_layer
    block_inputs: dict[int, torch.Tensor] = {}

    def on_norm(_module: nn.Module, _args: Any, output: Any) -> None:
        nonlocal embedding
        embedding = embedding + token_mean(_first_tensor(output).abs())

    def on_mlp_out(i: int) -> Any:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            neurons[i] = token_mean(args[0].abs())
        return hook

    def on_attention_out(i: int) -> Any:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]  # (B, T, n_heads * head_size)
            heads[i] = token_mean(x.float().view(*x.shape[:2], dims.n_heads, -1).norm(dim=-1))
        return hook

    def on_block_in(i: int) -> Any:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            block_inputs[i] = args[0] if args else kwargs["hidden_states"]
        return hook

    def on_block_out(i: int) -> Any:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            out = _first_tensor(output)
            cos = nn.functional.cosine_similarity(block_inputs.pop(i).float(), out.float(), dim=-1)  # (B, T)
            layers[i] = float(token_mean(1.0 - cos))
        return hook

    blocks = model.get_submodule(paths.layers)
    handles = [model.get_submodule(paths.final_norm).register_forward_hook(on_norm)]
    for i, block in enumerate(blocks):
        handles += [block.get_submodule(name).register_forward_hook(on_norm) for name in paths.block_norms]
        handles.append(block.get_submodule(paths.mlp_out).register_forward_pre_hook(on_mlp_out(i)))
        handles.append(block.get_submodule(paths.attention_out).register_forward_pre_hook(on_attention_out(i)))
        handles.append(block.register_forward_pre_hook(on_block_in(i), with_kwargs=True))
        handles.append(block.register_forward_hook(on_block_out(i)))
    was_training = model.training
    try:
        model.eval()
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    per_group = dims.heads_per_group
    return Importance(
        embedding=tuple(embedding.tolist()),
        neurons=tuple(tuple(n.tolist()) for n in neurons),
        heads=tuple(tuple(h.tolist()) for h in heads),
        groups=tuple(tuple(h.view(dims.n_query_groups, per_group).sum(dim=-1).tolist()) for h in heads),
        layers=tuple(layers),
    )
