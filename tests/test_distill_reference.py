"""The distillation loss and the open-sci-ref reference recipes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from efficient_search.reference import (
    OPEN_SCI_REF,
    compute_flops,
    get_recipe,
    open_sci_ref_parameters,
)
from efficient_search.train.distill import distillation_loss


def logits(seed: int, shape=(2, 5, 11)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_loss_is_alpha_ce_plus_beta_t2_kl_over_labelled_positions() -> None:
    student, teacher = logits(0).requires_grad_(), logits(1)
    labels = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(2))
    labels[0, :2] = -100
    t, alpha, beta = 4.0, 0.3, 0.7
    mask = labels != -100
    ce = F.cross_entropy(student[mask], labels[mask])
    p_t = F.softmax(teacher / t, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(student / t, -1))).sum(-1)[mask].mean()
    loss = distillation_loss(student, teacher, labels, alpha=alpha, beta=beta, temperature=t)
    torch.testing.assert_close(loss, alpha * ce + beta * t ** 2 * kl)
    loss.backward()
    assert student.grad is not None and student.grad[0, :2].abs().sum() == 0  # masked positions


def test_special_cases_of_the_loss() -> None:
    student, teacher = logits(0), logits(1)
    labels = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(3))
    plain = distillation_loss(student, teacher, labels, alpha=1.0, beta=0.0)
    torch.testing.assert_close(plain, F.cross_entropy(student.reshape(-1, 11), labels.reshape(-1)))
    for kind in ("forward_kl", "reverse_kl", "js"):
        same = distillation_loss(student, student, labels, alpha=0.0, beta=1.0, kind=kind)
        assert abs(same.item()) < 1e-5  # no divergence from itself
        apart = distillation_loss(student, teacher, labels, alpha=0.0, beta=1.0, kind=kind)
        assert apart.item() > 0
    js_ab = distillation_loss(student, teacher, labels, alpha=0.0, beta=1.0, kind="js")
    js_ba = distillation_loss(teacher, student, labels, alpha=0.0, beta=1.0, kind="js")
    torch.testing.assert_close(js_ab, js_ba)  # symmetric
    forward = distillation_loss(student, teacher, labels, alpha=0.0, beta=1.0, kind="forward_kl")
    reverse = distillation_loss(teacher, student, labels, alpha=0.0, beta=1.0, kind="reverse_kl")
    torch.testing.assert_close(forward, reverse)
    nothing = distillation_loss(student.requires_grad_(), teacher, torch.full((2, 5), -100))
    assert nothing.item() == 0 and nothing.requires_grad
    teacher_grad = logits(1).requires_grad_()
    distillation_loss(logits(0).requires_grad_(), teacher_grad, labels).backward()
    assert teacher_grad.grad is None  # the teacher is frozen


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"teacher": logits(1, (2, 5, 12))}, r"vocabulary of 11 and the teacher of 12.*one tokenizer"),
        ({"labels": torch.zeros(2, 4, dtype=torch.long)}, r"`labels` \(2, 4\) must have"),
        ({"temperature": 0.0}, r"`temperature` must be > 0"),
        ({"alpha": -1.0}, r"`alpha` must be a finite number >= 0"),
        ({"kind": "kl"}, r"`kind` must be one of forward_kl, reverse_kl, js"),
    ],
)
def test_bad_distillation_input(kwargs, pattern) -> None:
    args = {"teacher": logits(1), "labels": torch.zeros(2, 5, dtype=torch.long)}
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(ValueError, match=pattern):
        distillation_loss(logits(0), args["teacher"], args["labels"], **kwargs)


def test_open_sci_ref_shapes_and_the_compute_axis() -> None:
    sizes = {name: recipe.n_params for name, recipe in OPEN_SCI_REF.items()}
    for name, nominal in (("0.13b", 0.13e9), ("0.4b", 0.4e9), ("1.3b", 1.3e9), ("1.7b", 1.7e9)):
        assert sizes[f"open-sci-ref-{name}"] == pytest.approx(nominal, rel=0.06)
    assert open_sci_ref_parameters(22, 512, 2256) == 50432 * 512 + 22 * (4 * 512 ** 2 + 3 * 512 * 2256)
    small = get_recipe("open-sci-ref-0.13b")
    assert (small.lr, small.betas, small.weight_decay, small.warmup_steps, small.cooldown_fraction,
            small.seq_len, small.schedule) == (4e-3, (0.9, 0.95), 0.05, 25_000, 0.2, 4096, "wsd")
    assert compute_flops(1e9, 1e10) == 6e19 and small.flops(1e9) == 6 * small.n_params * 1e9
    assert get_recipe("open-sci-ref-cpu-tiny").n_params < 10e6
    with pytest.raises(ValueError, match=r"Unknown reference recipe 'open-sci-ref-1.3B'\. Did you mean"):
        get_recipe("open-sci-ref-1.3B")
    with pytest.raises(ValueError, match=r"`n_tokens` must be a finite number >= 0"):
        compute_flops(1e9, math.inf)
    with pytest.raises(ValueError, match=r"`ffn` must be a positive int"):
        open_sci_ref_parameters(2, 64, 0)
