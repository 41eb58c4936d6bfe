"""Learning-rate schedules as multipliers of the peak rate: cosine and warmup-stable-decay (WSD).

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier("wsd", total_steps=1000,
                                                                          warmup_steps=100))
"""

from __future__ import annotations

import math
from collections.abc import Callable

from efficient_search.validate import check_int

SCHEDULES = ("cosine", "wsd", "constant")


def lr_multiplier(kind: str, *, total_steps: int, warmup_steps: int = 0, cooldown_fraction: float = 0.2,
                  min_ratio: float = 0.0) -> Callable[[int], float]:
    """``step -> factor``: linear warmup to 1, then cosine decay, WSD's constant phase and linear
    cooldown over the last ``cooldown_fraction`` of the steps, or constant; never below
    ``min_ratio`` after warmup."""
    if kind not in SCHEDULES:
        raise ValueError(f"Unknown schedule {kind!r}. Fix: one of {', '.join(SCHEDULES)}.")
    for name, value in (("total_steps", total_steps), ("warmup_steps", warmup_steps)):
        check_int(name, value, min=0, expected="an int >= 0")
    if total_steps < 1 or warmup_steps >= total_steps:
        raise ValueError(f"`warmup_steps` ({warmup_steps}) must be below `total_steps` ({total_steps}), "
                         "and total_steps >= 1.")
    if not 0 <= cooldown_fraction <= 1:
        raise ValueError(f"`cooldown_fraction` must lie in [0, 1], but got {cooldown_fraction!r}.")
    if not 0 <= min_ratio <= 1:
        raise ValueError(f"`min_ratio` must lie in [0, 1], but got {min_ratio!r}.")
    cooldown_start = total_steps - round(cooldown_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        if kind == "cosine":
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if step < max(cooldown_start, warmup_steps):
            return 1.0
        progress = min(1.0, (step - max(cooldown_start, warmup_steps)) /
                       max(1, total_steps - max(cooldown_start, warmup_steps)))
        return min_ratio + (1 - min_ratio) * (1 - progress)

    return factor
