"""Pretraining from a searched sub-network with distillation vs from scratch: a miniature replication.

The teacher is the tiny Llama trained on the plays; full mode first trains it for 4,000 steps
(8.2 M tokens, ~8x a student's budget, as a released model has seen far more text than any
student gets), quick mode uses the 500-step named model (1 M tokens, 16x the quick budget).

Per seed, in one process on a local Ray (every run is a real Tune trial whose rows land in the
Parquet store; trials run their loop in-process, no Train workers, to keep CPU time for training):

1. an evolutionary sub-network search (task ``subnetwork``) for the best held-out perplexity of
   the inherited weights among sub-networks of 10-25 % of the teacher's parameters;
2. four pretraining runs of one student shape (the searched one) on one token budget:
   random init; random init + KD; first-k sub-network + KD; searched sub-network + KD
   (KD: ``0.3 CE + 0.7 T^2 KL`` with T = 10, the teacher frozen beside the student).

Metric: the tokens each run needs to reach the random-init run's final validation loss (linear
interpolation between evaluations, the start included), as a ratio to the budget. FLOPs count the
student (6·N·D); the teacher's forward passes (2·N_teacher·D) are reported separately.

    python benchmarks/pretrain_from_subnetwork.py --quick   # 1 seed, 60k tokens (< 2 min once cached)
    python benchmarks/pretrain_from_subnetwork.py           # 3 seeds, 1M tokens per run
    python benchmarks/pretrain_from_subnetwork.py --teacher smollm2-135m --max-tokens 200000 --seeds 1
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import pandas as pd
import ray
from _common import RESULTS_DIR, print_result, record, save_figure  # benchmarks/ is on sys.path when run

import efficient_search as es
from efficient_search.store import ParquetStore
from efficient_search.store.rows import RUNNING
from efficient_search.tasks.students import parameter_count, searched_trial
from efficient_search.tasks.supernets import load_supernet, resolve_supernet, tiny_dir

NAME = "pretrain_from_subnetwork"
BUDGET_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
METHODS = {  # label -> (init, distill)
    "random": ("random", "none"),
    "random+KD": ("random", "online"),
    "first-k+KD": ("first-k", "online"),
    "searched+KD": ("searched", "online"),
}


def tokens_to_reach(curve: pd.DataFrame, target: float) -> float:
    """Tokens at which the validation curve first reaches ``target`` (NaN if it never does)."""
    tokens, losses = curve["tokens"].to_numpy(), curve["val_loss"].to_numpy()
    if losses[0] <= target:
        return 0.0
    for i in range(1, len(losses)):
        if losses[i] <= target:
            share = (losses[i - 1] - target) / (losses[i - 1] - losses[i])
            return float(tokens[i - 1] + share * (tokens[i] - tokens[i - 1]))
    return math.nan


def ratio_at(curves: dict[str, pd.DataFrame], label: str, budget: float) -> float:
    """Tokens random init needs to reach its loss at ``budget`` over the tokens ``label`` needs."""
    random = curves["random"]
    target = float(np.interp(budget, random["tokens"], random["val_loss"]))
    needed = tokens_to_reach(curves[label], target)
    return budget / needed if needed > 0 else math.inf if needed == 0 else math.nan


def curve_of(store: ParquetStore, experiment: str) -> tuple[pd.DataFrame, dict[str, float]]:
    """(tokens, val_loss, flops, teacher_flops) from the start, and the run's constants."""
    rows = store.results(experiment)
    rows = rows[rows["status"] == RUNNING].sort_values("iteration")
    first = rows.iloc[0]
    start = pd.DataFrame({"tokens": [0.0], "val_loss": [first["metric.init_val_loss"]], "flops": [0.0],
                          "teacher_flops": [0.0]})
    reported = pd.DataFrame({"tokens": rows["fidelity.tokens"], "val_loss": rows["metric.val_loss"],
                             "flops": rows["cost.flops"], "teacher_flops": rows["cost.teacher_flops"]})
    info = {"params": float(first["metric.params"]), "seconds": float(rows["cost.seconds"].iloc[-1])}
    return pd.concat([start, reported], ignore_index=True), info


