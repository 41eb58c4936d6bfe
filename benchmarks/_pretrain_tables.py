"""README tables of ``pretrain_from_subnetwork.py``, rendered from its committed CSV summaries.

    python benchmarks/_pretrain_tables.py      # prints the Markdown that README's section holds
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "pretrain_from_subnetwork"
ORDER = ["random+KD", "first-k+KD", "importance+KD", "searched+KD"]


def read(part: str, results: Path = RESULTS) -> pd.DataFrame:
    return pd.read_csv(results / f"{NAME}_{part}.csv")


def row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: list[str], rows: list[list[object]]) -> str:
    return "\n".join([row(header), row(["---"] * len(header)), *(row(r) for r in rows)])


def millions(value: float) -> str:
    return f"{value / 1e6:.2f} M"


def number(value: float, digits: int = 3) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "nan" if missing else f"{value:.{digits}g}"


def by_budget(column: str, results: Path = RESULTS) -> str:
    frame, context = read("by_budget", results), read("context", results).iloc[0]
    rows = []
    for fraction, part in frame.groupby("budget_fraction", sort=True):
        cells = dict(zip(part["method"], part[column], strict=True))
        tokens = fraction * float(context["max_tokens"])
        rows.append([f"{fraction:.0%} ({tokens / 1e3:.0f}k tokens)", *(cells.get(m, "") for m in ORDER)])
    return table(["random init stopped at", *ORDER], rows)


def per_seed(results: Path = RESULTS) -> str:
    runs = read("runs", results)
    rows = [[int(r.seed), r.method, millions(r.params), f"{r.tokens_per_param:.3f}", f"{r.init_val_loss:.3f}",
             f"{r.final_val_loss:.3f}", number(r.tokens_ratio), number(r.compute_ratio),
             "" if math.isnan(r.temperature) else f"{r.temperature:g}", f"{r.seconds:.0f}"]
            for r in runs.itertuples()]
    return table(["seed", "method", "params", "tokens/param", "start loss", "final loss", "tokens ratio",
                  "compute ratio", "KD T", "train s"], rows)


def shapes(results: Path = RESULTS) -> str:
    runs = read("runs", results)
    kept = runs[runs["method"].isin(["searched+KD", "importance+KD"])]
    rows = [[int(r.seed), "searched" if r.method == "searched+KD" else "hand-chosen (importance+KD)",
             r.shape, millions(r.params)] for r in kept.itertuples()]
    return table(["seed", "shape", "sub-network", "params"], rows)


def searches(results: Path = RESULTS) -> str:
    frame = read("searches", results)
    rows = [[int(r.seed), f"{r.budget_share:.0%}", f"{r.search_perplexity:,.0f}",
             f"{millions(r.params)} ({millions(r.params_without_embeddings)})", int(r.n_embd),
             int(r.evaluations)] for r in frame.itertuples()]
    return table(["seed", "budget", "search perplexity", "params (without embeddings)", "n_embd",
                  "evaluations"], rows)


def temperatures(results: Path = RESULTS) -> str:
    frame = read("temperature", results)
    wide = frame.pivot_table(index=["seed", "init"], columns="temperature",
                             values="search_loss").reset_index()
    temps = [c for c in wide.columns if c not in ("seed", "init")]
    rows = []
    for r in wide.itertuples(index=False):
        values = dict(zip(wide.columns, r, strict=True))
        best = min(temps, key=lambda t: values[t])
        rows.append([int(values["seed"]), values["init"],
                     *(f"**{values[t]:.3f}**" if t == best else f"{values[t]:.3f}" for t in temps)])
    return table(["seed", "init", *(f"T = {t:g}" for t in temps)], rows)


def law(results: Path = RESULTS) -> str:
    frame = read("law", results)
    rows = [[int(r.seed), r.method, f"{r.final_val_loss:.3f}",
             "below the fitted asymptote" if r.below_asymptote else millions(r.extrapolated_tokens),
             number(r.extrapolated_ratio), f"{r.fit_rmse:.3f}", f"{r.holdout_error:+.3f}"]
            for r in frame.itertuples()]
    return table(["seed", "method", "final loss", "tokens random init would need", "ratio to the budget",
                  "fit RMSE", "half-budget fit's error at the budget"], rows)


def markdown(results: Path = RESULTS) -> str:
    parts = [("Tokens ratio by budget", by_budget("tokens_ratio", results)),
             ("Compute ratio by budget", by_budget("compute_ratio", results)),
             ("Per seed", per_seed(results)), ("Shapes", shapes(results)), ("Searches", searches(results)),
             ("KD temperature on search blocks", temperatures(results)), ("Law", law(results))]
    return "\n\n".join(f"<!-- {title} -->\n{text}" for title, text in parts)


if __name__ == "__main__":
    print(markdown())
