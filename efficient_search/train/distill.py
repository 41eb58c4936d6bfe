"""Knowledge-distillation loss: ``alpha * CE + beta * T^2 * divergence(teacher, student)``.

Logits are ``(..., vocab)`` and labels ``(...)``, aligned position by position (shift them for
next-token prediction before calling). Both terms are averaged over the positions whose label is
not ``-100``; the divergence is summed over the vocabulary at each position. The teacher gets no
gradient.

    loss = distillation_loss(student(x).logits[:, :-1], teacher_logits[:, :-1], x[:, 1:],
                             alpha=0.3, beta=0.7, temperature=10.0)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
KINDS = ("forward_kl", "reverse_kl", "js")


def _check(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
           alpha: float, beta: float, temperature: float, kind: str) -> None:
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ValueError(
            f"The student has a vocabulary of {student_logits.shape[-1]} and the teacher of "
            f"{teacher_logits.shape[-1]}: distillation needs one tokenizer. Fix: give the student the "
            "teacher's tokenizer and vocabulary size."
        )
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"Student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape.")
    if labels.shape != student_logits.shape[:-1]:
        raise ValueError(f"`labels` {tuple(labels.shape)} must have the logits' shape without the "
                         f"vocabulary, {tuple(student_logits.shape[:-1])}.")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"`{name}` must be a finite number >= 0, but got {value!r}.")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"`temperature` must be > 0, but got {temperature!r}. Fix: e.g. 10.")
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {', '.join(KINDS)}, but got {kind!r}.")


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per position, summed over the vocabulary."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def divergence(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor,
               kind: str) -> torch.Tensor:
    """Per-position divergence between the softened distributions (``(...)``)."""
    if kind == "forward_kl":
        return _kl(teacher_log_probs, student_log_probs)
    if kind == "reverse_kl":
        return _kl(student_log_probs, teacher_log_probs)
    mixture = torch.logsumexp(torch.stack([student_log_probs, teacher_log_probs]), dim=0) - math.log(2)
    return 0.5 * _kl(teacher_log_probs, mixture) + 0.5 * _kl(student_log_probs, mixture)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, *, alpha: float = 0.3, beta: float = 0.7,
                      temperature: float = 10.0, kind: str = "forward_kl") -> torch.Tensor:
    """The scalar loss ``alpha * CE(student, labels) + beta * T^2 * D(teacher, student)``.

    ``kind``: ``forward_kl`` (KL(teacher || student), the default), ``reverse_kl``
    (KL(student || teacher)) or ``js`` (Jensen-Shannon). Positions labelled ``-100`` count in
    neither term; without any counted position the loss is 0 (still differentiable).
    """
    _check(student_logits, teacher_logits, labels, alpha, beta, temperature, kind)
    student = student_logits.float()
    student_log_probs = F.log_softmax(student / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    per_position = divergence(student_log_probs, teacher_log_probs, kind)
    return _mix(student, labels, per_position, alpha, beta, temperature)


def _mix(student: torch.Tensor, labels: torch.Tensor, per_position: torch.Tensor, alpha: float,
         beta: float, temperature: float) -> torch.Tensor:
    """``alpha * CE + beta * T^2 * mean divergence``, both over the positions not labelled -100."""
    mask = labels != IGNORE_INDEX
    count = mask.sum().clamp(min=1)
    ce = F.cross_entropy(student.reshape(-1, student.shape[-1]), labels.reshape(-1),
                         ignore_index=IGNORE_INDEX, reduction="sum") / count
    kd = (per_position * mask).sum() / count
    return alpha * ce + beta * temperature ** 2 * kd


def _check_topk(student_logits: torch.Tensor, teacher_values: torch.Tensor,
                teacher_indices: torch.Tensor, kind: str) -> None:
    if kind != "forward_kl":
        raise ValueError(
            f"`kind` {kind!r} needs the teacher's full distribution, but top-k teacher logits hold only "
            "k of it: only 'forward_kl' is defined with a truncated teacher. Fix: use kind='forward_kl', "
            "or distil online from the teacher's full logits with distillation_loss."
        )
    if teacher_values.shape != teacher_indices.shape:
        raise ValueError(f"`teacher_values` {tuple(teacher_values.shape)} and `teacher_indices` "
                         f"{tuple(teacher_indices.shape)} must have the same shape (..., k).")
    if teacher_values.shape[:-1] != student_logits.shape[:-1]:
        raise ValueError(f"The teacher's top-k {tuple(teacher_values.shape)} must have the student "
                         f"logits' positions {tuple(student_logits.shape[:-1])} followed by k.")
    vocab, k = student_logits.shape[-1], teacher_values.shape[-1]
    if not 1 <= k <= vocab:
        raise ValueError(f"The teacher's top-k has k={k}, but k must lie in [1, {vocab}] (the student's "
                         "vocabulary). Fix: recompute the teacher's top-k with a smaller k.")
    if teacher_indices.dtype.is_floating_point or teacher_indices.dtype == torch.bool:
        raise TypeError(f"`teacher_indices` must hold integer vocabulary ids, but has dtype "
                        f"{teacher_indices.dtype}.")
    # One host sync, but an out-of-range id would otherwise be a CUDA device-side assert.
    if teacher_indices.numel() and bool(((teacher_indices < 0) | (teacher_indices >= vocab)).any()):
        raise ValueError(
            f"`teacher_indices` hold ids in [{int(teacher_indices.min())}, {int(teacher_indices.max())}], "
            f"outside the student's vocabulary [0, {vocab}). Fix: give the student the teacher's tokenizer "
            "and vocabulary size, or recompute the top-k for this teacher."
        )


def topk_distillation_loss(student_logits: torch.Tensor, teacher_values: torch.Tensor,
                           teacher_indices: torch.Tensor, labels: torch.Tensor, *, alpha: float = 0.3,
                           beta: float = 0.7, temperature: float = 10.0,
                           kind: str = "forward_kl") -> torch.Tensor:
    """:func:`distillation_loss` against a teacher stored as its top-k logits per position.

    ``teacher_values`` and ``teacher_indices`` are ``(..., k)``: the teacher's k largest logits and
    their vocabulary ids. The teacher distribution is ``softmax(values / T)`` over those k ids (the
    rest of the vocabulary gets no teacher mass); the divergence is
    ``sum_k p_t * (log p_t - log q_s)`` with ``q_s`` the student's softmax at ``T`` over the same k
    ids. With ``k`` equal to the vocabulary it is ``distillation_loss``. Only
    ``kind="forward_kl"`` is defined: the others need the teacher's full distribution.

        values, ids = topk.batch(block_ids)                                # (B, T, k) each
        loss = topk_distillation_loss(student(x[:, :-1]).logits, values, ids, x[:, 1:])
    """
    _check_topk(student_logits, teacher_values, teacher_indices, kind)
    _check(student_logits, student_logits, labels, alpha, beta, temperature, kind)
    student = student_logits.float()
    # Both sides renormalised over the k ids: against the student's full softmax the teacher (which
    # puts no mass elsewhere) would push all tempered mass onto k ids, sharpening the student's T=1 guesses.
    student_log_probs = F.log_softmax(student.gather(-1, teacher_indices.long()) / temperature,
                                      dim=-1)                                    # (..., k)
    teacher_log_probs = F.log_softmax(teacher_values.detach().float() / temperature, dim=-1)
    return _mix(student, labels, _kl(teacher_log_probs, student_log_probs), alpha, beta, temperature)
