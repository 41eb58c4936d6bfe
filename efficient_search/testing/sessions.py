"""A trial session that records reports instead of sending them to Ray (for task tests)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from efficient_search.train.session import TrialSession


class RecordingSession(TrialSession):
    """Runs a task's loop in the calling process and keeps every report."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.reports: list[tuple[dict[str, Any], str | None]] = []

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None, *,
               every_rank: bool = False) -> None:
        self.reports.append((dict(metrics), checkpoint_dir))

    def cleanup(self) -> None:
        """Delete the checkpoint folders the reports point at."""
        for _, checkpoint_dir in self.reports:
            if checkpoint_dir:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
