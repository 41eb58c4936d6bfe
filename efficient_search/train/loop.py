"""The epoch loop every task shares: freezing, optimiser, resume, checkpoint, report.

A task supplies the model, one epoch of training and an evaluation; ``fit_epochs`` does the
rest the same way for every task, so fidelity keys, costs and resuming behave alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from efficient_search.fidelity import EPOCHS, TRAINABLE_LAYERS
from efficient_search.train.freezing import freeze_layers, max_fidelity
from efficient_search.train.memory import ActivationMeter, peak_memory_bytes
from efficient_search.train.schedules import lr_multiplier
from efficient_search.train.session import TrialSession, new_checkpoint_dir
from efficient_search.train.strategy import Prepared, prepare

CHECKPOINT_FILE = "state.pt"

#: (prepared model, epoch generator) -> mean training loss of the epoch
TrainEpoch = Callable[[Prepared, torch.Generator], float]
#: bare model -> validation metrics
Evaluate = Callable[[nn.Module], dict[str, float]]


def make_optimizer(params: Mapping[str, Any], trainable: list[nn.Parameter],
                   default: str = "sgd") -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over the trainable parameters only.

    Keys read from ``params``: ``optimizer`` (sgd|adamw), ``lr``, ``weight_decay``,
    ``momentum`` (sgd), ``beta1``, ``beta2`` (adamw).
    """
    lr = float(params.get("lr", 0.05 if default == "sgd" else 1e-3))
    weight_decay = float(params.get("weight_decay", 0.0))
    name = params.get("optimizer", default)
    if name == "sgd":
        return torch.optim.SGD(trainable, lr=lr, momentum=float(params.get("momentum", 0.9)),
                               weight_decay=weight_decay)
    if name == "adamw":
        betas = (float(params.get("beta1", 0.9)), float(params.get("beta2", 0.999)))
        return torch.optim.AdamW(trainable, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"`optimizer` must be 'sgd' or 'adamw', but got {name!r}.")


#: values of the ``lr_schedule`` key: the rate per epoch, from the trial's ``lr`` down
EPOCH_SCHEDULES = ("constant", "cosine")


def epoch_lr_factor(params: Mapping[str, Any], horizon: int, epochs: int | None = None,
                    deepspeed_config: Mapping[str, Any] | None = None) -> Callable[[int], float]:
    """``epoch -> multiplier`` of ``lr`` for the ``lr_schedule`` key: constant (the default), or
    cosine from 1 at the first epoch towards 0 after epoch ``horizon`` (the task's ``epochs``
    option: the whole run, however a scheduler's ``epochs`` fidelity, here ``epochs``, cuts it
    into segments, so a paused and continued trial stays on one curve)."""
    kind = params.get("lr_schedule", "constant")
    if kind not in EPOCH_SCHEDULES:
        raise ValueError(f"`lr_schedule` must be one of {', '.join(EPOCH_SCHEDULES)}, but got {kind!r}. "
                         "Fix: search over e.g. {choice: [constant, cosine]} or leave it out (constant).")
    if kind != "constant" and epochs is not None and epochs > horizon:
        raise ValueError(f"`lr_schedule: {kind}` decays over task_options.epochs ({horizon}), but this "
                         f"trial was asked for {epochs} epochs (a scheduler's epochs fidelity). Fix: set "
                         f"task_options.epochs to the scheduler's max_t ({epochs} or more).")
    if kind != "constant" and deepspeed_config and "scheduler" in deepspeed_config:
        raise ValueError(f"`lr_schedule: {kind}` and the deepspeed_config's own `scheduler` would both set "
                         "the learning rate. Fix: drop one of them.")
    return lr_multiplier(kind, total_steps=max(1, horizon))


