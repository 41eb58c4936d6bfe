"""What a task's training loop sees of the trial it runs in.

The same loop runs on Ray Train workers (``TrainWorkerSession``) or inside the Tune trial
process when a spec asks for no workers (``InProcessSession``); the loop only calls
``session.report`` and reads ``session.resume_dir``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

FIT_MARKER = ".fit_id"


class _CpuByDefault:
    """The ``device`` field of a session: as given, else ``torch.device("cpu")`` made when first
    read, so a loop that never touches torch (a millisecond benchmark task) runs in a trial
    process that never imports it (~370 MB per process, ~1 s of start-up)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}"

    def __get__(self, session: Any, owner: type | None = None) -> Any:
        if session is None:
            return None  # the dataclass default: no device given
        device = session.__dict__.get(self._slot)
        if device is None:
            import torch

            device = session.__dict__[self._slot] = torch.device("cpu")
        return device

    def __set__(self, session: Any, device: torch.device | None) -> None:
        session.__dict__[self._slot] = device


@dataclass
class TrialSession:
    """Rank, device and reporting of one training-loop process."""

    world_rank: int = 0
    world_size: int = 1
    device: torch.device = _CpuByDefault()  # type: ignore[assignment]
    """Where the loop trains (the CPU unless given)."""
    strategy: str = "ddp"
    deepspeed_config: Mapping[str, Any] | None = None
    resume_dir: str | None = None
    """Checkpoint folder to resume from, or None for a fresh start."""
    fit_id: str | None = None
    """Identity of the Ray Train fit this worker belongs to, stamped into its checkpoints."""

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
            if self.fit_id:
                with open(os.path.join(checkpoint_dir, FIT_MARKER), "w") as marker:
                    marker.write(self.fit_id)
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
        ray.train.report(dict(metrics), checkpoint=checkpoint,
                         delete_local_checkpoint_after_upload=checkpoint is not None)
        if checkpoint_dir and checkpoint is None:  # non-chief ranks never upload theirs
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _fit_of(checkpoint: Any) -> str | None:
    with checkpoint.as_directory() as folder:
        path = os.path.join(folder, FIT_MARKER)
        if not os.path.exists(path):
            return None
        with open(path) as marker:
            return marker.read().strip()


def train_worker_session(loop_config: Mapping[str, Any]) -> TrainWorkerSession:
    """The session of a Ray Train worker and the checkpoint it resumes from.

    Train's own latest checkpoint wins when this fit wrote it (workers restarted after a
    failure); otherwise the trial's checkpoint does. Train's snapshot of an earlier fit can be
    ahead of what Tune recorded (results reported after Tune paused the trial are dropped), and
    resuming from it would skip those results in the store.
    """
    import ray.train
    import torch

    context = ray.train.get_context()
    checkpoint = ray.train.get_checkpoint()
    fit_id = loop_config.get("fit_id")
    if checkpoint is not None and fit_id is not None and _fit_of(checkpoint) == fit_id:
        resume_dir: str | None = checkpoint.to_directory()
    elif loop_config.get("resume_checkpoint") is not None:
        resume_dir = loop_config["resume_checkpoint"].to_directory()
    else:
        resume_dir = loop_config.get("resume_dir")
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
        fit_id=fit_id,
    )


CHECKPOINT_PREFIX = "es-ckpt-"
ORPHAN_AGE_S = 3600.0
"""A checkpoint folder lives seconds (made, reported, deleted); one whose process is gone and that
is older than this was left by a killed or stopped trial process."""
_swept: set[str] = set()


def new_checkpoint_dir() -> str:
    """A fresh folder for one checkpoint (Ray copies it into the run's storage), named after this
    process; the first call in a process deletes the folders dead processes left behind."""
    parent = os.environ.get("ES_CHECKPOINT_TMP") or tempfile.gettempdir()
    if parent not in _swept:
        _swept.add(parent)
        remove_orphan_checkpoints(parent)
    return tempfile.mkdtemp(prefix=f"{CHECKPOINT_PREFIX}{os.getpid()}.{_host()}-", dir=parent)


def remove_orphan_checkpoints(parent: str, min_age_s: float = ORPHAN_AGE_S) -> list[str]:
    """Delete checkpoint folders under ``parent`` made on this host by a process that has exited,
    older than ``min_age_s``: a trial process killed or stopped between making one and reporting
    it (a paused trial, a crash) never deletes its own. Returns the folders deleted."""
    removed: list[str] = []
    now, host = time.time(), _host()
    try:
        with os.scandir(parent) as found:
            entries = list(found)
    except OSError:
        return removed  # a sweep is best-effort: never the reason a trial fails
    for entry in entries:
        pid, _, rest = entry.name[len(CHECKPOINT_PREFIX):].partition(".")
        if not (entry.name.startswith(CHECKPOINT_PREFIX) and pid.isdigit() and len(pid) < 10
                and rest.startswith(f"{host}-")):
            continue  # another host's (a shared folder) or not ours
        try:
            if (not entry.is_dir(follow_symlinks=False) or now - entry.stat().st_mtime < min_age_s
                    or _process_alive(int(pid))):
                continue
            shutil.rmtree(entry.path)
        except OSError:
            continue  # deleted meanwhile by its own process, or not ours to delete
        removed.append(entry.path)
    return removed


def _host() -> str:
    """This machine's name in letters and digits (process ids are per host)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
