"""A token-budget training loop for causal language models, with optional distillation.

Every rank draws its micro-batches from one seeded permutation of the packed training blocks per
pass, indexed by the global sequence number, so a resumed run sees exactly the batches it would
have seen. Every ``report_every`` updates the loop evaluates and reports; every
``checkpoint_every``-th report (and the last) also writes the full training state (DeepSpeed
shards or one file) as the checkpoint, so a paused or failed trial resumes from there.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from efficient_search.tasks.lm_eval import mean_token_loss, perplexity
from efficient_search.train.distill import distillation_loss, topk_distillation_loss
from efficient_search.train.schedules import lr_multiplier
from efficient_search.train.session import TrialSession, new_checkpoint_dir
from efficient_search.train.strategy import Prepared, prepare


@dataclass(frozen=True)
class Distillation:
    """How the teacher teaches: online (a frozen model in each worker) or offline (top-k logits)."""

    teacher: nn.Module | None = None
    topk: Any = None
    """A :class:`~efficient_search.train.teacher_logits.TeacherTopK` over the training blocks."""
    alpha: float = 0.3
    beta: float = 0.7
    temperature: float = 10.0
    kind: str = "forward_kl"

    @property
    def mode(self) -> str:
        return "online" if self.teacher is not None else "offline" if self.topk is not None else "none"


@dataclass(frozen=True)
class Optimisation:
    """AdamW, the schedule and the update's shape."""

    lr: float = 3e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    schedule: str = "wsd"
    warmup_steps: int | None = None
    """None: 5 % of the updates."""
    cooldown_fraction: float = 0.2
    micro_batch: int = 8
    grad_accum: int = 1
    grad_clip: float | None = 1.0
    precision: str = "fp32"


@dataclass(frozen=True)
class TokenBudget:
    max_tokens: int
    seq_len: int
    reports: int = 8


def effective_grad_accum(session: TrialSession, grad_accum: int) -> int:
    """DeepSpeed's ``gradient_accumulation_steps`` wins over the task's when the spec sets it."""
    if session.strategy == "deepspeed" and session.deepspeed_config:
        return int(session.deepspeed_config.get("gradient_accumulation_steps", grad_accum))
    return grad_accum


def plan_steps(budget: TokenBudget, optim: Optimisation, world_size: int) -> tuple[int, int, int]:
    """(updates, tokens per update, warmup updates) of the run; raises when the budget is too small."""
    per_step = optim.micro_batch * optim.grad_accum * world_size * budget.seq_len
    steps = budget.max_tokens // per_step
    if steps < 2:
        raise ValueError(f"`task_options.max_tokens` {budget.max_tokens} buys {steps} update(s) of "
                         f"{per_step} tokens ({world_size} worker(s) x batch_size {optim.micro_batch} x "
                         f"grad_accum {optim.grad_accum} x seq_len {budget.seq_len}). Fix: max_tokens >= "
                         f"{2 * per_step}.")
    warmup = max(1, round(0.05 * steps)) if optim.warmup_steps is None else optim.warmup_steps
    if warmup >= steps:
        raise ValueError(f"`warmup_steps` {warmup} is not below the run's {steps} updates. Fix: warmup_steps "
                         f"< {steps}, or a larger max_tokens.")
    return steps, per_step, warmup


class BlockSampler:
    """The training blocks of one micro-batch, from a seeded permutation per pass over the data."""

    def __init__(self, n_blocks: int, seed: int):
        self.n_blocks = n_blocks
        self.seed = seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(
                self.n_blocks, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))}
        return self._perms[epoch]

    def indices(self, first: int, count: int) -> torch.Tensor:
        """Block indices of global sequence numbers ``first .. first + count - 1``."""
        numbers = torch.arange(first, first + count)
        out = torch.empty(count, dtype=torch.long)
        for epoch in numbers.div(self.n_blocks, rounding_mode="floor").unique().tolist():
            inside = numbers.div(self.n_blocks, rounding_mode="floor") == epoch
            out[inside] = self._perm(int(epoch))[numbers[inside] % self.n_blocks]
        return out


def teacher_tokens(kd: Distillation, tokens: int) -> int:
    """Tokens the teacher has read: the student's online; the whole training set once offline."""
    if kd.teacher is not None:
        return tokens
    return int(kd.topk.n_blocks * kd.topk.seq_len) if kd.topk is not None else 0


def mean_over_ranks(value: float, session: TrialSession) -> float:
    """``value`` averaged over the workers (each saw its own micro-batches)."""
    if session.world_size == 1 or not torch.distributed.is_initialized():
        return value
    total = torch.tensor([value], dtype=torch.float64,
                         device=session.device if session.device.type == "cuda" else "cpu")
    torch.distributed.all_reduce(total)
    return float(total.item()) / session.world_size


