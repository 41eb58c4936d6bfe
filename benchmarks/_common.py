"""What every benchmark script shares: where results go and how plots are saved."""

from __future__ import annotations

import math
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from efficient_search.store import ParquetStoreCallback

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


def record(store_root: str, name: str, tables: list[tuple[str, pd.DataFrame]], quick: bool,
           searcher: str = "-", scheduler: str = "-") -> None:
    """Every measured row to the store, experiment ``bench-<name>``: one trial per row, string
    columns as its config, numbers as its results, tagged with the run and the table (part)."""
    callback = ParquetStoreCallback(store_root, experiment=f"bench-{name}", searcher=searcher,
                                    scheduler=scheduler, hardware=platform.platform())
    callback.setup()
    run = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # two runs in one second stay apart
    now = time.time()
    for part, table in tables:
        for i, row in enumerate(table.to_dict("records")):
            config = {"run": run, "part": part, "quick": quick, "row": i}
            config.update({k: v for k, v in row.items() if isinstance(v, str)})
            numbers = {k: v for k, v in row.items() if not isinstance(v, str)}
            callback.add(f"{run}-{part}-{i}", config,
                         {"training_iteration": 1, "timestamp": now, **numbers}, "TERMINATED")
    callback.on_experiment_end(trials=[])  # flush and release the experiment for the next run


def print_result(name: str, figures: dict[str, Any], quick: bool) -> str:
    """Print (and return) the benchmark's last line, ``RESULT <name> mode=quick|full key=value ...``:
    numbers to 4 significant digits, anything else as text. Quick figures are never results."""
    def text(value: Any) -> str:
        if isinstance(value, float) and math.isfinite(value):
            return f"{value:.4g}"
        return str(value)

    mode = "quick" if quick else "full"
    if figures.get("mode", mode) != mode:
        raise ValueError(f"RESULT figures say mode={figures['mode']!r}, but the run is {mode!r}.")
    # First, unless the figures place it themselves (hpo_suite: scenario=... mode=...).
    fields = figures if "mode" in figures else {"mode": mode, **figures}
    line = f"RESULT {name} " + " ".join(f"{k}={text(v)}" for k, v in fields.items())
    print(line)
    return line
