"""Segment Anything fine-tuning with box prompts (QTT-SEG's task): the ``sam`` task.

The mask decoder learns (image and prompt encoders frozen), optionally with LoRA adapters on the
image encoder's ``qkv`` projections; the loss is BCE + Dice on one mask per box, boxes are drawn
around ground-truth objects with random padding, and IoU and Dice on held-out images are reported
after every epoch with ``fidelity/epoch`` and ``cost/seconds``, plus a checkpoint, so schedulers may
pause and continue trials.

    task: sam
    task_options: {model: tiny, data: nuclei, epochs: 4}          # or model: vit_b, checkpoint: PATH
    search_space: sam                                             # the default

Hyperparameters (trial config first, then ``task_options``): ``lr``, ``weight_decay`` (AdamW),
``batch_size`` (images per step), ``lora``, ``lora_rank``, ``lora_alpha``, ``lora_dropout``,
``hflip``, ``vflip``, ``rot90``, ``scheduler`` (cosine|step|constant, stepped per update) with
``warmup_fraction``, ``min_lr_ratio`` (cosine), ``step_epochs`` and ``gamma`` (step); ``epochs`` as a
fidelity; other trial-config keys are refused. Options: ``model`` (tiny|vit_b|vit_l|vit_h),
``checkpoint`` (a SAM ``state_dict`` file; needed for the ViTs), ``data`` (``nuclei``: stardist's
nuclei cut into ``tile_size`` tiles, or a folder, see :mod:`efficient_search.tasks.sam_data`) split by
``val_fraction`` and ``data_seed``, ``boxes`` (instance|component), ``box_padding`` (largest random
padding per side, as a fraction of the box's side), ``max_prompts`` (boxes per training image).

Reports ``val_iou`` (the default metric), ``val_dice``, ``val_loss`` and ``train_loss``; IoU and Dice
pool the pixels of every validation box at the model's input resolution, padding excluded.
"""

from __future__ import annotations

import difflib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from efficient_search.tasks import Task, register_task
from efficient_search.tasks.sam_batches import Batch, Sample, make_batch, to_samples
from efficient_search.tasks.sam_data import find_pairs, load_pairs, nuclei_folder
from efficient_search.tasks.sam_loss import MaskScores, bce_dice_loss
from efficient_search.tasks.sam_model import MODELS, BoxPromptedSam, LoraSettings, build_sam
from efficient_search.tasks.sam_prompts import BOX_MODES
from efficient_search.train.memory import ActivationMeter, peak_memory_bytes
from efficient_search.train.schedules import lr_multiplier
from efficient_search.train.session import TrialSession, new_checkpoint_dir
from efficient_search.train.strategy import Prepared, prepare

CHECKPOINT_FILE = "state.pt"
SCHEDULERS = ("cosine", "step", "constant")
#: Hyperparameters a trial may set, with their defaults (also valid ``task_options``).
HYPERPARAMETERS: dict[str, Any] = {
    "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 4,
    "lora": False, "lora_rank": 8, "lora_alpha": 16.0, "lora_dropout": 0.0,
    "hflip": False, "vflip": False, "rot90": False,
    "scheduler": "cosine", "warmup_fraction": 0.0, "min_lr_ratio": 0.0, "step_epochs": 1, "gamma": 0.5,
}
#: Trial-config keys besides the hyperparameters: fidelities.
FIDELITY_KEYS = ("epochs",)
OPTIONS: dict[str, Any] = {
    "model": "tiny", "checkpoint": None, "data": "nuclei", "tile_size": 128, "val_fraction": 0.25,
    "data_seed": 0, "boxes": "instance", "box_padding": 0.1, "max_prompts": 16, "epochs": 4,
    **HYPERPARAMETERS,
}
#: name -> (rule, test)
_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "lr": ("a number > 0", lambda v: _number(v) and v > 0),
    "weight_decay": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "batch_size": ("an int >= 1", lambda v: _integer(v) and v >= 1),
    "lora": ("a bool", lambda v: isinstance(v, (bool, np.bool_))),
    "lora_rank": ("an int >= 1", lambda v: _integer(v) and v >= 1),
    "lora_alpha": ("a number > 0", lambda v: _number(v) and v > 0),
    "lora_dropout": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "hflip": ("a bool", lambda v: isinstance(v, (bool, np.bool_))),
    "vflip": ("a bool", lambda v: isinstance(v, (bool, np.bool_))),
    "rot90": ("a bool", lambda v: isinstance(v, (bool, np.bool_))),
    "scheduler": (f"one of {', '.join(SCHEDULERS)}", lambda v: v in SCHEDULERS),
    "warmup_fraction": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "min_lr_ratio": ("a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1),
    "step_epochs": ("an int >= 1", lambda v: _integer(v) and v >= 1),
    "gamma": ("a number in (0, 1]", lambda v: _number(v) and 0 < v <= 1),
    "epochs": ("an int >= 1", lambda v: _integer(v) and v >= 1),
}