def micro_batch_loss(run: Prepared, blocks: torch.Tensor, index: torch.Tensor, kd: Distillation,
                     device: torch.device) -> torch.Tensor:
    """Cross-entropy, or the distillation loss, of one micro-batch."""
    batch = blocks[index].to(device)
    inputs, labels = batch[:, :-1], batch[:, 1:]
    with run.autocast():
        logits = run.model(inputs).logits.float()
    if kd.teacher is not None:
        with torch.no_grad():
            teacher_logits = kd.teacher(inputs).logits
        return distillation_loss(logits, teacher_logits, labels, alpha=kd.alpha, beta=kd.beta,
                                 temperature=kd.temperature, kind=kd.kind)
    if kd.topk is not None:
        values, ids = kd.topk.batch(index)
        return topk_distillation_loss(logits, values.to(device), ids.to(device), labels, alpha=kd.alpha,
                                      beta=kd.beta, temperature=kd.temperature, kind=kd.kind)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def fit_tokens(model: nn.Module, session: TrialSession, seed: int, *, train_blocks: torch.Tensor,
               val_blocks: torch.Tensor, budget: TokenBudget, optim: Optimisation, kd: Distillation,
               n_params: int, teacher_params: int = 0, extra: Mapping[str, Any] | None = None,
               export: Callable[[nn.Module, str], None] | None = None, checkpoint_every: int = 1) -> None:
    """Train ``model`` for ``budget.max_tokens`` tokens, reporting ``budget.reports`` times.

    Reports ``val_loss``, ``val_perplexity``, ``init_val_loss`` (before any update),
    ``train_loss`` (mean over ranks), ``params``, ``fidelity/tokens``, ``fidelity/step``,
    ``cost/flops`` (6·N·D), ``cost/teacher_flops`` (2·N_teacher times the tokens the teacher read:
    the student's online, the whole training set once offline), ``cost/seconds`` and ``lr``, plus
    ``extra``. ``export(module, folder)`` adds
    files (e.g. a ``save_pretrained`` copy) to the chief's checkpoint. Every ``checkpoint_every``-th
    report and the last carry a checkpoint.
    """
    optim = Optimisation(**{**optim.__dict__, "grad_accum": effective_grad_accum(session, optim.grad_accum)})
    steps, tokens_per_step, warmup = plan_steps(budget, optim, session.world_size)
    report_every = math.ceil(steps / budget.reports)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": optim.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=optim.lr, betas=optim.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(
        optim.schedule, total_steps=steps, warmup_steps=warmup, cooldown_fraction=optim.cooldown_fraction))
    run = prepare(model, optimizer, session, optim.micro_batch, grad_accum=optim.grad_accum,
                  grad_clip=optim.grad_clip, scheduler=scheduler, precision=optim.precision)
    if run.grad_accum != optim.grad_accum:
        raise ValueError(f"DeepSpeed accumulates {run.grad_accum} micro-batches but the run planned "
                         f"{optim.grad_accum}. Fix: set task_options.grad_accum instead of DeepSpeed's batch "
                         "sizes.")
    if kd.teacher is not None:
        kd.teacher.to(session.device).eval().requires_grad_(False)
    step, seconds = 0, 0.0
    if session.resume_dir:
        state = run.load(session.resume_dir)
        step, seconds, init_loss = int(state["step"]), float(state["seconds"]), float(state["init_val_loss"])
    else:  # where the initialisation starts: inherited weights may begin far below random ones
        init_loss = mean_token_loss(run.module, val_blocks, batch_size=optim.micro_batch)
    sampler = BlockSampler(len(train_blocks), seed)
    sequences_per_step = optim.micro_batch * optim.grad_accum * session.world_size
    losses: list[float] = []
    started = time.perf_counter()
    while step < steps:
        for micro in range(optim.grad_accum):
            first = (step * sequences_per_step + (micro * session.world_size + session.world_rank)
                     * optim.micro_batch)
            loss = micro_batch_loss(run, train_blocks, sampler.indices(first, optim.micro_batch), kd,
                                    session.device)
            run.step(loss)
            losses.append(loss.item())
        step += 1
        if step % report_every and step < steps:
            continue
        seconds += time.perf_counter() - started
        val_loss = mean_token_loss(run.module, val_blocks, batch_size=optim.micro_batch)
        tokens = step * tokens_per_step
        folder = None
        if (step // report_every) % checkpoint_every == 0 or step >= steps:
            folder = new_checkpoint_dir()
            run.save(folder, {"step": step, "seconds": seconds, "init_val_loss": init_loss}, session)
            if export is not None and session.is_chief:
                export(run.module, os.path.join(folder, "model"))
        train_loss = mean_over_ranks(sum(losses) / len(losses), session)
        metrics = {
            **(extra or {}),
            "val_loss": val_loss, "val_perplexity": perplexity(val_loss), "init_val_loss": init_loss,
            "train_loss": train_loss, "params": n_params, "distill": kd.mode,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "fidelity/tokens": tokens, "fidelity/step": step,
            "cost/flops": 6.0 * n_params * tokens,
            "cost/teacher_flops": 2.0 * teacher_params * teacher_tokens(kd, tokens),
            "cost/seconds": seconds,
        }
        if session.is_chief:
            print(f"efficient-search: pretrain step {step}/{steps} tokens {tokens:,} val_loss {val_loss:.4f} "
                  f"train_loss {metrics['train_loss']:.4f} ({seconds:.0f} s)", flush=True)
        session.report(metrics, checkpoint_dir=folder, every_rank=session.strategy == "deepspeed")
        losses.clear()
        started = time.perf_counter()
