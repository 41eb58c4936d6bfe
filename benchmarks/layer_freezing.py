"""Layer-freezing fidelity benchmark: ranking quality over seeds, cost per step, end to end vs ASHA.

(a) ranking quality (``_freezing_quality``): configurations of the ``frozen_layers`` grid trained
    at every z of each network's grid under 3 training seeds, on the digits CNN (6 layer units),
    the Shakespeare GPT-2 (6) and a deeper Shakespeare GPT-2 (12); Spearman/Kendall with full
    fidelity as mean ± standard error over seeds, against the seed-noise ceiling.
(b) cost: time per training step (median of interleaved repeats, with their spread) and training
    memory at each z, relative to z = L, on the same three networks.
(c) end to end (``_freezing_e2e``), 3 seeds on the deeper GPT-2, real local Ray Tune:
    ``layer_freezing`` (restart and continue) against Ray's ASHA and HyperBand over epochs, same
    configurations and budget: compute to reach ASHA's best, best within ASHA's compute.

Training is seeded and single-threaded per run (threads, data order, initialisation): a seed gives
the same losses and rankings run after run, so two runs print the same RESULT line except for the
``time_*`` fields, which are timings.

    python benchmarks/layer_freezing.py            # full figures (76 min on 2 CPU cores)
    python benchmarks/layer_freezing.py --quick    # smoke run (~5 min)
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import RESULTS_DIR, print_result, save_figure  # benchmarks/ is on sys.path when run
from _common import record as record_rows
from _freezing_e2e import end_to_end
from _freezing_quality import (
    TASKS,
    collect_runs,
    nearest_z,
    per_seed_correlations,
    quality_pool,
    submit_runs,
    summarise,
)

from efficient_search.search_spaces.frozen_layers import FROZEN_LAYERS_GRID, grid_configs

NAME = "layer_freezing"
#: The z of each network's grid (full mode); 5 of 12 units is the deep model's ~40 %.
ZS = {"digits": [1, 2, 3, 4, 5, 6], "shakespeare": [1, 2, 3, 4, 5, 6],
      "shakespeare_deep": [1, 2, 3, 4, 5, 6, 8, 10, 12]}
QUICK_ZS = {"digits": [1, 2, 6], "shakespeare": [1, 2, 6], "shakespeare_deep": [1, 5, 12]}


def sample_configs(n: int, seed: int) -> list[dict[str, Any]]:
    configs = list(grid_configs(FROZEN_LAYERS_GRID))
    rng = np.random.default_rng(seed)
    return [configs[i] for i in rng.choice(len(configs), size=n, replace=False)]


# -- (b) cost per step ---------------------------------------------------------------------------
def cost_models() -> dict[str, tuple[Any, Any]]:
    """Per network: (build the model, make one training batch), at the shapes part (a) trains."""
    from efficient_search.tasks.digits import DigitsResNet
    from efficient_search.tasks.shakespeare import build_model

    def gpt(task_key: str) -> tuple[Any, Any]:
        block = TASKS[task_key]["full"]["block_size"]
        return (lambda: build_model(TASKS[task_key]["arch"], 66, block),
                lambda: torch.randint(0, 66, (32, block)))

    return {"digits": (lambda: DigitsResNet(**TASKS["digits"]["arch"]), lambda: torch.randn(64, 1, 8, 8)),
            "shakespeare": gpt("shakespeare"), "shakespeare_deep": gpt("shakespeare_deep")}


def time_steps(make_model: Any, make_input: Any, z: int, steps: int) -> tuple[float, int]:
    """Median seconds of ``steps`` training steps at ``z`` (after two warm-up steps), and the
    training memory (parameters, gradients, optimiser state, peak saved activations)."""
    from efficient_search.train.freezing import freeze_layers
    from efficient_search.train.memory import ActivationMeter, training_memory_bytes

    torch.manual_seed(0)
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
    return statistics.median(times), training_memory_bytes(model, optimizer, meter.peak)


def step_cost(zs: dict[str, list[int]], steps: int, repeats: int) -> pd.DataFrame:
    """Per (task, z, repeat): median step time and memory; repeats interleave every (task, z), so
    a slow spell of the machine hits all of them alike. Speed-ups are within one repeat."""
    rows = []
    models = cost_models()
    for repeat in range(repeats):
        for task_key, (make_model, make_input) in models.items():
            for z in zs[task_key]:
                step_s, memory = time_steps(make_model, make_input, z, steps)
                rows.append({"task": task_key, "layers": TASKS[task_key]["layers"], "z": z,
                             "repeat": repeat, "step_s": step_s, "memory_bytes": memory})
    frame = pd.DataFrame(rows)
    full = frame[frame["z"] == frame["layers"]].set_index(["task", "repeat"])
    keys = list(zip(frame["task"], frame["repeat"], strict=True))
    frame["step_speedup"] = full.loc[keys, "step_s"].to_numpy() / frame["step_s"]
    frame["memory_ratio"] = full.loc[keys, "memory_bytes"].to_numpy() / frame["memory_bytes"]
    return frame


def cost_summary(cost: pd.DataFrame) -> pd.DataFrame:
    """Per (task, z): median step speed-up over repeats with its range, and the memory ratio."""
    grouped = cost.groupby(["task", "layers", "z"], sort=True)
    return grouped.agg(step_s=("step_s", "median"), step_speedup=("step_speedup", "median"),
                       step_speedup_min=("step_speedup", "min"),
                       step_speedup_max=("step_speedup", "max"),
                       memory_ratio=("memory_ratio", "median"), repeats=("repeat", "nunique"),
                       ).reset_index()


# -- headline ------------------------------------------------------------------------------------
def headline(summary: pd.DataFrame, cost: pd.DataFrame, e2e: pd.DataFrame) -> dict[str, Any]:
    """The RESULT figures; ``time_*`` fields are timings, every other field is deterministic."""
    figures: dict[str, Any] = {}
    for task_key in summary["task"].unique():
        rows = summary[summary["task"] == task_key]
        z40 = nearest_z(TASKS[task_key]["layers"], 0.4, rows["z"].tolist())
        at = rows[rows["z"] == z40].iloc[0]
        figures[f"spearman_40_{task_key}"] = at["spearman"]
        figures[f"spearman_40_se_{task_key}"] = at["spearman_se"]
        figures[f"ceiling_{task_key}"] = at["ceiling"]
    deep = cost[cost["task"] == "shakespeare_deep"]
    low = deep[deep["z"] == deep["z"].min()].iloc[0]
    figures["memory_ratio_min_z_deep"] = low["memory_ratio"]
    by = e2e.groupby("scheduler")
    for name in ("layer_freezing_continue", "layer_freezing_restart", "hyperband"):
        if name in by.groups:
            short = name.removeprefix("layer_freezing_")
            figures[f"reach_ratio_{short}"] = float(by.get_group(name)["reach_ratio_vs_asha"].median())
            figures[f"shortfall_{short}"] = float(by.get_group(name)["shortfall_vs_asha"].median())
    figures["time_step_speedup_min_z_deep"] = low["step_speedup"]
    figures["time_step_speedup_range_deep"] = f"{low['step_speedup_min']:.2f}-{low['step_speedup_max']:.2f}"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (~5 minutes)")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    parser.add_argument("--workers", type=int, default=2, help="processes for part (a)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # steady per-step timings on a shared 2-core machine
    if args.quick:
        n_configs, zs, seeds, e2e_configs, e2e_seeds, steps, repeats = 5, QUICK_ZS, [0, 1], 3, [0], 3, 2
    else:
        n_configs, zs, seeds, e2e_configs, e2e_seeds, steps, repeats = 16, ZS, [0, 1, 2], 9, [0, 1, 2], 8, 5
    mode = "quick" if args.quick else "full"
    print(f"layer-freezing benchmark ({mode}): {n_configs} configs x seeds {seeds}; z grids {zs}",
          flush=True)
    started = time.perf_counter()
    # Part (a) trains in the background while part (c) runs: both are deterministic, and (c) spends
    # much of its time starting trial processes. Part (b), the timings, runs alone afterwards.
    with quality_pool(args.workers) as pool:
        futures = submit_runs(pool, sample_configs(n_configs, 0), zs, seeds, args.quick)
        print(f"  (a) {len(futures)} runs queued on {args.workers} processes", flush=True)
        comparisons, arrivals = [], []
        for seed in e2e_seeds:
            comparison, arrival = end_to_end(sample_configs(e2e_configs, 100 + seed), seed,
                                             args.store, args.quick)
            comparisons.append(comparison)
            arrivals.append(arrival)
        runs = collect_runs(futures)
    e2e, arrival = pd.concat(comparisons, ignore_index=True), pd.concat(arrivals, ignore_index=True)
    print(e2e.to_string(index=False, float_format="{:.4g}".format), flush=True)
    per_seed = per_seed_correlations(runs)
    summary = summarise(per_seed, runs)
    print(summary.to_string(index=False, float_format="{:.3f}".format), flush=True)
    cost = cost_summary(step_cost(zs, steps, repeats))
    print(cost.to_string(index=False, float_format="{:.3g}".format), flush=True)
    figures = headline(summary, cost, e2e)
    figures["time_minutes"] = (time.perf_counter() - started) / 60
    if not args.quick:
        write_summaries(per_seed, summary, cost, e2e)
    record_rows(args.store, NAME, [("quality-run", runs), ("quality-seed", per_seed),
                                   ("quality", summary), ("cost", cost), ("end-to-end", e2e),
                                   ("arrivals", arrival), ("headline", pd.DataFrame([figures]))],
                args.quick, searcher="grid")
    plot(summary, cost, arrival, quick=args.quick)
    print_result(NAME, figures, args.quick)


def write_summaries(per_seed: pd.DataFrame, summary: pd.DataFrame, cost: pd.DataFrame,
                    e2e: pd.DataFrame) -> None:
    """The committed summaries README's tables are made from (full mode only)."""
    ceilings = summary.groupby("task")[["ceiling", "ceiling_se"]].first()
    per_seed = per_seed.join(ceilings, on="task")
    for part, frame in (("quality", per_seed), ("cost", cost), ("e2e", e2e)):
        path = RESULTS_DIR / f"{NAME}_{part}.csv"
        frame.to_csv(path, index=False, float_format="%.6g")
        print(f"wrote {path}")