def search(args: argparse.Namespace, tag: str, seed: int, teacher_params: int) -> str:
    """The evolutionary sub-network search of one seed; returns its experiment name."""
    name = f"bench-{NAME}-{tag}-s{seed}-search"
    es.run({
        "name": name, "task": "subnetwork",
        "task_options": {"model": args.teacher, "order": "importance", "eval_sequences": 16},
        "search_space": "subnetwork", "searcher": "evolution",
        "searcher_options": {"min_cost": args.min_fraction * teacher_params,
                             "max_cost": args.max_fraction * teacher_params, "population_size": 8},
        "metric": "val_perplexity", "mode": "min", "num_samples": args.search_evals,
        "max_concurrent_trials": 2, "resources": {"num_workers": 0, "cpus_per_worker": 1},
        "store": args.store, "seed": seed, "verbose": 0,
    })
    return name


def pretrain_runs(args: argparse.Namespace, tag: str, seed: int, search_name: str,
                  teacher_path: str) -> dict[str, str]:
    """The four pretraining runs of one seed; returns label -> experiment."""
    source = {"store": args.store, "experiment": search_name, "trial": "best",
              "max_params": args.max_fraction * parameter_count(load_supernet(teacher_path)[0])}
    config, _ = searched_trial(source, teacher_path)
    shape = {k: v for k, v in config.items() if k != "layer_order"}  # first-k keeps the first layers
    print(f"seed {seed}: searched student {config}", flush=True)
    names = {}
    for label, (init, distill) in METHODS.items():
        name = f"bench-{NAME}-{tag}-s{seed}-{label.replace('+', '-').lower()}"
        options: dict[str, Any] = {"model": args.teacher, "init": init, "distill": distill,
                                   "max_tokens": args.max_tokens, "reports": args.reports,
                                   "batch_size": 8, "eval_sequences": args.eval_sequences}
        if init == "searched":
            options["searched"] = source
        else:
            options["student"] = shape
        started = time.perf_counter()
        es.run({"name": name, "task": "pretrain", "task_options": options, "search_space": {"lr": args.lr},
                "num_samples": 1, "resources": {"num_workers": 0, "cpus_per_worker": 2},
                "store": args.store, "seed": seed, "verbose": 0})
        print(f"seed {seed}: {label} done in {time.perf_counter() - started:.0f} s", flush=True)
        names[label] = name
    return names


