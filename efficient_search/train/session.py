"""What a task's training loop sees of the trial it runs in.

The same loop runs on Ray Train workers (``TrainWorkerSession``) or inside the Tune trial
process when a spec asks for no workers (``InProcessSession``); the loop only calls
``session.report`` and reads ``session.resume_dir``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TrialSession:
    """Rank, device and reporting of one training-loop process."""

    world_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    strategy: str = "ddp"
    deepspeed_config: Mapping[str, Any] | None = None
    resume_dir: str | None = None
    """Checkpoint folder to resume from, or None for a fresh start."""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.strategy == "deepspeed"

    @property
    def is_chief(self) -> bool:
        return self.world_rank == 0

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None, *,
               every_rank: bool = False) -> None:
        """Report ``metrics`` with ``checkpoint_dir`` (the chief's, or every rank's shards)."""
        raise NotImplementedError


class InProcessSession(TrialSession):
    """Reports straight to Ray Tune from the trial process."""

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None, *,
               every_rank: bool = False) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(dict(metrics), checkpoint=checkpoint)
        if checkpoint_dir:  # report persisted a copy in the run's storage
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


class TrainWorkerSession(TrialSession):
    """Reports through Ray Train; every rank reports, and the chief attaches its checkpoint.

    With ``every_rank`` each rank attaches its folder and Ray Train merges them into one
    checkpoint (DeepSpeed's sharded state).
    """

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None, *,
               every_rank: bool = False) -> None:
        import ray.train

        checkpoint = None
        if checkpoint_dir and (self.is_chief or every_rank):
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
        ray.train.report(dict(metrics), checkpoint=checkpoint,
                         delete_local_checkpoint_after_upload=checkpoint is not None)
        if checkpoint_dir and checkpoint is None:  # non-chief ranks never upload theirs
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


def train_worker_session(loop_config: Mapping[str, Any]) -> TrainWorkerSession:
    """The session of a Ray Train worker: Train's own checkpoint wins over the trial's."""
    import ray.train

    context = ray.train.get_context()
    checkpoint = ray.train.get_checkpoint()
    resume_dir = checkpoint.to_directory() if checkpoint else loop_config.get("resume_dir")
    if torch.cuda.is_available():
        device = torch.device("cuda", context.get_local_rank())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return TrainWorkerSession(
        world_rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=device,
        strategy=loop_config.get("strategy", "ddp"),
        deepspeed_config=loop_config.get("deepspeed_config"),
        resume_dir=resume_dir,
    )


def new_checkpoint_dir() -> str:
    """A fresh folder for one checkpoint (Ray copies it into the run's storage)."""
    return tempfile.mkdtemp(prefix="es-ckpt-", dir=os.environ.get("ES_CHECKPOINT_TMP"))
