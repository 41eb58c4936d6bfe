"""Layer-freezing benchmark, part (a): how well each number of trainable layers ranks configurations.

Every configuration is trained at every ``z`` of the task's grid under several training seeds (the
configurations stay the same across seeds). Runs are independent, so they go to a pool of worker
processes (one torch thread each) that trains them in the background while part (c) runs; the frame
they make is sorted by its keys, so it does not depend on which worker finished first.

Read against noise, per task and ``z``:

- ``spearman``/``kendall``/``top-k overlap`` of ``z`` with full fidelity under the *same* seed, as
  mean ± standard error over seeds;
- ``cross_seed_spearman``: ``z`` under one seed against full fidelity under *another*, mean over
  ordered pairs; at ``z = L`` it is the ceiling;
- ``ceiling``: full fidelity under one seed against full fidelity under another, mean over pairs:
  the most any fidelity can agree with "the" full-fidelity ranking when seeds differ.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

#: Task options of both GPT-2s, full and quick mode.
GPT_OPTIONS: dict[str, dict[str, int]] = {
    "full": {"epochs": 2, "steps_per_epoch": 30, "block_size": 32, "max_chars": 200_000,
             "eval_windows": 64},
    "quick": {"epochs": 1, "steps_per_epoch": 8, "block_size": 32, "max_chars": 60_000,
              "eval_windows": 16},
}

#: The ranked networks: the task, the fixed architecture, the ranked metric, and the task options
#: of full and quick mode. ``layers`` is the model's number of layer units (checked at run time).
TASKS: dict[str, dict[str, Any]] = {
    "digits": {
        "task": "digits", "arch": {"depth": 4, "width": 16}, "layers": 6,
        "metric": "val_accuracy", "mode": "max",
        "full": {"epochs": 3}, "quick": {"epochs": 1},
    },
    "shakespeare": {
        "task": "shakespeare", "arch": {"n_layer": 4, "n_embd": 64, "n_head": 4}, "layers": 6,
        "metric": "val_loss", "mode": "min",
        **GPT_OPTIONS,
    },
    # The deeper transformer: embeddings, 10 blocks, final norm + head = 12 layer units.
    "shakespeare_deep": {
        "task": "shakespeare", "arch": {"n_layer": 10, "n_embd": 48, "n_head": 4}, "layers": 12,
        "metric": "val_loss", "mode": "min",
        **GPT_OPTIONS,
    },
}


def train_job(task_key: str, config_index: int, config: dict[str, Any], z: int, seed: int,
              quick: bool) -> dict[str, Any]:
    """Train one configuration at ``z`` trainable layers under ``seed``; one row of the run frame."""
    import torch

    from efficient_search.task_registry import get_task
    from efficient_search.testing.sessions import RecordingSession

    torch.set_num_threads(1)
    spec = TASKS[task_key]
    task = get_task(spec["task"])
    session = RecordingSession()
    params = {**config, **spec["arch"], "trainable_layers": z}
    task.train_loop(params, task.resolve_options(spec["quick" if quick else "full"]), session, seed)
    session.cleanup()
    metrics = session.reports[-1][0]
    score = float(metrics[spec["metric"]])
    if not math.isfinite(score):  # a diverged run ranks last
        score = -1.0 if spec["mode"] == "max" else 99.0
    return {"task": task_key, "config": config_index, "z": z, "seed": seed, "score": score,
            "train_loss": float(metrics["train_loss"]), "seconds": float(metrics["cost/seconds"]),
            **config}


def quality_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for the runs; spawned, so that no forked OpenMP pool is inherited."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def submit_runs(pool: ProcessPoolExecutor, configs: list[dict[str, Any]], zs: dict[str, list[int]],
                seeds: list[int], quick: bool) -> list[Future]:
    """Every (task, configuration, z, seed) queued once; the pool trains them in the background."""
    return [pool.submit(train_job, task_key, i, config, z, seed, quick)
            for task_key in zs for seed in seeds for i, config in enumerate(configs)
            for z in zs[task_key]]


def collect_runs(futures: list[Future]) -> pd.DataFrame:
    """The runs' rows, sorted by (task, seed, config, z) whatever order they finished in."""
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for done, future in enumerate(futures, start=1):
        rows.append(future.result())
        if done % max(1, len(futures) // 10) == 0 or done == len(futures):
            print(f"  (a) {done}/{len(futures)} runs collected ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    return pd.DataFrame(rows).sort_values(["task", "seed", "config", "z"]).reset_index(drop=True)


def _signed(runs: pd.DataFrame, task_key: str) -> pd.DataFrame:
    """Scores of one task as (config x (z, seed)), signed so that larger is better."""
    sign = 1.0 if TASKS[task_key]["mode"] == "max" else -1.0
    table = runs[runs["task"] == task_key].pivot(index="config", columns=["z", "seed"],
                                                 values="score")
    return sign * table


def per_seed_correlations(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, z, seed): rank agreement of ``z`` with full fidelity."""
    rows = []
    for task_key in runs["task"].unique():
        layers = TASKS[task_key]["layers"]
        table = _signed(runs, task_key)
        zs = sorted({z for z, _ in table.columns})
        seeds = sorted({s for _, s in table.columns})
        k = max(1, len(table) // 4)
        for z in zs:
            for seed in seeds:
                low, full = table[(z, seed)], table[(layers, seed)]
                others = [stats.spearmanr(low, table[(layers, s)]).statistic
                          for s in seeds if s != seed]
                rows.append({
                    "task": task_key, "layers": layers, "z": z, "fraction": z / layers,
                    "seed": seed,
                    "spearman": float(stats.spearmanr(low, full).statistic),
                    "kendall": float(stats.kendalltau(low, full).statistic),
                    "top_k": k,
                    "top_k_overlap": len(set(full.nlargest(k).index)
                                         & set(low.nlargest(k).index)) / k,
                    "cross_seed_spearman": float(np.mean(others)) if others else math.nan,
                })
    return pd.DataFrame(rows)


def seed_ceiling(runs: pd.DataFrame, task_key: str) -> tuple[float, float]:
    """Mean and standard error over seed pairs of full fidelity's Spearman with itself."""
    table = _signed(runs, task_key)
    layers = TASKS[task_key]["layers"]
    seeds = sorted({s for _, s in table.columns})
    values = [stats.spearmanr(table[(layers, a)], table[(layers, b)]).statistic
              for a, b in itertools.combinations(seeds, 2)]
    return mean_se(values)


def mean_se(values: list[float] | pd.Series) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN error for fewer than two values)."""
    array = np.asarray(values, dtype=float)
    if len(array) == 0:
        return math.nan, math.nan
    error = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else math.nan
    return float(array.mean()), error


def summarise(per_seed: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, z): means ± standard errors over seeds, the ceiling and the gap to it."""
    rows = []
    for (task_key, z), group in per_seed.groupby(["task", "z"], sort=True):
        ceiling, ceiling_se = seed_ceiling(runs, task_key)
        row: dict[str, Any] = {"task": task_key, "layers": int(group["layers"].iloc[0]), "z": z,
                               "fraction": float(group["fraction"].iloc[0]),
                               "seeds": len(group)}
        for column in ("spearman", "kendall", "top_k_overlap"):
            row[column], row[f"{column}_se"] = mean_se(group[column])
        row["cross_seed_spearman"] = float(group["cross_seed_spearman"].mean())
        row["ceiling"], row["ceiling_se"] = ceiling, ceiling_se
        row["gap_to_ceiling"] = ceiling - row["spearman"]
        rows.append(row)
    return pd.DataFrame(rows)


def nearest_z(layers: int, fraction: float, zs: list[int]) -> int:
    """The ``z`` of the grid closest to ``fraction`` of the layers (the smaller one on a tie)."""
    return min(zs, key=lambda z: (abs(z / layers - fraction), z))