def plot(curves: dict[int, dict[str, pd.DataFrame]], target: dict[int, float], quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_tokens, by_compute) = plt.subplots(1, 2, figsize=(12, 4.8))
    for seed, runs in curves.items():
        for i, (label, curve) in enumerate(runs.items()):
            alpha, tag = (1.0, label) if seed == min(curves) else (0.35, None)
            later = curve.iloc[1:]
            by_tokens.plot(later["tokens"], later["val_loss"], color=f"C{i}", alpha=alpha, label=tag)
            by_compute.plot(later["flops"], later["val_loss"], color=f"C{i}", alpha=alpha, label=tag)
            if curve["teacher_flops"].iloc[-1] > 0:
                by_compute.plot(later["flops"] + later["teacher_flops"], later["val_loss"], color=f"C{i}",
                                alpha=alpha * 0.6, linestyle=":")
        by_tokens.axhline(target[seed], color="grey", linewidth=0.8, linestyle="--")
    by_tokens.set(xscale="log", xlabel="training tokens", ylabel="validation loss (nats/token)",
                  title="validation loss vs tokens (dashed: random init's final loss)")
    by_compute.set(xscale="log", xlabel="training compute C = 6·N·D (FLOPs; dotted: + teacher forward)",
                   ylabel="validation loss", title="on the compute axis")
    by_tokens.legend()
    by_compute.legend()
    save_figure(fig, NAME, quick)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, small budget (< 2 min once cached)")
    parser.add_argument("--teacher", default="tiny-shakespeare", help="named super-network or local folder")
    parser.add_argument("--teacher-steps", type=int, default=None,
                        help="train the tiny teacher this many steps of 2,048 tokens (full mode: 4,000, "
                             "8x the student budget; quick: the 500-step named model)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=None, help="token budget of every run")
    parser.add_argument("--reports", type=int, default=None, help="evaluations per run")
    parser.add_argument("--search-evals", type=int, default=None, help="sub-networks the search evaluates")
    parser.add_argument("--min-fraction", type=float, default=0.10)
    parser.add_argument("--max-fraction", type=float, default=0.25)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    args = parser.parse_args()
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.max_tokens = args.max_tokens or (60_000 if args.quick else 1_000_000)
    args.reports = args.reports or (10 if args.quick else 40)
    args.search_evals = args.search_evals or (10 if args.quick else 40)
    args.eval_sequences = 16 if args.quick else 32
    tag = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    started = time.perf_counter()
    if args.teacher_steps is None and not args.quick and args.teacher == "tiny-shakespeare":
        args.teacher_steps = 4000
    if args.teacher_steps:  # a teacher trained on far more tokens than any student gets
        args.teacher = str(tiny_dir(args.teacher_steps))
    ray.init(num_cpus=2, log_to_driver=False)
    teacher_path = str(resolve_supernet(args.teacher))
    teacher_params = parameter_count(load_supernet(teacher_path)[0])
    print(f"teacher {args.teacher}: {teacher_params:,} parameters; budget {args.max_tokens:,} tokens per "
          f"run, {args.seeds} seed(s)", flush=True)
    store = ParquetStore(args.store)
    rows, curves, targets = [], {}, {}
    for seed in range(args.seeds):
        names = pretrain_runs(args, tag, seed, search(args, tag, seed, teacher_params), teacher_path)
        curves[seed] = {}
        infos = {}
        for label, name in names.items():
            curves[seed][label], infos[label] = curve_of(store, name)
        targets[seed] = target = float(curves[seed]["random"]["val_loss"].iloc[-1])
        budget = float(curves[seed]["random"]["tokens"].iloc[-1])
        for label, curve in curves[seed].items():
            needed = tokens_to_reach(curve, target)
            rows.append({"seed": seed, "method": label, "params": infos[label]["params"],
                         "params_share": infos[label]["params"] / teacher_params,
                         "init_val_loss": float(curve["val_loss"].iloc[0]),
                         "final_val_loss": float(curve["val_loss"].iloc[-1]), "tokens_to_target": needed,
                         # inf: the start is already below the target; NaN: never reached in the budget
                         "tokens_ratio": budget / needed if needed > 0 else
                         math.inf if needed == 0 else math.nan,
                         "teacher_flops_share": float(curve["teacher_flops"].iloc[-1]
                                                      / curve["flops"].iloc[-1]),
                         "seconds": infos[label]["seconds"]})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
    columns = ["tokens_ratio", "final_val_loss", "init_val_loss"]
    summary = table.groupby("method", sort=False)[columns].median()
    print("\nmedians over seeds:")
    print(summary.to_string(float_format="{:.4g}".format))
    # The same ratio against random init stopped earlier: the head start shrinks as budgets grow.
    by_budget = pd.DataFrame([
        {"seed": seed, "budget_fraction": fraction, "method": label,
         "tokens_ratio": ratio_at(runs, label, fraction * float(runs["random"]["tokens"].iloc[-1]))}
        for seed, runs in curves.items() for fraction in BUDGET_FRACTIONS
        for label in METHODS if label != "random"
    ])
    by_fraction = (by_budget.groupby(["method", "budget_fraction"], sort=False)["tokens_ratio"]
                   .median().unstack())
    print("\ntokens ratio against random init stopped at a fraction of the budget (median over seeds):")
    print(by_fraction.to_string(float_format="{:.3g}".format))
    plot(curves, targets, args.quick)
    record(args.store, NAME, [("runs", table), ("summary", summary.reset_index()), ("by_budget", by_budget)],
           args.quick)
    figures = {
        "tokens_ratio_subnet_kd": summary.loc["searched+KD", "tokens_ratio"],
        "tokens_ratio_random_kd": summary.loc["random+KD", "tokens_ratio"],
        "tokens_ratio_firstk_kd": summary.loc["first-k+KD", "tokens_ratio"],
        "final_loss_random": summary.loc["random", "final_val_loss"],
        "final_loss_subnet_kd": summary.loc["searched+KD", "final_val_loss"],
        "tokens_ratio_subnet_kd_at_10pct": by_fraction.loc["searched+KD", 0.1],
        "seeds": float(args.seeds),
    }
    print(f"total {time.perf_counter() - started:.0f} s")
    print_result(NAME, figures, args.quick)
    ray.shutdown()


if __name__ == "__main__":
    main()
