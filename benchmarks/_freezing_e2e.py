"""Layer-freezing benchmark, part (c): end-to-end searches on real local Ray Tune against ASHA.

The same configurations (a grid over their indices) face each scheduler: ``layer_freezing`` with
``restart`` (the Frozen Layers protocol: a promoted configuration trains afresh with more layers)
and with ``continue`` (thaw: it resumes from its checkpoint with more layers trainable), Ray's
ASHA and HyperBand over epochs. One trial runs at a time (two torch threads), so every scheduler
sees results in the same order on every run, and a seed gives the same decisions.

Compute is counted two ways, in arrival order (a Tune callback records every result as the
controller sees it):

- ``epochs``: full-epoch equivalents, an epoch at ``z`` of ``L`` trainable units costing
  ``(1 + 2 z / L) / 3`` of a full one (the forward pass through every unit, a backward pass, about
  twice a forward, through the ``z`` trainable ones). Deterministic: the headline figures use it.
- ``seconds``: the trials' own reported training seconds (a timing field; noisy).
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import pandas as pd
from _freezing_quality import TASKS
from ray.tune import Callback

#: Epochs per rung: ``continue`` thaws one more epoch per rung; the others train the sum at once.
RUNG_EPOCHS = 1
#: Successive halving's reduction factor, for every scheduler; with L = 12 the rungs are z = 1, 3, 9, 12.
ETA = 3
#: The network the schedulers search on.
TASK = TASKS["shakespeare_deep"]


def epoch_cost(z: int, layers: int) -> float:
    """Full-epoch equivalents of one epoch with ``z`` of ``layers`` units trainable."""
    return (1.0 + 2.0 * z / layers) / 3.0


class ArrivalLog(Callback):
    """Every reported result, in the order Tune's controller received it."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self.rows.append({"trial_id": trial.trial_id, "cfg": trial.config.get("cfg"),
                          "epoch": int(result["fidelity/epoch"]),
                          "z": int(result["fidelity/trainable_layers"]),
                          "seconds": float(result["cost/seconds"]),
                          "score": float(result[TASK["metric"]])})


def schedulers(layers: int, rungs: int) -> dict[str, Any]:
    """Factories of the compared schedulers; all end at ``rungs`` epochs with every layer trainable."""
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler

    from efficient_search.schedulers import LayerFreezingScheduler

    return {
        "layer_freezing_restart": lambda: LayerFreezingScheduler(
            max_trainable_layers=layers, epochs=rungs * RUNG_EPOCHS, reduction_factor=ETA,
            promotion="restart"),
        "layer_freezing_continue": lambda: LayerFreezingScheduler(
            max_trainable_layers=layers, epochs=RUNG_EPOCHS, reduction_factor=ETA,
            promotion="continue"),
        "asha": lambda: ASHAScheduler(time_attr="fidelity/epoch", max_t=rungs * RUNG_EPOCHS,
                                      grace_period=1, reduction_factor=ETA),
        "hyperband": lambda: HyperBandScheduler(time_attr="fidelity/epoch",
                                                max_t=rungs * RUNG_EPOCHS, reduction_factor=ETA),
    }


def account(log: pd.DataFrame, layers: int, final_epoch: int, sign: float) -> pd.DataFrame:
    """``log`` (arrival order) with cumulative compute and the best full-fidelity score so far.

    A trial's epochs and seconds are deltas of its reported counters; an epoch count that does not
    grow is a restart from scratch (both counters start again). A result is full fidelity when
    every layer is trainable and it has trained ``final_epoch`` epochs.
    """
    frame = log.copy().reset_index(drop=True)
    last_epoch: dict[str, int] = {}
    last_seconds: dict[str, float] = {}
    epochs, seconds = [], []
    for row in frame.itertuples():
        before = last_epoch.get(row.trial_id, 0)
        restarted = row.epoch <= before
        epochs.append((row.epoch if restarted else row.epoch - before) * epoch_cost(row.z, layers))
        spent = 0.0 if restarted else last_seconds.get(row.trial_id, 0.0)
        seconds.append(row.seconds - spent)
        last_epoch[row.trial_id], last_seconds[row.trial_id] = row.epoch, row.seconds
    frame["compute_epochs"] = pd.Series(epochs).cumsum()
    frame["compute_seconds"] = pd.Series(seconds).cumsum()
    frame["full"] = (frame["z"] == layers) & (frame["epoch"] >= final_epoch)
    signed = (sign * frame["score"]).where(frame["full"])
    frame["best_full"] = sign * signed.cummax().ffill()  # cummax leaves NaN where the input has it
    return frame


