"""Image classification of scikit-learn's 8x8 handwritten digits with a small residual CNN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from efficient_search.tasks import Task, register_task
from efficient_search.train.loop import fit_epochs
from efficient_search.train.session import TrialSession
from efficient_search.train.strategy import Prepared


class ResidualBlock(nn.Module):
    """conv-bn-relu-conv-bn with an identity shortcut."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, W, 8, 8)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class DigitsResNet(nn.Module):
    """A stem convolution, ``depth`` residual blocks of ``width`` channels, a linear head.

    The layers are in input-to-output order in ``self.layers`` (stem, blocks..., head), the
    order a layer-freezing fidelity counts them in.
    """

    def __init__(self, depth: int, width: int, num_classes: int = 10):
        super().__init__()
        if not isinstance(depth, int) or depth < 0:
            raise ValueError(f"`depth` must be an integer >= 0, but got {depth!r}.")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"`width` must be an integer >= 1, but got {width!r}.")
        stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU())
        blocks = [ResidualBlock(width) for _ in range(depth)]
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        self.layers = nn.Sequential(stem, *blocks, head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 8, 8) -> (B, 10)
        return self.layers(x)


def load_split(val_fraction: float, data_seed: int) -> tuple[torch.Tensor, ...]:
    """Digits as (x_train, y_train, x_val, y_val); the split depends only on ``data_seed``."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(labels, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(data_seed).permutation(len(y)))
    n_val = int(round(val_fraction * len(y)))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``x, y``."""
    model.eval()
    logits = model(x)
    loss = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    model.train()
    return loss, accuracy


def train_digits(params: Mapping[str, Any], options: Mapping[str, Any], session: TrialSession,
                 seed: int) -> None:
    """Train one configuration, reporting after each epoch (see ``fit_epochs``)."""
    torch.manual_seed(seed)
    x_train, y_train, x_val, y_val = load_split(options["val_fraction"], options["data_seed"])
    # Each worker trains on its own shard of equal size (DDP needs the same number of steps on
    # every rank); together they cover the training set once per epoch.
    usable = len(y_train) - len(y_train) % session.world_size
    x_train = x_train[session.world_rank : usable : session.world_size].to(session.device)
    y_train = y_train[session.world_rank : usable : session.world_size].to(session.device)
    x_val, y_val = x_val.to(session.device), y_val.to(session.device)
    batch_size = int(params.get("batch_size", 64))

    def train_epoch(run: Prepared, generator: torch.Generator) -> float:
        order = torch.randperm(len(y_train), generator=generator).to(session.device)
        total, batches = 0.0, 0
        for i in range(0, len(order), batch_size):
            index = order[i : i + batch_size]
            loss = F.cross_entropy(run.model(x_train[index]), y_train[index])
            run.step(loss)
            total, batches = total + loss.item(), batches + 1
        return total / max(batches, 1)

    def validate(model: nn.Module) -> dict[str, float]:
        val_loss, val_accuracy = evaluate(model, x_val, y_val)
        return {"val_accuracy": val_accuracy, "val_loss": val_loss}

    model = DigitsResNet(int(params.get("depth", 2)), int(params.get("width", 16)))
    fit_epochs(model, params, options, session, seed, train_epoch=train_epoch, evaluate=validate,
               micro_batch_size=batch_size)


DIGITS = register_task(
    Task(
        name="digits",
        train_loop=train_digits,
        metrics={"val_accuracy": "max", "val_loss": "min", "train_loss": "min"},
        default_metric="val_accuracy",
        default_space="digits",
        options={"epochs": 4, "val_fraction": 0.25, "data_seed": 0},
        positive_options=("epochs",),
        fraction_options=("val_fraction",),
        nonnegative_options=("data_seed",),
    )
)
