"""The digits task's training loop, run directly with a recording session."""

from __future__ import annotations

import pytest
import torch

from efficient_search.tasks import get_task
from efficient_search.tasks.digits import DigitsResNet, load_split
from efficient_search.testing.sessions import RecordingSession

PARAMS = {"depth": 2, "width": 16, "lr": 0.1, "batch_size": 32}


def test_loop_learns_and_reports_metrics_fidelity_and_cost() -> None:
    task = get_task("digits")
    session = RecordingSession()
    task.train_loop(PARAMS, task.resolve_options({"epochs": 3}), session, 0)
    metrics = [m for m, _ in session.reports]
    assert [m["fidelity/epoch"] for m in metrics] == [1, 2, 3]
    # Learning, not a quality level: with lr 0.1 the BatchNorm running statistics make one epoch's
    # validation accuracy swing (measured 0.54, 0.62, 0.62, 0.96 over four epochs on one machine, 0.8+
    # at epoch 3 on another), so a level at a fixed epoch depends on the CPU's float rounding.
    assert min(m["val_accuracy"] for m in metrics) > 0.4, metrics  # chance is 0.1
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["cost/seconds"] > metrics[0]["cost/seconds"] > 0
    assert metrics[-1]["cost/peak_memory_bytes"] > 0
    assert all(checkpoint for _, checkpoint in session.reports)


def test_resuming_from_a_checkpoint_continues_where_it_stopped() -> None:
    task = get_task("digits")
    first = RecordingSession()
    task.train_loop(PARAMS, task.resolve_options({"epochs": 2}), first, 0)
    resumed = RecordingSession(resume_dir=first.reports[-1][1])
    task.train_loop(PARAMS, task.resolve_options({"epochs": 3}), resumed, 0)
    assert [m["fidelity/epoch"] for m, _ in resumed.reports] == [3]
    straight = RecordingSession()
    task.train_loop(PARAMS, task.resolve_options({"epochs": 3}), straight, 0)
    resumed_loss, straight_loss = (r.reports[-1][0]["val_loss"] for r in (resumed, straight))
    assert resumed_loss == pytest.approx(straight_loss, rel=1e-4)


def test_same_seed_same_result() -> None:
    task = get_task("digits")
    runs = []
    for _ in range(2):
        session = RecordingSession()
        task.train_loop(PARAMS, task.resolve_options({"epochs": 1}), session, 5)
        runs.append(session.reports[-1][0]["val_loss"])
    assert runs[0] == runs[1]


def test_model_depth_is_a_parameter_and_split_is_fixed() -> None:
    shallow, deep = DigitsResNet(1, 8), DigitsResNet(4, 8)
    assert len(deep.layers) == len(shallow.layers) + 3
    assert deep(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    a, b = load_split(0.25, 0), load_split(0.25, 0)
    assert torch.equal(a[3], b[3]) and len(a[2]) == 449
    with pytest.raises(ValueError, match="`depth` must be an integer >= 0"):
        DigitsResNet(-1, 8)
    with pytest.raises(ValueError, match="`task_options.val_fraction` must lie in"):
        get_task("digits").resolve_options({"val_fraction": 1.5})


def test_trainable_layers_fidelity_is_reported_and_thawing_continues() -> None:
    task = get_task("digits")
    options = task.resolve_options({})
    low = RecordingSession()
    task.train_loop({**PARAMS, "trainable_layers": 1, "epochs": 1}, options, low, 0)
    metrics = low.reports[-1][0]
    assert metrics["fidelity/trainable_layers"] == 1
    assert metrics["fidelity/max_trainable_layers"] == 4  # stem + 2 blocks + head
    thawed = RecordingSession(resume_dir=low.reports[-1][1])
    task.train_loop({**PARAMS, "trainable_layers": 4, "epochs": 3}, options, thawed, 0)
    assert [(m["fidelity/epoch"], m["fidelity/trainable_layers"]) for m, _ in thawed.reports] == [
        (2, 4), (3, 4)]
    assert thawed.reports[-1][0]["cost/seconds"] > metrics["cost/seconds"]


def test_more_trainable_layers_than_the_model_has_is_an_error() -> None:
    task = get_task("digits")
    with pytest.raises(ValueError, match=r"`trainable_layers` 9 does not fit this model's 4 layer"):
        task.train_loop({**PARAMS, "trainable_layers": 9}, task.resolve_options({}),
                        RecordingSession(), 0)


def test_cosine_lr_schedule_decays_per_epoch_and_resumes_on_it() -> None:
    from efficient_search.train.loop import epoch_lr_factor

    factor = epoch_lr_factor({"lr_schedule": "cosine"}, 4)
    assert [round(factor(e), 4) for e in range(4)] == [1.0, 0.8536, 0.5, 0.1464]
    assert epoch_lr_factor({}, 4)(3) == 1.0  # constant unless asked
    task = get_task("digits")
    params = {**PARAMS, "lr_schedule": "cosine"}
    options = task.resolve_options({"epochs": 3})
    straight = RecordingSession()
    task.train_loop(params, options, straight, 0)
    # A scheduler's epochs fidelity cuts the run into segments (2 epochs, then continued to 3): the
    # cosine runs over task_options.epochs, so the segments make the straight run.
    first = RecordingSession()
    task.train_loop({**params, "epochs": 2}, options, first, 0)
    assert first.reports[1][0]["val_loss"] == pytest.approx(straight.reports[1][0]["val_loss"], rel=1e-4)
    resumed = RecordingSession(resume_dir=first.reports[1][1])
    task.train_loop({**params, "epochs": 3}, options, resumed, 0)
    assert [m["fidelity/epoch"] for m, _ in resumed.reports] == [3]
    assert resumed.reports[-1][0]["val_loss"] == pytest.approx(straight.reports[-1][0]["val_loss"], rel=1e-4)
    constant = RecordingSession()
    task.train_loop(PARAMS, options, constant, 0)
    assert constant.reports[-1][0]["val_loss"] != straight.reports[-1][0]["val_loss"]
    for session in (straight, first, resumed, constant):
        session.cleanup()


def test_unknown_lr_schedule_is_refused_with_the_fix() -> None:
    task = get_task("digits")
    with pytest.raises(ValueError, match=r"`lr_schedule` must be one of constant, cosine, but got 'linear'"):
        task.train_loop({**PARAMS, "lr_schedule": "linear"}, task.resolve_options({"epochs": 1}),
                        RecordingSession(), 0)
    with pytest.raises(ValueError, match=r"decays over task_options.epochs \(2\), but this trial was asked "
                                         r"for 3 epochs .* Fix: set task_options.epochs to the scheduler's"):
        task.train_loop({**PARAMS, "lr_schedule": "cosine", "epochs": 3}, task.resolve_options({"epochs": 2}),
                        RecordingSession(), 0)
    with pytest.raises(ValueError, match=r"deepspeed_config's own `scheduler`"):
        task.train_loop({**PARAMS, "lr_schedule": "cosine"}, task.resolve_options({"epochs": 2}),
                        RecordingSession(deepspeed_config={"scheduler": {"type": "WarmupLR"}}), 0)
