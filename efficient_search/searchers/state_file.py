"""A searcher's state as a JSON file (Tune names it ``searcher-state-*.pkl``; it holds no pickle)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_state(checkpoint_path: str, state: dict[str, Any]) -> None:
    """Write ``state`` as strict JSON, atomically (temp file in the same folder, then rename)."""
    folder = os.path.dirname(os.path.abspath(checkpoint_path))
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as file:
        json.dump(state, file, allow_nan=False)
    os.replace(file.name, checkpoint_path)


def read_state(checkpoint_path: str) -> dict[str, Any]:
    """The state :func:`write_state` wrote."""
    with open(checkpoint_path) as file:
        state: dict[str, Any] = json.load(file)
    return state