def _integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _number(value: Any) -> bool:
    return (_integer(value) or isinstance(value, (float, np.floating))) and math.isfinite(value)


def check_hyperparameters(values: Mapping[str, Any], where: str) -> None:
    """Raise a ValueError naming the first value that breaks its rule (``where``: its origin)."""
    for name, value in values.items():
        if name in _RULES and not _RULES[name][1](value):
            raise ValueError(f"`{name}` ({where}) must be {_RULES[name][0]}, but got {value!r}. "
                             f"Fix: e.g. {name}: {HYPERPARAMETERS.get(name, OPTIONS.get(name))!r}.")


def check_options(options: Mapping[str, Any]) -> None:
    """Checks of the resolved ``task_options`` beyond their types (run before any trial starts)."""
    if options["model"] not in MODELS:
        raise ValueError(f"`task_options.model` must be one of {', '.join(MODELS)}, but got "
                         f"{options['model']!r}.")
    checkpoint = options["checkpoint"]
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise TypeError(f"`task_options.checkpoint` must be a path (str) or null, but got {checkpoint!r}.")
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise ValueError(f"`task_options.checkpoint` {checkpoint!r} is not a file. Fix: the path of a SAM "
                         f"{options['model']} state_dict (.pth).")
    if options["model"] != "tiny" and checkpoint is None:
        raise ValueError(f"`task_options.checkpoint` is needed for model {options['model']!r}: no SAM "
                         "weights ship with Python packages. Fix: set it to Meta's checkpoint file (e.g. "
                         "sam_vit_b_01ec64.pth), or use model 'tiny'.")
    if options["boxes"] not in BOX_MODES:
        raise ValueError(f"`task_options.boxes` must be one of {', '.join(BOX_MODES)}, but got "
                         f"{options['boxes']!r}.")
    if not 0 <= options["box_padding"] <= 1:
        raise ValueError(f"`task_options.box_padding` must lie in [0, 1], but got "
                         f"{options['box_padding']!r}.")
    if not 16 <= options["tile_size"] <= 512:
        raise ValueError(f"`task_options.tile_size` must lie in [16, 512], but got {options['tile_size']!r}.")
    if options["data"] != "nuclei":
        find_pairs(options["data"])  # layout and matching, without reading the images
    check_hyperparameters({k: options[k] for k in HYPERPARAMETERS}, "task_options")


