"""What every benchmark script shares: where results go and how plots are saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def save_figure(fig: Any, name: str, quick: bool) -> Path:
    """Save ``fig`` as ``results/<name>.png`` (``<name>-quick.png`` for smoke runs, so that a
    quick run never replaces the full-mode plot the README refers to)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    path = RESULTS_DIR / f"{name}{'-quick' if quick else ''}.png"
    fig.savefig(path, dpi=120)
    print(f"saved {path}")
    return path
