"""Wrap a model and optimiser for the trial's strategy: single process, DDP or DeepSpeed.

``prepare`` returns a :class:`Prepared` whose ``step(loss)`` takes one micro-batch's loss and
updates the weights at every gradient-accumulation boundary (clipping and the learning-rate
schedule included), and whose ``save``/``load`` write and read the whole training state:
DeepSpeed's own checkpoint (every rank writes its shard) or one ``torch.save`` file.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
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
PRECISIONS = ("fp32", "bf16", "fp16")
#: DeepSpeed batch keys the run derives from the task's batch size and the number of workers.
TASK_OWNED_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu")
STATE_FILE = "training_state.pt"
DEEPSPEED_TAG = "state"


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, nested mappings merged key by key."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _deepspeed_config_names() -> set[str]:
    """Config key names DeepSpeed defines as constants (used to catch misspelt top-level keys)."""
    import importlib

    names: set[str] = set()
    for module in ("runtime.constants", "runtime.zero.config", "runtime.precision_config",
                   "runtime.model_checkpointing.constants", "runtime.swap_tensor.constants",
                   "runtime.data_pipeline.constants", "runtime.activation_checkpointing.config",
                   "profiling.constants", "comm.constants", "monitor.config", "elasticity.constants",
                   "autotuning.constants", "compression.constants", "nebula.constants"):
        try:
            values = vars(importlib.import_module(f"deepspeed.{module}")).items()
        except ImportError:
            continue
        names.update(v for k, v in values if k.isupper() and isinstance(v, str) and v.isidentifier())
    return names


def check_deepspeed_config(config: Mapping[str, Any], *, micro_batch_size: int = 1) -> None:
    """Let DeepSpeed parse ``config`` (over the defaults) now, before any worker starts.

    DeepSpeed's own validation rejects bad keys inside its sections. It ignores unknown
    top-level keys, so one that is a near miss of a key DeepSpeed defines is refused here.
    """
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.config import DeepSpeedConfig

    for key in TASK_OWNED_KEYS:
        if key in config:
            raise ValueError(f"`resources.deepspeed_config.{key}` ({config[key]!r}) is set by the run "
                             "itself: the task's batch_size per worker, times gradient_accumulation_steps, "
                             "times num_workers. Fix: remove it and set the batch size in the search space "
                             "or task options.")
    names = _deepspeed_config_names()
    for key in config:
        close = difflib.get_close_matches(str(key), sorted(names), n=1, cutoff=0.85)
        if key not in names and close:
            raise ValueError(f"DeepSpeed does not know `resources.deepspeed_config.{key}` (value "
                             f"{config[key]!r}) and would silently ignore it. Did you mean {close[0]!r}? "
                             "Fix: rename it.")
    merged = merge_config(DEFAULT_DEEPSPEED_CONFIG, {"train_micro_batch_size_per_gpu": micro_batch_size})
    merged = merge_config(merged, config)
    try:
        DeepSpeedConfig(merged)
    except Exception as exc:  # pydantic ValidationError, AssertionError, ValueError...
        detail = " ".join(str(exc).split())
        raise ValueError(f"DeepSpeed rejects `resources.deepspeed_config` {dict(config)!r}: {detail} "
                         "Fix: correct or remove the named key (see DeepSpeed's config reference).") \
            from exc


def zero_stage(config: Mapping[str, Any] | None) -> int:
    """The ZeRO stage a DeepSpeed config asks for (DeepSpeed's default here: 1)."""
    zero = (config or {}).get("zero_optimization", {})
    return int(zero.get("stage", DEFAULT_DEEPSPEED_CONFIG["zero_optimization"]["stage"])) \
        if isinstance(zero, Mapping) else 1


class Prepared:
    """A model and optimiser ready for the strategy; ``step(loss)`` takes one micro-batch."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, engine: Any = None, *,
                 grad_accum: int = 1, grad_clip: float | None = None, scheduler: Any = None,
                 precision: str = "fp32", device: torch.device | None = None):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self._engine = engine
        self._grad_accum = grad_accum
        self._grad_clip = grad_clip
        self._precision = precision
        self._device = device or torch.device("cpu")
        self._micro = 0
        self.on_step: list[Any] = []  # callables run after every update

    @property
    def module(self) -> nn.Module:
        """The bare model (for checkpoints and evaluation)."""
        inner = self._engine.module if self._engine is not None else self.model
        return getattr(inner, "module", inner)

    @property
    def grad_accum(self) -> int:
        """Micro-batches per update (DeepSpeed's own setting when it runs)."""
        if self._engine is not None:
            return int(self._engine.gradient_accumulation_steps())
        return self._grad_accum

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast for DDP and single-process runs; DeepSpeed casts the model itself."""
        if self._precision == "bf16" and self._engine is None:
            return torch.autocast(self._device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, loss: torch.Tensor) -> bool:
        """Backward one micro-batch; update (clip, step, schedule) at the accumulation boundary.

        Returns whether the weights changed.
        """
        if self._engine is not None:
            boundary = bool(self._engine.is_gradient_accumulation_boundary())
            self._engine.backward(loss)
            self._engine.step()
        else:
            (loss / self._grad_accum).backward()
            self._micro += 1
            boundary = self._micro % self._grad_accum == 0
            if boundary:
                if self._grad_clip:
                    nn.utils.clip_grad_norm_(self.model.parameters(), self._grad_clip)
                self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        if boundary:
            for callback in self.on_step:
                callback()
        return boundary

    def save(self, folder: str, client_state: Mapping[str, Any], session: TrialSession) -> None:
        """Write the training state into ``folder`` (every rank calls this)."""
        if self._engine is not None:
            self._engine.save_checkpoint(folder, tag=DEEPSPEED_TAG, client_state=dict(client_state))
        elif session.is_chief:
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict() if self.scheduler else {},
                        "client": dict(client_state)}, os.path.join(folder, STATE_FILE))

    def load(self, folder: str) -> dict[str, Any]:
        """Restore the state ``save`` wrote; returns its ``client_state``."""
        if self._engine is not None:
            path, client = self._engine.load_checkpoint(folder, tag=DEEPSPEED_TAG)
            if path is None:
                raise ValueError(f"No DeepSpeed checkpoint under {folder!r}: the run cannot resume.")
            return dict(client or {})
        state = torch.load(os.path.join(folder, STATE_FILE), weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        return dict(state["client"])


def prepare(model: nn.Module, optimizer: torch.optim.Optimizer, session: TrialSession,
            micro_batch_size: int, *, grad_accum: int = 1, grad_clip: float | None = None,
            scheduler: Any = None, precision: str = "fp32") -> Prepared:
    """Move ``model`` to the session's device and wrap it for DDP or DeepSpeed.

    For DeepSpeed, ``grad_accum``, ``grad_clip`` and ``precision`` become config defaults that
    the spec's ``deepspeed_config`` may override, and ``scheduler`` steps inside the engine.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)}, but got {precision!r}.")
    if precision == "fp16" and session.device.type != "cuda":
        raise ValueError("`precision` fp16 needs a GPU; CPU runs have no fp16 training. Fix: bf16 or fp32.")
    model = model.to(session.device)
    if session.strategy == "deepspeed":
        # Only what the run asks for: DeepSpeed's defaults stay untouched otherwise.
        settings: dict[str, Any] = {"train_micro_batch_size_per_gpu": micro_batch_size,
                                    "gradient_accumulation_steps": grad_accum}
        if grad_clip:
            settings["gradient_clipping"] = float(grad_clip)
        if precision != "fp32":
            settings[precision] = {"enabled": True}
        return _deepspeed(model, optimizer, session, settings, scheduler)
    if precision == "fp16":
        raise ValueError("`precision` fp16 is supported with strategy deepspeed only. Fix: bf16.")
    if session.world_size > 1:
        device_ids = [session.device.index] if session.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return Prepared(model, optimizer, grad_accum=grad_accum, grad_clip=grad_clip, scheduler=scheduler,
                    precision=precision, device=session.device)


def _deepspeed(model: nn.Module, optimizer: torch.optim.Optimizer, session: TrialSession,
               settings: Mapping[str, Any], scheduler: Any) -> Prepared:
    # DeepSpeed picks its accelerator at import time; on CPU workers it must be told.
    if session.device.type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    config = merge_config(merge_config(DEFAULT_DEEPSPEED_CONFIG, settings), session.deepspeed_config or {})
    engine, ds_optimizer, _, ds_scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config, dist_init_required=False
    )
    return Prepared(engine, ds_optimizer, engine=engine, scheduler=ds_scheduler, device=session.device)

