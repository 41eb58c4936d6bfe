"""Saved folders of the surrogate package: a versioned JSON description beside the data."""

from __future__ import annotations

import json
import os
from typing import Any


def read_info(folder: str, name: str, version: int, what: str, fix: str) -> dict[str, Any]:
    """The JSON file ``name`` of ``folder``, refused with a clear error when it is missing or
    was written in another format ``version``. ``what``/``fix`` word the error."""
    info_path = os.path.join(folder, name)
    if not os.path.isfile(info_path):
        raise ValueError(f"`path` {folder!r} {what} ({name} is missing). Fix: {fix}")
    with open(info_path) as stream:
        info: dict[str, Any] = json.load(stream)
    if info.get("version") != version:
        raise ValueError(f"{info_path} has format version {info.get('version')!r}; this code reads "
                         f"version {version}.")
    return info
