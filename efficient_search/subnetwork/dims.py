"""The super-network's dimensions, read from a Hugging Face config: plain data, no torch.

Example::

    dims = SuperDims.from_config(model.config)      # any supported causal LM config
    dims.to_dict()                                  # JSON-able, e.g. for a searcher's parameter budget
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from efficient_search.validate import check_int

# model_type -> the Hugging Face causal-LM class we slice.
SUPPORTED_ARCHS: dict[str, str] = {
    "gpt2": "GPT2LMHeadModel",
    "gpt_neox": "GPTNeoXForCausalLM",
    "llama": "LlamaForCausalLM",
}

# Rotary variants whose inverse frequencies are element-wise in the default ones, so a smaller head size with
# a rescaled base keeps the super-network's frequencies exactly (see `selection.head_dims`).
HEAD_SIZE_ROPE_TYPES = ("default", "linear", "llama3")

# Attribute a sub-network's config carries when its layers differ from what a stock config can express.
LAYOUT_ATTRIBUTE = "subnetwork_layout"


def known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` as keyword arguments of dataclass ``cls``; unknown keys raise a ValueError."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} fields {unknown}; expected some of {sorted(names)}.")
    return dict(data)


def unsupported_arch_error(model_type: object) -> ValueError:
    supported = ", ".join(f"{name!r} ({cls})" for name, cls in SUPPORTED_ARCHS.items())
    return ValueError(
        f"Sub-networks support the model types {supported}, but got model_type={model_type!r}. "
        "Use one of these Hugging Face causal LMs as the super-network."
    )


@dataclass(frozen=True)
class SuperDims:
    """Dimensions of a uniform super-network (every layer the same size)."""

    arch: str
    """Hugging Face `model_type`: one of `SUPPORTED_ARCHS`."""
    n_layer: int
    n_embd: int
    """Width of the residual stream (embedding channels)."""
    intermediate_size: int
    """MLP hidden width per layer."""
    n_heads: int
    """Query heads per layer."""
    n_query_groups: int
    """Key/value heads per layer (equal to `n_heads` without grouped-query attention)."""
    head_size: int
    vocab_size: int
    tied_embeddings: bool
    """Whether the LM head shares the token embedding matrix (counted once)."""
    n_positions: int = 0
    """Rows of a learned position embedding (GPT-2); 0 for rotary models."""
    attention_bias: bool = False
    mlp_bias: bool = False
    rope_type: str | None = None
    """Rotary embedding type, or None without rotary embeddings."""
    partial_rotary_factor: float = 1.0
    """Fraction of each head's dimensions that rotate (GPT-NeoX/Pythia use 0.25)."""

    def __post_init__(self) -> None:
        if self.arch not in SUPPORTED_ARCHS:
            raise unsupported_arch_error(self.arch)
        for name in ("n_layer", "n_embd", "intermediate_size", "n_heads", "n_query_groups", "head_size",
                     "vocab_size"):
            value = getattr(self, name)
            check_int(f"SuperDims.{name}", value, min=1, expected="a positive int")
        if self.n_heads % self.n_query_groups:
            raise ValueError(
                f"`n_heads` must be a multiple of `n_query_groups`, but got n_heads={self.n_heads} and "
                f"n_query_groups={self.n_query_groups}."
            )

    @property
    def heads_per_group(self) -> int:
        return self.n_heads // self.n_query_groups

    @property
    def gated_mlp(self) -> bool:
        """Llama's MLP has gate, up and down projections; GPT-2's and GPT-NeoX's have two."""
        return self.arch == "llama"

    @property
    def norm_params_per_channel(self) -> int:
        """LayerNorm has a weight and a bias per channel, RMSNorm only a weight."""
        return 1 if self.arch == "llama" else 2

    @property
    def head_size_from_width(self) -> bool:
        """GPT-2 and GPT-NeoX derive the head size as hidden / heads; Llama stores `head_dim`."""
        return self.arch in ("gpt2", "gpt_neox")

    def rotary_dims(self, head_size: int) -> int:
        """Rotating dimensions of a head of `head_size` (Hugging Face's int(head_size * factor))."""
        return 0 if self.rope_type is None else int(head_size * self.partial_rotary_factor)

    @classmethod
    def from_config(cls, config: Any) -> SuperDims:
        """Read the dimensions of a GPT-2, GPT-NeoX or Llama config (`model.config`)."""
        arch = getattr(config, "model_type", None)
        if arch not in SUPPORTED_ARCHS:
            raise unsupported_arch_error(arch)
        if getattr(config, LAYOUT_ATTRIBUTE, None):
            raise ValueError(
                "This config describes a sub-network with per-layer sizes (it has "
                f"`{LAYOUT_ATTRIBUTE}`), but a super-network must be uniform. Use the original model as the "
                "super-network."
            )
        vocab = int(config.vocab_size)
        tied = bool(getattr(config, "tie_word_embeddings", False))
        if arch == "gpt2":
            if getattr(config, "add_cross_attention", False):
                raise ValueError("GPT-2 with cross-attention (`add_cross_attention=True`) is not supported.")
            n_embd, n_heads = int(config.n_embd), int(config.n_head)
            return cls(
                arch=arch, n_layer=int(config.n_layer), n_embd=n_embd,
                intermediate_size=int(config.n_inner or 4 * n_embd), n_heads=n_heads, n_query_groups=n_heads,
                head_size=n_embd // n_heads, vocab_size=vocab, tied_embeddings=tied,
                n_positions=int(config.n_positions), attention_bias=True, mlp_bias=True,
            )
        rope = dict(getattr(config, "rope_parameters", None) or {})
        hidden, n_heads = int(config.hidden_size), int(config.num_attention_heads)
        if arch == "gpt_neox":
            return cls(
                arch=arch, n_layer=int(config.num_hidden_layers), n_embd=hidden,
                intermediate_size=int(config.intermediate_size), n_heads=n_heads, n_query_groups=n_heads,
                head_size=hidden // n_heads, vocab_size=vocab, tied_embeddings=tied,
                attention_bias=bool(config.attention_bias), mlp_bias=True,
                rope_type=str(rope.get("rope_type", "default")),
                partial_rotary_factor=float(rope.get("partial_rotary_factor", 1.0)),
            )
        return cls(
            arch=arch, n_layer=int(config.num_hidden_layers), n_embd=hidden,
            intermediate_size=int(config.intermediate_size), n_heads=n_heads,
            n_query_groups=int(getattr(config, "num_key_value_heads", None) or n_heads),
            head_size=int(getattr(config, "head_dim", None) or hidden // n_heads), vocab_size=vocab,
            tied_embeddings=tied, attention_bias=bool(config.attention_bias),
            mlp_bias=bool(getattr(config, "mlp_bias", False)),
            # Llama rotates whole heads whatever `partial_rotary_factor` says.
            rope_type=str(rope.get("rope_type", "default")), partial_rotary_factor=1.0,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuperDims:
        return cls(**known_fields(cls, data))