def reach(frame: pd.DataFrame, target: float, sign: float) -> float:
    """Compute (epochs) at the first full-fidelity result at least as good as ``target``."""
    hits = frame[frame["full"] & (sign * frame["score"] >= sign * target - 1e-12)]
    return float(hits["compute_epochs"].iloc[0]) if len(hits) else math.inf


def best_within(frame: pd.DataFrame, budget: float) -> float:
    """Best full-fidelity score among results that arrived within ``budget`` compute (epochs)."""
    inside = frame[frame["compute_epochs"] <= budget + 1e-12]
    return float(inside["best_full"].iloc[-1]) if len(inside) else math.nan


def compare(frames: dict[str, pd.DataFrame], sign: float) -> pd.DataFrame:
    """Per scheduler against ASHA: compute to reach ASHA's best, best within ASHA's compute."""
    asha = frames["asha"]
    target = float(asha["best_full"].iloc[-1])
    asha_reach, asha_total = reach(asha, target, sign), float(asha["compute_epochs"].iloc[-1])
    rows = []
    for name, frame in frames.items():
        to_reach = reach(frame, target, sign)
        rows.append({
            "scheduler": name,
            "trials": frame["trial_id"].nunique(), "results": len(frame),
            "compute_epochs": float(frame["compute_epochs"].iloc[-1]),
            "compute_seconds": float(frame["compute_seconds"].iloc[-1]),
            "best_full": float(frame["best_full"].iloc[-1]),
            "asha_best": target,
            "reach_asha_best_epochs": to_reach,
            "reach_ratio_vs_asha": to_reach / asha_reach,
            "total_ratio_vs_asha": float(frame["compute_epochs"].iloc[-1]) / asha_total,
            "best_within_asha_compute": best_within(frame, asha_total),
        })
        # How far short of ASHA's best it ends within ASHA's compute (> 0: worse than ASHA).
        rows[-1]["shortfall_vs_asha"] = sign * (target - rows[-1]["best_within_asha_compute"])
    return pd.DataFrame(rows)


def end_to_end(configs: list[dict[str, Any]], seed: int, store_root: str, quick: bool) -> tuple[
        pd.DataFrame, pd.DataFrame]:
    """One seed: every scheduler over ``configs`` on the deep transformer; (comparison, arrivals)."""
    import ray
    from ray import tune

    import efficient_search as es
    from efficient_search.schedulers.rungs import make_rungs

    layers = TASK["layers"]
    rungs = len(make_rungs(min_layers=1, max_layers=layers, eta=ETA, epochs=1))
    sign = 1.0 if TASK["mode"] == "max" else -1.0
    space: dict[str, Any] = {"cfg": tune.grid_search(list(range(len(configs)))), **TASK["arch"]}
    for key in configs[0]:
        space[key] = tune.sample_from(lambda config, key=key: configs[config["cfg"]][key])
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    frames: dict[str, pd.DataFrame] = {}
    arrivals = []
    with tempfile.TemporaryDirectory() as ray_dir:
        for name, make in schedulers(layers, rungs).items():
            started = time.perf_counter()
            log = ArrivalLog()
            es.run({
                "name": f"bench-layer_freezing-{name}-s{seed}-{int(time.time())}",
                "task": TASK["task"],
                "task_options": TASK["quick" if quick else "full"] | {"epochs": rungs * RUNG_EPOCHS},
                "search_space": space,
                "scheduler": make(),
                "metric": TASK["metric"],
                "mode": TASK["mode"],
                "num_samples": 1,
                "resources": {"num_workers": 0, "cpus_per_worker": 2},  # one trial at a time
                "store": store_root,
                "storage_path": ray_dir,
                "seed": seed,
                "verbose": 0,
            }, callbacks=[log])
            frame = account(pd.DataFrame(log.rows), layers, rungs * RUNG_EPOCHS, sign)
            frames[name] = frame
            arrivals.append(frame.assign(scheduler=name, seed=seed))
            print(f"  (c) seed {seed} {name}: {frame['compute_epochs'].iloc[-1]:.1f} epoch-equivalents, "
                  f"best full {frame['best_full'].iloc[-1]:.4f}, {len(frame)} results "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return compare(frames, sign).assign(seed=seed), pd.concat(arrivals, ignore_index=True)
