"""A searcher's state as a JSON file (Tune names it ``searcher-state-*.pkl``; it holds no pickle)."""

from __future__ import annotations

import json
from typing import Any

from efficient_search.durable import atomic_write


def write_state(checkpoint_path: str, state: dict[str, Any]) -> None:
    """Write ``state`` as strict JSON, durably and atomically (see :mod:`efficient_search.durable`)."""
    atomic_write(checkpoint_path, json.dumps(state, allow_nan=False))


def read_state(checkpoint_path: str) -> dict[str, Any]:
    """The state :func:`write_state` wrote."""
    with open(checkpoint_path) as file:
        state: dict[str, Any] = json.load(file)
    return state
