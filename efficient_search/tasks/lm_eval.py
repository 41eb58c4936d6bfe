"""Held-out language-modelling windows and the perplexity of a causal LM on them."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def token_windows(tokenizer: Any, text: str, seq_len: int, count: int) -> torch.Tensor:
    """``count`` non-overlapping windows of ``seq_len + 1`` tokens spread evenly over ``text``."""
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    available = len(ids) // (seq_len + 1)
    if available < count:
        raise ValueError(
            f"The text has {len(ids)} tokens: {available} windows of seq_len+1={seq_len + 1}, fewer "
            f"than the {count} asked for. Fix: lower the number of sequences or seq_len."
        )
    starts = torch.linspace(0, len(ids) - seq_len - 1, count).long()
    return ids[starts[:, None] + torch.arange(seq_len + 1)[None, :]]


@torch.no_grad()
def mean_token_loss(model: nn.Module, windows: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` over ``windows`` (N, T + 1)."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    device = next(model.parameters()).device
    for batch in windows.split(batch_size):
        batch = batch.to(device)
        logits = model(batch[:, :-1]).logits
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                 batch[:, 1:].reshape(-1), reduction="sum").item()
        tokens += batch[:, 1:].numel()
    model.train(was_training)
    return total / tokens


def perplexity(loss: float) -> float:
    """``exp(loss)``, capped so that a diverged model stays a finite number."""
    return math.exp(min(loss, 50.0))
