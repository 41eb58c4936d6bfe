"""Learning-rate schedules: cosine and warmup-stable-decay."""

from __future__ import annotations

import pytest
import torch

from efficient_search.train.schedules import lr_multiplier


def test_wsd_warms_up_holds_then_cools_down_linearly() -> None:
    f = lr_multiplier("wsd", total_steps=100, warmup_steps=10, cooldown_fraction=0.2)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == f(50) == f(79) == 1.0
    assert f(80) == pytest.approx(1.0) and f(90) == pytest.approx(0.5) and f(100) == 0.0
    values = [f(s) for s in range(80, 101)]
    assert values == sorted(values, reverse=True)


def test_cosine_and_constant() -> None:
    f = lr_multiplier("cosine", total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    assert lr_multiplier("constant", total_steps=5)(4) == 1.0
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier("wsd", total_steps=4,
                                                                          warmup_steps=2))
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.25, 0.5, 0.5, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"kind": "linear"}, r"Unknown schedule 'linear'\. Fix: one of cosine, wsd, constant"),
        ({"warmup_steps": 10}, r"`warmup_steps` \(10\) must be below `total_steps` \(10\)"),
        ({"cooldown_fraction": 1.5}, r"`cooldown_fraction` must lie in \[0, 1\]"),
        ({"total_steps": 2.5}, r"`total_steps` must be an int >= 0"),
    ],
)
def test_bad_schedule_input(kwargs, pattern) -> None:
    args = {"kind": "wsd", "total_steps": 10, **kwargs}
    kind = args.pop("kind")
    with pytest.raises(ValueError, match=pattern):
        lr_multiplier(kind, **args)