def plot(summary: pd.DataFrame, cost: pd.DataFrame, arrival: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for task_key, rows in summary.groupby("task"):
        line = axes[0].errorbar(rows["fraction"], rows["spearman"], yerr=rows["spearman_se"],
                                marker="o", capsize=3, label=f"{task_key} (L={rows['layers'].iloc[0]})")
        axes[0].axhline(rows["ceiling"].iloc[0], color=line[0].get_color(), linestyle=":",
                        linewidth=1)
    axes[0].axhline(0.9, color="grey", linewidth=0.8)
    axes[0].set(xlabel="trainable fraction z / L", ylabel="Spearman with z = L (same seed)",
                title="(a) ranking quality, mean ± s.e. over seeds; dotted: seed ceiling",
                ylim=(-0.2, 1.05))
    axes[0].legend(fontsize=7)
    for task_key, rows in cost.groupby("task"):
        fraction = rows["z"] / rows["layers"]
        axes[1].errorbar(fraction, rows["step_speedup"],
                         yerr=[rows["step_speedup"] - rows["step_speedup_min"],
                               rows["step_speedup_max"] - rows["step_speedup"]],
                         marker="o", capsize=3, label=f"{task_key} step speed-up")
        axes[1].plot(fraction, rows["memory_ratio"], marker="s", linestyle="--",
                     label=f"{task_key} memory saving")
    axes[1].set(xlabel="trainable fraction z / L", ylabel="x vs full training", yscale="log",
                title="(b) cost relative to z = L (median, range over repeats)")
    axes[1].legend(fontsize=7)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = dict(zip(sorted(arrival["scheduler"].unique()), palette, strict=False))
    for (name, seed), rows in arrival.groupby(["scheduler", "seed"]):
        axes[2].step(rows["compute_epochs"], rows["best_full"], where="post", color=colours[name],
                     alpha=0.8, label=name if seed == arrival["seed"].min() else None)
    axes[2].set(xlabel="compute (full-epoch equivalents)", ylabel="best full-fidelity val_loss",
                title="(c) deep GPT-2 end to end, one line per seed")
    axes[2].legend(fontsize=7)
    save_figure(fig, NAME, quick)


if __name__ == "__main__":
    main()
