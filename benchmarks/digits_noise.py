"""How much of a digits trial's score is training noise: one configuration's spread over training
seeds (noise) against the spread between configurations (signal), after every epoch.

The calibration behind ``warm_start.py``'s 8 cosine epochs: 8 random configurations of its space x 3
training seeds, trained directly (no Ray), under a constant and under a cosine learning rate.

    python benchmarks/digits_noise.py --quick   # 4 configurations x 2 seeds, 4 epochs
    python benchmarks/digits_noise.py           # 8 configurations x 3 seeds, 8 epochs
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import RESULTS_DIR, print_result, record, save_figure  # benchmarks/ is on sys.path when run

from efficient_search.tasks.digits import train_digits
from efficient_search.testing.sessions import RecordingSession

NAME = "digits_noise"


def configs(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` draws from ``warm_start.py``'s space."""
    rng = np.random.default_rng(seed)
    return [{"lr": float(np.exp(rng.uniform(np.log(0.005), np.log(0.5)))),
             "depth": int(rng.integers(1, 4)), "width": int(rng.choice([8, 16])),
             "batch_size": int(rng.choice([32, 64]))} for _ in range(count)]


def accuracies(config: Mapping[str, Any], epochs: int, seed: int) -> list[float]:
    session = RecordingSession()
    train_digits(config, {"epochs": epochs, "val_fraction": 0.25, "data_seed": 0}, session, seed)
    session.cleanup()
    return [metrics["val_accuracy"] for metrics, _ in session.reports]


def spreads(rows: pd.DataFrame) -> pd.DataFrame:
    """Per schedule and epoch: mean over configurations of the std over seeds (noise), std over
    configurations of the mean over seeds (signal), and their ratio."""
    out = []
    for (schedule, epoch), group in rows.groupby(["schedule", "epoch"]):
        noise = float(group.groupby("config")["val_accuracy"].std().mean())
        signal = float(group.groupby("config")["val_accuracy"].mean().std())
        out.append({"schedule": schedule, "epoch": int(epoch), "noise": noise, "signal": signal,
                    "noise_over_signal": noise / signal if signal > 0 else float("nan")})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 configurations x 2 seeds, 4 epochs")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    args = parser.parse_args()
    count, seeds, epochs = (4, 2, 4) if args.quick else (8, 3, 8)
    torch.set_num_threads(1)
    rows = []
    for schedule in ("constant", "cosine"):
        for c, config in enumerate(configs(count, seed=123)):
            for seed in range(seeds):
                values = accuracies({**config, "lr_schedule": schedule}, epochs, seed)
                for epoch, accuracy in enumerate(values, 1):
                    rows.append({"schedule": schedule, "config": c, "seed": seed, "epoch": epoch,
                                 "val_accuracy": accuracy})
            print(f"{schedule}: configuration {c + 1}/{count} done", flush=True)
    table = spreads(pd.DataFrame(rows))
    with pd.option_context("display.width", 120, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (schedule, group), color in zip(table.groupby("schedule"), ("C0", "C1"), strict=True):
        ax.plot(group["epoch"], group["noise"], color=color, label=f"{schedule}: noise (one config, seeds)")
        ax.plot(group["epoch"], group["signal"], color=color, linestyle="--",
                label=f"{schedule}: signal (configs)")
    ax.set(xlabel="epoch", ylabel="std of val_accuracy",
           title="digits: training noise vs configuration signal")
    ax.legend(fontsize=8)
    save_figure(fig, NAME, args.quick)
    record(args.store, NAME, [("spreads", table)], args.quick)
    if not args.quick:
        table.to_csv(RESULTS_DIR / f"{NAME}.csv", index=False, float_format="%.4g")
    last = table[table["epoch"] == epochs].set_index("schedule")
    print_result(NAME, {f"{kind}_{schedule}": float(last.loc[schedule, kind]) for kind in ("noise", "signal")
                        for schedule in last.index}, args.quick)


if __name__ == "__main__":
    main()