def trial_settings(params: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters and ``epochs`` of one trial: its config over the task options, checked."""
    allowed = (*HYPERPARAMETERS, *FIDELITY_KEYS)
    for key in params:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"Unknown hyperparameter `{key}` (value {params[key]!r}) in the trial config of "
                             f"task 'sam'. {hint}Valid: {', '.join(allowed)}.")
    settings = {key: params.get(key, options[key]) for key in (*HYPERPARAMETERS, "epochs")}
    if params.get("epochs") is None:
        settings["epochs"] = options["epochs"]
    check_hyperparameters(settings, "trial config or task_options")
    return settings


def data_folder(options: Mapping[str, Any]) -> str:
    """The folder of image/mask pairs that ``task_options.data`` names."""
    return str(nuclei_folder(options["tile_size"])) if options["data"] == "nuclei" else str(options["data"])


@lru_cache(maxsize=2)
def split_samples(folder: str, image_size: int, box_mode: str, val_fraction: float,
                  data_seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, val) samples with at least one object each; the split depends only on ``data_seed``."""
    pairs = load_pairs(folder)
    if len(pairs) < 2:
        raise ValueError(f"`task_options.data` {folder!r} has {len(pairs)} image/mask pair(s): at least 2 "
                         "are needed for a train/val split. Fix: add pairs.")
    order = np.random.default_rng(data_seed).permutation(len(pairs))
    n_val = min(len(pairs) - 1, max(1, round(val_fraction * len(pairs))))
    samples = to_samples([pairs[i] for i in order], image_size, box_mode)
    train = [s for s in samples[n_val:] if int(s.objects.max()) > 0]
    val = [s for s in samples[:n_val] if int(s.objects.max()) > 0]
    if not train or not val:
        raise ValueError(f"`task_options.data` {folder!r}: the {'training' if not train else 'validation'} "
                         "images hold no objects (all-zero masks). Fix: add masks with foreground, or change "
                         "`val_fraction`/`data_seed`.")
    return train, val


def lr_factor(settings: Mapping[str, Any], steps_per_epoch: int) -> Callable[[int], float]:
    """``update -> multiplier`` of the learning rate for the trial's ``scheduler`` over all its epochs."""
    total = settings["epochs"] * steps_per_epoch
    warmup = int(settings["warmup_fraction"] * total)
    if settings["scheduler"] != "step":
        return lr_multiplier(settings["scheduler"], total_steps=total, warmup_steps=warmup,
                             min_ratio=float(settings["min_lr_ratio"]))
    every, gamma = int(settings["step_epochs"]) * steps_per_epoch, float(settings["gamma"])

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return gamma ** ((step - warmup) // every)

    return factor


@torch.no_grad()
def evaluate(model: BoxPromptedSam, batches: Sequence[Batch], device: torch.device) -> dict[str, float]:
    """``val_iou``, ``val_dice`` and ``val_loss`` over every box of ``batches``."""
    model.eval()
    scores, losses, count = MaskScores(), 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        logits = model(batch.images, batch.boxes)
        scores.update(logits, batch.targets, batch.valid)
        losses += bce_dice_loss(logits, batch.targets, batch.valid).item() * len(logits)
        count += len(logits)
    model.train()
    return {**scores.compute(), "val_loss": losses / max(count, 1)}


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}


def train_sam(params: Mapping[str, Any], options: Mapping[str, Any], session: TrialSession,
              seed: int) -> None:
    """Fine-tune one configuration, reporting and checkpointing after every epoch."""
    settings = trial_settings(params, options)
    lora = LoraSettings(int(settings["lora_rank"]), float(settings["lora_alpha"]),
                        float(settings["lora_dropout"])) if settings["lora"] else None
    # The frozen weights come from the seed or the checkpoint: a resumed trial rebuilds them
    # exactly and loads only the trainable ones.
    model = BoxPromptedSam(build_sam(options["model"], options["checkpoint"], seed=seed))
    trainable = model.set_trainable(lora, seed=seed)
    train, val = split_samples(data_folder(options), model.image_size, options["boxes"],
                               float(options["val_fraction"]), int(options["data_seed"]))
    # Each worker trains on its own shard of equal size (DDP needs the same number of steps on every rank).
    usable = len(train) - len(train) % session.world_size
    if usable == 0:
        raise ValueError(f"{len(train)} training image(s) cannot be shared by {session.world_size} workers. "
                         "Fix: fewer `resources.num_workers`, or more images.")
    shard = train[session.world_rank : usable : session.world_size]
    batch_size, epochs = int(settings["batch_size"]), int(settings["epochs"])
    val_rng = np.random.default_rng((int(options["data_seed"]), 1))  # the same boxes every epoch
    val_batches = [make_batch(model, val[i : i + batch_size], val_rng, padding=options["box_padding"],
                              max_prompts=None) for i in range(0, len(val), batch_size)]

    optimizer = torch.optim.AdamW(trainable, lr=float(settings["lr"]),
                                  weight_decay=float(settings["weight_decay"]))
    steps_per_epoch = math.ceil(len(shard) / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(settings, steps_per_epoch))
    start_epoch, seconds = 0, 0.0
    if session.resume_dir:
        state = torch.load(os.path.join(session.resume_dir, CHECKPOINT_FILE), weights_only=True)
        if set(state["trainable"]) != set(_trainable_state(model)):
            raise ValueError("The checkpoint to resume from was trained with other trainable parameters (was "
                             "`lora` or `lora_rank` changed?). Fix: resume with the configuration it was "
                             "trained with.")
        model.load_state_dict(state["trainable"], strict=False)
        if state["optimizer"]:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        start_epoch, seconds = int(state["epoch"]), float(state["seconds"])
    run = prepare(model, optimizer, session, micro_batch_size=batch_size, scheduler=scheduler)
    meter = ActivationMeter(model)
    run.on_step.append(meter.step_done)

    def train_epoch(run: Prepared, rng: np.random.Generator) -> float:
        order = rng.permutation(len(shard))
        total = 0.0
        for i in range(0, len(order), batch_size):
            batch = make_batch(model, [shard[j] for j in order[i : i + batch_size]], rng,
                               padding=options["box_padding"], max_prompts=options["max_prompts"],
                               hflip=bool(settings["hflip"]), vflip=bool(settings["vflip"]),
                               rot90=bool(settings["rot90"])).to(session.device)
            loss = bce_dice_loss(run.model(batch.images, batch.boxes), batch.targets, batch.valid)
            run.step(loss)
            total += loss.item()
        return total / max(steps_per_epoch, 1)

    for epoch in range(start_epoch, epochs):
        if session.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(session.device)
        started = time.perf_counter()
        # One generator per (seed, epoch, rank): a resumed run sees the batches it would have.
        with meter.watching_on(session.device):
            train_loss = train_epoch(run, np.random.default_rng((seed, epoch, session.world_rank)))
        seconds += time.perf_counter() - started
        metrics = evaluate(model, val_batches, session.device)
        checkpoint = None
        if session.is_chief:
            checkpoint = new_checkpoint_dir()
            keeps_optimizer = session.strategy != "deepspeed"
            torch.save({"trainable": _trainable_state(run.module), "epoch": epoch + 1, "seconds": seconds,
                        "optimizer": optimizer.state_dict() if keeps_optimizer else {},
                        "scheduler": scheduler.state_dict() if keeps_optimizer else {}},
                       os.path.join(checkpoint, CHECKPOINT_FILE))
        memory = peak_memory_bytes(session.device, run.module, optimizer, meter)
        session.report({**metrics, "train_loss": train_loss, "fidelity/epoch": epoch + 1,
                        "cost/seconds": seconds, "cost/peak_memory_bytes": memory}, checkpoint_dir=checkpoint)


SAM = register_task(
    Task(
        name="sam",
        train_loop=train_sam,
        metrics={"val_iou": "max", "val_dice": "max", "val_loss": "min", "train_loss": "min"},
        default_metric="val_iou",
        default_space="sam",
        options=OPTIONS,
        positive_options=("epochs", "max_prompts", "batch_size", "lora_rank", "step_epochs"),
        fraction_options=("val_fraction",),
        nonnegative_options=("data_seed",),
        check=check_options,
    )
)

__all__ = ["HYPERPARAMETERS", "OPTIONS", "SAM", "SCHEDULERS", "check_options", "evaluate", "lr_factor",
           "split_samples", "train_sam", "trial_settings"]
