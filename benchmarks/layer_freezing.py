"""Layer-freezing fidelity benchmark: ranking quality, cost per step, and end-to-end HPO.

(a) fidelity quality: a grid of configurations (training hyperparameters of a fixed network)
    trained at every number of trainable layers z and at full fidelity, on the digits CNN and the
    Shakespeare GPT-2; Spearman/Kendall correlation of each z with full fidelity, top-k overlap.
    Trained in this process with the tasks' own loops (no Ray: hundreds of small runs).
(b) cost: median time per training step and training memory at each z, relative to z = L.
(c) end to end, on real local Ray Tune runs of the digits task (trials in the trial process):
    LayerFreezingScheduler vs Ray's ASHA over epochs vs HyperBand vs FIFO random search, same
    configurations and seeds; total compute (sum of cost/seconds) and the best full-fidelity
    score each finds.

    python benchmarks/layer_freezing.py            # full figures (~15 min on 2 CPU cores)
    python benchmarks/layer_freezing.py --quick    # smoke run (< 2 min)
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import RESULTS_DIR, print_result, save_figure  # benchmarks/ is on sys.path when run
from _common import record as record_rows
from scipy import stats

from efficient_search.search_spaces.frozen_layers import FROZEN_LAYERS_GRID, grid_configs
from efficient_search.tasks import get_task
from efficient_search.testing.sessions import RecordingSession

NAME = "layer_freezing"

# Fixed architectures: 6 layer units each (stem/embeddings, 4 blocks, head).
TASKS = {
    "digits": {"arch": {"depth": 4, "width": 16}, "metric": "val_accuracy", "mode": "max"},
    "shakespeare": {"arch": {"n_layer": 4, "n_embd": 64, "n_head": 4}, "metric": "val_loss",
                    "mode": "min"},
}
LAYERS = 6


def sample_configs(n: int, seed: int) -> list[dict[str, Any]]:
    configs = list(grid_configs(FROZEN_LAYERS_GRID))
    rng = np.random.default_rng(seed)
    return [configs[i] for i in rng.choice(len(configs), size=n, replace=False)]


def train_once(task_name: str, params: dict[str, Any], options: dict[str, Any],
               seed: int) -> dict[str, float]:
    task = get_task(task_name)
    session = RecordingSession()
    task.train_loop(params, task.resolve_options(options), session, seed)
    session.cleanup()
    return session.reports[-1][0]


# -- (a) fidelity quality ----------------------------------------------------------------------
def fidelity_quality(configs: list[dict[str, Any]], zs: list[int], options: dict[str, dict],
                     seed: int, log: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for task_name, task in TASKS.items():
        started = time.perf_counter()
        for i, config in enumerate(configs):
            for z in zs:
                params = {**config, **task["arch"], "trainable_layers": z}
                metrics = train_once(task_name, params, options[task_name], seed)
                score = metrics[task["metric"]]
                score = score if math.isfinite(score) else (-1.0 if task["mode"] == "max" else 99.0)
                rows.append({"task": task_name, "config": i, "z": z, "score": score,
                             "seconds": metrics["cost/seconds"]})
                log.append({"task": task_name, "config_index": i, **config,
                            "trainable_layers": z, "score": score,
                            "cost/seconds": metrics["cost/seconds"]})
            print(f"  (a) {task_name}: {i + 1}/{len(configs)} configs at z={zs} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    summary = []
    for task_name, task in TASKS.items():
        table = frame[frame["task"] == task_name].pivot(index="config", columns="z", values="score")
        sign = 1.0 if task["mode"] == "max" else -1.0
        full = sign * table[LAYERS]
        k = max(1, len(full) // 4)
        top_full = set(full.nlargest(k).index)
        for z in zs:
            low = sign * table[z]
            summary.append({
                "task": task_name, "z": z, "fraction": z / LAYERS,
                "spearman": stats.spearmanr(low, full).statistic,
                "kendall": stats.kendalltau(low, full).statistic,
                f"top{k}_overlap": len(top_full & set(low.nlargest(k).index)) / k,
            })
    return pd.DataFrame(summary)


def seed_ceiling(configs: list[dict[str, Any]], options: dict[str, dict], seed: int,
                 quality_log: list[dict[str, Any]]) -> dict[str, float]:
    """Spearman of full fidelity with itself under another seed: the most any z can reach."""
    ceiling = {}
    for task_name, task in TASKS.items():
        first = [r["score"] for r in quality_log
                 if r["task"] == task_name and r["trainable_layers"] == LAYERS]
        second = [train_once(task_name, {**c, **task["arch"]}, options[task_name], seed + 1)
                  [task["metric"]] for c in configs]
        ceiling[task_name] = float(stats.spearmanr(first, second).statistic)
        print(f"  (a) {task_name}: full fidelity, seed {seed} vs {seed + 1}: Spearman "
              f"{ceiling[task_name]:.3f}", flush=True)
    return ceiling


# -- (b) cost per step ---------------------------------------------------------------------------
def step_cost(zs: list[int], steps: int, seed: int) -> pd.DataFrame:
    """Median step time and training memory of a larger GPT-2 and the CNN at each z."""
    from efficient_search.tasks.digits import DigitsResNet
    from efficient_search.tasks.shakespeare import build_model
    from efficient_search.train.freezing import freeze_layers
    from efficient_search.train.memory import ActivationMeter, training_memory_bytes

    torch.manual_seed(seed)
    models = {
        "shakespeare": (lambda: build_model({"n_layer": 4, "n_embd": 128, "n_head": 4}, 66, 128),
                        lambda: torch.randint(0, 66, (16, 128))),
        "digits": (lambda: DigitsResNet(depth=4, width=32), lambda: torch.randn(64, 1, 8, 8)),
    }
    rows = []
    for task_name, (make_model, make_input) in models.items():
        for z in zs:
            model = make_model()
            optimizer = torch.optim.AdamW(freeze_layers(model, z), lr=1e-3)
            x = make_input()
            meter = ActivationMeter(model)
            times = []
            for step in range(steps + 2):
                started = time.perf_counter()
                with meter.watching():
                    out = model(x)
                    logits = out.logits if hasattr(out, "logits") else out
                    loss = logits.float().pow(2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if step >= 2:  # the first steps allocate optimiser state
                    times.append(time.perf_counter() - started)
            rows.append({"task": task_name, "z": z, "step_s": statistics.median(times),
                         "memory_bytes": training_memory_bytes(model, optimizer, meter.peak)})
    frame = pd.DataFrame(rows)
    for task_name in models:
        mask = frame["task"] == task_name
        full = frame[mask & (frame["z"] == LAYERS)].iloc[0]
        frame.loc[mask, "step_speedup"] = full["step_s"] / frame.loc[mask, "step_s"]
        frame.loc[mask, "memory_ratio"] = full["memory_bytes"] / frame.loc[mask, "memory_bytes"]
    return frame


# -- (c) end to end ------------------------------------------------------------------------------
def end_to_end(configs: list[dict[str, Any]], epochs: int, store_root: str, seed: int,
               quick: bool) -> pd.DataFrame:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler

    import efficient_search as es
    from efficient_search.schedulers import LayerFreezingScheduler

    space: dict[str, Any] = {"cfg": tune.grid_search(list(range(len(configs)))),
                             **TASKS["digits"]["arch"]}
    for key in configs[0]:
        space[key] = tune.sample_from(lambda config, key=key: configs[config["cfg"]][key])
    schedulers = {
        "layer_freezing": lambda: LayerFreezingScheduler(
            max_trainable_layers=LAYERS, epochs=epochs, reduction_factor=2, promotion="restart"),
        "layer_freezing_2d": lambda: LayerFreezingScheduler(
            max_trainable_layers=LAYERS, epochs=epochs, min_epochs=1, reduction_factor=2,
            promotion="restart"),
        # Thawing adds one rung's epochs per rung: 4 rungs of epochs / 4 end at `epochs`.
        "layer_freezing_continue": lambda: LayerFreezingScheduler(
            max_trainable_layers=LAYERS, epochs=max(1, epochs // 4), reduction_factor=2,
            promotion="continue"),
        "asha": lambda: ASHAScheduler(time_attr="fidelity/epoch", max_t=epochs, grace_period=1,
                                      reduction_factor=2),
        "hyperband": lambda: HyperBandScheduler(time_attr="fidelity/epoch", max_t=epochs,
                                                reduction_factor=2),
        "fifo": FIFOScheduler,
    }
    if quick:  # the smoke run keeps one variant of each idea
        for name in ("layer_freezing_2d", "hyperband"):
            del schedulers[name]
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as ray_dir:
        for name, make in schedulers.items():
            started = time.perf_counter()
            result = es.run({
                "name": f"bench-{NAME}-{name}-{int(time.time())}",
                "task": "digits",
                "task_options": {"epochs": epochs},
                "search_space": space,
                "scheduler": make(),
                "metric": "val_accuracy",
                "mode": "max",
                "num_samples": 1,
                "max_concurrent_trials": 2,
                "resources": {"num_workers": 0, "cpus_per_worker": 1},
                "store": store_root,
                "storage_path": ray_dir,
                "seed": seed,
                "verbose": 0,
            })
            frame = result.results()
            reported = frame[frame["status"] == "RUNNING"].sort_values(["trial_id", "iteration"])
            compute = sum(spent_seconds(r["cost.seconds"].tolist())
                          for _, r in reported.groupby("trial_id"))
            full = reported[(reported["fidelity.trainable_layers"] == LAYERS)
                            & (reported["fidelity.epoch"] >= epochs)]
            best = float(full["metric.val_accuracy"].max()) if len(full) else float("nan")
            rows.append({"scheduler": name, "compute_s": compute, "best_full": best,
                         "trials": reported["trial_id"].nunique(), "results": len(reported),
                         "wall_s": time.perf_counter() - started})
            print(f"  (c) {name}: compute {compute:.1f} s, best full-fidelity accuracy "
                  f"{best:.4f}, {len(reported)} results", flush=True)
    return pd.DataFrame(rows)


def spent_seconds(cumulative: list[float]) -> float:
    """Training seconds of one trial from its cumulative cost/seconds (a drop is a restart)."""
    total, last = 0.0, 0.0
    for value in cumulative:
        total += value - last if value >= last else value
        last = value
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 2 minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # steady per-step timings on a shared 2-core machine

    if args.quick:
        n_configs, zs, e2e_configs, e2e_epochs, steps = 5, [1, 2, LAYERS], 3, 2, 4
        options = {"digits": {"epochs": 1},
                   "shakespeare": {"epochs": 1, "steps_per_epoch": 8, "max_chars": 60_000,
                                   "eval_windows": 16}}
    else:
        n_configs, zs, e2e_configs, e2e_epochs, steps = 24, list(range(1, LAYERS + 1)), 16, 4, 10
        options = {"digits": {"epochs": 3},
                   "shakespeare": {"epochs": 2, "steps_per_epoch": 30, "max_chars": 200_000,
                                   "eval_windows": 32}}
    print(f"layer-freezing benchmark ({'quick' if args.quick else 'full'}): {n_configs} configs, "
          f"z in {zs} of L={LAYERS}", flush=True)
    log: list[dict[str, Any]] = []
    configs = sample_configs(n_configs, args.seed)
    quality = fidelity_quality(configs, zs, options, args.seed, log)
    print(quality.to_string(index=False, float_format="{:.3f}".format), flush=True)
    # The seed-noise ceiling doubles the full-fidelity runs: full mode only.
    ceiling = {} if args.quick else seed_ceiling(configs, options, args.seed, log)
    cost = step_cost(zs, steps, args.seed)
    print(cost.to_string(index=False, float_format="{:.3g}".format), flush=True)
    e2e = end_to_end(sample_configs(e2e_configs, args.seed + 1), e2e_epochs, args.store, args.seed,
                     quick=args.quick)
    print(e2e.to_string(index=False, float_format="{:.4g}".format), flush=True)

    z40 = max(1, round(0.4 * LAYERS))
    at40 = quality[quality["z"] == z40] if z40 in zs else quality[quality["z"] == zs[1]]
    low = cost[cost["z"] == min(zs)]
    asha = e2e.set_index("scheduler").loc["asha"]
    ours = e2e.set_index("scheduler").loc["layer_freezing"]
    figures = {
        "spearman_at_40pct": float(at40["spearman"].min()),
        "spearman_at_40pct_digits": float(at40.set_index("task").loc["digits", "spearman"]),
        "spearman_at_40pct_shakespeare": float(
            at40.set_index("task").loc["shakespeare", "spearman"]),
        "step_speedup_min_z": float(low["step_speedup"].min()),
        "memory_ratio_min_z": float(low["memory_ratio"].min()),
        "compute_ratio_vs_asha": float(ours["compute_s"] / asha["compute_s"]),
        "best_gap_vs_asha": float(asha["best_full"] - ours["best_full"]),
    }
    figures.update({f"seed_ceiling_{task}": value for task, value in ceiling.items()})
    for variant in ("layer_freezing_2d", "layer_freezing_continue"):
        if variant not in set(e2e["scheduler"]):
            continue
        row = e2e.set_index("scheduler").loc[variant]
        figures[f"compute_ratio_vs_asha_{variant[15:]}"] = float(row["compute_s"] / asha["compute_s"])
        figures[f"best_gap_vs_asha_{variant[15:]}"] = float(asha["best_full"] - row["best_full"])
    record(args.store, log, quality, cost, e2e, figures, quick=args.quick)
    plot(quality, cost, e2e, quick=args.quick)
    print_result("layer_freezing", figures, args.quick)


def record(store_root: str, log: list[dict[str, Any]], quality: pd.DataFrame, cost: pd.DataFrame,
           e2e: pd.DataFrame, figures: dict[str, float], quick: bool) -> None:
    """Every measured row to the store, experiment ``bench-layer_freezing``."""
    tables = [("quality-run", pd.DataFrame(log)), ("quality", quality), ("cost", cost),
              ("end-to-end", e2e), ("headline", pd.DataFrame([figures]))]
    record_rows(store_root, NAME, tables, quick, searcher="grid")


def plot(quality: pd.DataFrame, cost: pd.DataFrame, e2e: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for task_name, rows in quality.groupby("task"):
        axes[0].plot(rows["fraction"], rows["spearman"], marker="o", label=f"{task_name} Spearman")
        axes[0].plot(rows["fraction"], rows["kendall"], marker="x", linestyle="--",
                     label=f"{task_name} Kendall")
    axes[0].axhline(0.9, color="grey", linewidth=0.8)
    axes[0].set(xlabel="trainable fraction z / L", ylabel="rank correlation with z = L",
                title="(a) ranking quality", ylim=(-0.2, 1.05))
    axes[0].legend(fontsize=7)
    for task_name, rows in cost.groupby("task"):
        axes[1].plot(rows["z"], rows["step_speedup"], marker="o", label=f"{task_name} step speed-up")
        axes[1].plot(rows["z"], rows["memory_ratio"], marker="s", linestyle="--",
                     label=f"{task_name} memory saving")
    axes[1].set(xlabel="trainable layers z", ylabel="x vs full training", yscale="log",
                title="(b) cost relative to z = L")
    axes[1].legend(fontsize=7)
    axes[2].scatter(e2e["compute_s"], e2e["best_full"])
    for _, row in e2e.iterrows():
        axes[2].annotate(row["scheduler"], (row["compute_s"], row["best_full"]), fontsize=8)
    axes[2].set(xlabel="total training compute (s)", ylabel="best full-fidelity accuracy",
                title="(c) end to end on digits")
    save_figure(fig, NAME, quick)


if __name__ == "__main__":
    main()
