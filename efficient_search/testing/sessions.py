"""A trial session that records reports instead of sending them to Ray (for task tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from efficient_search.train.session import TrialSession


class RecordingSession(TrialSession):
    """Runs a task's loop in the calling process and keeps every report."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.reports: list[tuple[dict[str, Any], str | None]] = []

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None) -> None:
        self.reports.append((dict(metrics), checkpoint_dir))
