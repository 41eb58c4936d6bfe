"""Config keys through which a scheduler sets a trial's fidelity (no torch, no Ray here).

A fidelity-aware scheduler writes these keys into a trial's config before (re)starting it;
tasks read them; every trial reports them back as ``fidelity/<key>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TRAINABLE_LAYERS = "trainable_layers"
"""Number of trainable layer units, counted from the output side (the rest frozen)."""
EPOCHS = "epochs"
"""Epoch budget of the current rung (cumulative when a trial continues)."""
RESTART = "fidelity_restart"
"""True when a promoted trial must train afresh instead of continuing from its checkpoint."""
FIDELITY_KEYS = (EPOCHS, RESTART, TRAINABLE_LAYERS)
"""Every key a scheduler writes into a config: no hyperparameters."""


def is_restart(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` asks the trial to ignore its checkpoint."""
    return bool(config.get(RESTART, False))


def run_name(trial_id: str, config: Mapping[str, Any]) -> str:
    """Ray Train run name of a trial's current fit.

    Continuing trials keep one name (their checkpoints live together; the worker session decides
    which checkpoint to resume from); a restart at a new fidelity gets a fresh name, so it starts
    from scratch.
    """
    if not is_restart(config):
        return trial_id
    return f"{trial_id}-z{config.get(TRAINABLE_LAYERS)}-e{config.get(EPOCHS)}"
