"""The open-sci-ref recipes (0.13B-1.7B) as plain data, with scaled-down CPU variants."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from efficient_search.validate import check_int, check_number

OPEN_SCI_REF_VOCAB = 50432
"""GPT-NeoX tokenizer vocabulary (padded) used by open-sci-ref's parameter formula."""


def open_sci_ref_parameters(n_layer: int, n_embd: int, ffn: int,
                            vocab_size: int = OPEN_SCI_REF_VOCAB) -> int:
    """``N = vocab * h + L * (4 h^2 + 3 h ffn)``, open-sci-ref's parameter count."""
    for name, value in (("n_layer", n_layer), ("n_embd", n_embd), ("ffn", ffn),
                        ("vocab_size", vocab_size)):
        check_int(name, value, min=1, expected="a positive int")
    return vocab_size * n_embd + n_layer * (4 * n_embd ** 2 + 3 * n_embd * ffn)


def compute_flops(n_params: float, n_tokens: float) -> float:
    """Training compute ``C = 6 * N * D`` in FLOPs."""
    for name, value in (("n_params", n_params), ("n_tokens", n_tokens)):
        check_number(name, value, min=0, expected="a finite number >= 0")
    return 6.0 * float(n_params) * float(n_tokens)


@dataclass(frozen=True)
class Recipe:
    """One dense transformer recipe: shape and optimiser settings (AdamW, WSD schedule)."""

    name: str
    n_layer: int
    n_embd: int
    ffn: int
    n_heads: int
    lr: float = 4e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 25_000
    schedule: str = "wsd"
    cooldown_fraction: float = 0.2
    """Share of the steps in the final linear decay of the warmup-stable-decay schedule."""
    seq_len: int = 4096
    vocab_size: int = OPEN_SCI_REF_VOCAB

    @property
    def n_params(self) -> int:
        return open_sci_ref_parameters(self.n_layer, self.n_embd, self.ffn, self.vocab_size)

    def flops(self, n_tokens: float) -> float:
        """Training compute of this recipe for ``n_tokens`` tokens."""
        return compute_flops(self.n_params, n_tokens)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


OPEN_SCI_REF: dict[str, Recipe] = {
    recipe.name: recipe for recipe in (
        Recipe("open-sci-ref-0.13b", n_layer=22, n_embd=512, ffn=2256, n_heads=8),
        Recipe("open-sci-ref-0.4b", n_layer=22, n_embd=1024, ffn=3840, n_heads=16),
        Recipe("open-sci-ref-1.3b", n_layer=24, n_embd=2048, ffn=5440, n_heads=32),
        Recipe("open-sci-ref-1.7b", n_layer=24, n_embd=2048, ffn=8192, n_heads=32),
        # Scaled down to run on CPU: the same optimiser settings and schedule, small shapes.
        Recipe("open-sci-ref-cpu-tiny", n_layer=4, n_embd=128, ffn=512, n_heads=4,
               warmup_steps=50, seq_len=256),
        Recipe("open-sci-ref-cpu-small", n_layer=6, n_embd=256, ffn=1024, n_heads=8,
               warmup_steps=100, seq_len=256),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; unknown names list every valid one."""
    if name not in OPEN_SCI_REF:
        close = difflib.get_close_matches(str(name), list(OPEN_SCI_REF), n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"Unknown reference recipe {name!r}. {hint}Valid: {', '.join(OPEN_SCI_REF)}.")
    return OPEN_SCI_REF[name]
