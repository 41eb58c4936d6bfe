"""Where each supported Hugging Face causal LM keeps its modules (names relative to the LM or to a block)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from efficient_search.subnetwork.dims import SUPPORTED_ARCHS, SuperDims, unsupported_arch_error


@dataclass(frozen=True)
class ModulePaths:
    layers: str
    """The block list, e.g. ``model.layers``."""
    embed: str
    positions: str | None
    final_norm: str
    rotary: str | None
    block_norms: tuple[str, ...]
    """Norms inside a block that read the residual stream."""
    attention: str
    attention_out: str
    """Output projection; its input is the concatenated head outputs."""
    mlp_out: str
    """Down projection; its input is the MLP activations."""


PATHS: dict[str, ModulePaths] = {
    "gpt2": ModulePaths(
        layers="transformer.h", embed="transformer.wte", positions="transformer.wpe",
        final_norm="transformer.ln_f", rotary=None, block_norms=("ln_1", "ln_2"), attention="attn",
        attention_out="attn.c_proj", mlp_out="mlp.c_proj",
    ),
    "gpt_neox": ModulePaths(
        layers="gpt_neox.layers", embed="gpt_neox.embed_in", positions=None,
        final_norm="gpt_neox.final_layer_norm", rotary="gpt_neox.rotary_emb",
        block_norms=("input_layernorm", "post_attention_layernorm"), attention="attention",
        attention_out="attention.dense", mlp_out="mlp.dense_4h_to_h",
    ),
    "llama": ModulePaths(
        layers="model.layers", embed="model.embed_tokens", positions=None, final_norm="model.norm",
        rotary="model.rotary_emb", block_norms=("input_layernorm", "post_attention_layernorm"),
        attention="self_attn", attention_out="self_attn.o_proj", mlp_out="mlp.down_proj",
    ),
}


def inspect_model(model: Any) -> tuple[SuperDims, ModulePaths]:
    """The dimensions and module paths of a supported causal LM; ValueError for anything else."""
    config = getattr(model, "config", None)
    arch = getattr(config, "model_type", None)
    if arch not in SUPPORTED_ARCHS:
        raise unsupported_arch_error(arch)
    expected = SUPPORTED_ARCHS[arch]
    if type(model).__name__ != expected:
        raise ValueError(
            f"Sub-networks of {arch!r} models are taken from {expected}, but got {type(model).__name__}. "
            f"Load the model with AutoModelForCausalLM."
        )
    return SuperDims.from_config(config), PATHS[arch]