def fit_epochs(model: nn.Module, params: Mapping[str, Any], options: Mapping[str, Any],
               session: TrialSession, seed: int, *, train_epoch: TrainEpoch, evaluate: Evaluate,
               micro_batch_size: int, default_optimizer: str = "sgd") -> None:
    """Train ``model`` epoch by epoch, reporting metrics, fidelity and cost after each.

    ``params`` holds the optimiser's keys (see ``make_optimizer``) and ``lr_schedule`` (see
    ``epoch_lr_factor``: over ``options['epochs']``, set per epoch, so a resumed or continued trial
    stays on its schedule). Fidelity keys
    in ``params``: ``trainable_layers`` (freeze all but the top z layer units;
    default all) and ``epochs`` (overrides ``options['epochs']``). Resuming from a checkpoint
    taken with fewer trainable layers keeps the weights and thaws more layers; the optimiser
    state is kept only when the trainable set is unchanged.

    ``cost/peak_memory_bytes`` is the CUDA allocator's peak on GPU, and on CPU the training
    memory of ``efficient_search.train.memory`` (parameters, gradients, optimiser state, peak
    saved activations).
    """
    total_layers = max_fidelity(model)
    requested = params.get(TRAINABLE_LAYERS)
    trainable_layers = total_layers if requested is None else int(requested)
    if not 1 <= trainable_layers <= total_layers:
        raise ValueError(
            f"`trainable_layers` {trainable_layers} does not fit this model's {total_layers} "
            "layer units. Fix: set scheduler_options.max_trainable_layers (and the rungs) to at "
            f"most {total_layers}, or search over models with more layers."
        )
    epochs = int(params.get(EPOCHS) or options["epochs"])
    lr_factor = epoch_lr_factor(params, int(options["epochs"]), epochs, session.deepspeed_config)
    optimizer = make_optimizer(params, freeze_layers(model, trainable_layers), default_optimizer)
    peak_lr = float(optimizer.param_groups[0]["lr"])  # the trial's lr, whatever a checkpoint held
    scheduled = params.get("lr_schedule", "constant") != "constant"
    start_epoch, seconds = 0, 0.0
    if session.resume_dir:
        state = torch.load(os.path.join(session.resume_dir, CHECKPOINT_FILE), weights_only=True)
        model.load_state_dict(state["model"])
        if state.get("trainable_layers") == trainable_layers and state["optimizer"]:
            optimizer.load_state_dict(state["optimizer"])
        start_epoch, seconds = int(state["epoch"]), float(state["seconds"])
    run = prepare(model, optimizer, session, micro_batch_size=micro_batch_size)
    meter = ActivationMeter(model)
    run.on_step.append(meter.step_done)

    for epoch in range(start_epoch, epochs):
        if session.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(session.device)
        if scheduled:  # constant leaves the rate alone (and to a DeepSpeed config's own scheduler)
            for group in run.optimizer.param_groups:  # DeepSpeed's optimiser shares its groups' dicts
                group["lr"] = peak_lr * lr_factor(epoch)
        started = time.perf_counter()
        # One generator per (seed, epoch, rank): a resumed run sees the batches it would have.
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1_009 + session.world_rank)
        with meter.watching_on(session.device):
            train_loss = train_epoch(run, generator)
        seconds += time.perf_counter() - started
        metrics = evaluate(run.module)
        checkpoint = None
        if session.is_chief:
            checkpoint = new_checkpoint_dir()
            state = {"model": run.module.state_dict(), "epoch": epoch + 1, "seconds": seconds,
                     "trainable_layers": trainable_layers,
                     "optimizer": optimizer.state_dict() if session.strategy != "deepspeed" else {}}
            torch.save(state, os.path.join(checkpoint, CHECKPOINT_FILE))
        session.report(
            {
                **metrics,
                "train_loss": train_loss,
                "fidelity/epoch": epoch + 1,
                "fidelity/trainable_layers": trainable_layers,
                "fidelity/max_trainable_layers": total_layers,
                "cost/seconds": seconds,
                "cost/peak_memory_bytes": peak_memory_bytes(session.device, run.module, optimizer,
                                                            meter),
            },
            checkpoint_dir=checkpoint,
        )
