"""Wrap a model and optimiser for the trial's strategy: single process, DDP or DeepSpeed."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from efficient_search.train.session import TrialSession

DEFAULT_DEEPSPEED_CONFIG: dict[str, Any] = {
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 1,
    "zero_optimization": {"stage": 1},
    # Tasks pass plain torch optimisers (SGD, AdamW): no 70 s FusedAdam build on CPU.
    "zero_allow_untested_optimizer": True,
    "bf16": {"enabled": False},
    "steps_per_print": 10**9,
    "wall_clock_breakdown": False,
}


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Prepared:
    """A model and optimiser ready for the strategy; ``step(loss)`` does one update."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, engine: Any = None):
        self.model = model
        self.optimizer = optimizer
        self._engine = engine
        self.on_step: list[Any] = []  # callables run after every update

    @property
    def module(self) -> nn.Module:
        """The bare model (for checkpoints and evaluation)."""
        inner = self._engine.module if self._engine is not None else self.model
        return getattr(inner, "module", inner)

    def step(self, loss: torch.Tensor) -> None:
        if self._engine is not None:
            self._engine.backward(loss)
            self._engine.step()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        for callback in self.on_step:
            callback()


def prepare(model: nn.Module, optimizer: torch.optim.Optimizer, session: TrialSession,
            micro_batch_size: int) -> Prepared:
    """Move ``model`` to the session's device and wrap it for DDP or DeepSpeed."""
    model = model.to(session.device)
    if session.strategy == "deepspeed":
        return _deepspeed(model, optimizer, session, micro_batch_size)
    if session.world_size > 1:
        device_ids = [session.device.index] if session.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return Prepared(model, optimizer)


def _deepspeed(model: nn.Module, optimizer: torch.optim.Optimizer, session: TrialSession,
               micro_batch_size: int) -> Prepared:
    # DeepSpeed picks its accelerator at import time; on CPU workers it must be told.
    if session.device.type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    config = _merge(DEFAULT_DEEPSPEED_CONFIG, {"train_micro_batch_size_per_gpu": micro_batch_size})
    config = _merge(config, session.deepspeed_config or {})
    engine, ds_optimizer, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=config, dist_init_required=False
    )
    return Prepared(engine, ds_optimizer, engine=engine)
