"""One self-contained HTML page per experiment: ``efficient-search report --html``.

The page works offline (plotly's JavaScript is inlined once, no CDN) and holds, where the
experiment has what they need: the ranked trials table (click a header to sort; ``#sort=<column>``
or ``#sort=<column>&desc`` in the URL sorts on load), learning curves, the best result so far
over wall time and over the trials' summed training time, the Pareto front of a multi-objective
run, the rank correlation of each fidelity level with the highest one (Spearman, trials that
reached both), the compute axis (``cost.flops``) of pretraining runs, and hyperparameter
importance (scikit-learn's permutation importance of a random forest fitted to each trial's
best result).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from efficient_search.report import best_so_far, objectives, pareto_front, ranked_table
from efficient_search.store import ParquetStore
from efficient_search.store.rows import RUNNING

#: Trials a fidelity level needs before its rank correlation is shown.
MIN_TRIALS_FOR_CORRELATION = 3
#: Trials (and varying hyperparameters) importance needs.
MIN_TRIALS_FOR_IMPORTANCE = 4

SORT_SCRIPT = """
function sortTable(table, column, descending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const value = (row) => {
    const text = row.cells[column].textContent.trim();
    const number = parseFloat(text);
    return isNaN(number) || text === "" ? text : number;
  };
  rows.sort((a, b) => {
    const x = value(a), y = value(b);
    const order = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
    return descending ? -order : order;
  });
  rows.forEach((row) => body.appendChild(row));
  table.dataset.sorted = column + (descending ? "-desc" : "");
}
document.querySelectorAll("table.sortable").forEach((table) => {
  Array.from(table.tHead.rows[0].cells).forEach((cell, column) => {
    cell.addEventListener("click", () => {
      sortTable(table, column, table.dataset.sorted === String(column));
    });
  });
  const wanted = new URLSearchParams(location.hash.slice(1));
  const name = wanted.get("sort");
  if (name !== null) {
    const column = Array.from(table.tHead.rows[0].cells).findIndex((c) => c.textContent === name);
    if (column >= 0) sortTable(table, column, wanted.has("desc"));
  }
});
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.sortable { border-collapse: collapse; font-size: 0.85em; }
table.sortable th { cursor: pointer; background: #eee; position: sticky; top: 0; }
table.sortable td, table.sortable th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
section { margin-bottom: 2.5em; }
p.note { color: #555; font-size: 0.9em; }
"""


def _figure_html(fig: Any) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True}))


def _table_html(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in table.itertuples(index=False))
    return f'<table class="sortable" id="trials"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.6g}"
    return str(value)


def learning_curves(reported: pd.DataFrame, column: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for trial_id, rows in reported.groupby("trial_id"):
        fig.add_trace(go.Scatter(x=rows["iteration"], y=rows[column], mode="lines+markers",
                                 name=str(trial_id)))
    fig.update_layout(title="Learning curves", xaxis_title="reported result (iteration)",
                      yaxis_title=column.removeprefix("metric."))
    return fig


def best_over_time_and_cost(results: pd.DataFrame, column: str, mode: str) -> Any:
    """Best so far against wall time, and against the trials' summed training time."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    trace = best_so_far(results, column, mode)
    rows = results[results["status"] == RUNNING].dropna(subset=[column, "timestamp"]).sort_values("timestamp")
    latest: dict[str, float] = {}
    spent = []
    for trial_id, seconds in zip(rows["trial_id"], rows["time_total_s"].fillna(0.0), strict=True):
        latest[trial_id] = float(seconds)
        spent.append(sum(latest.values()))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("over wall time", "over training time spent"))
    fig.add_trace(go.Scatter(x=trace["seconds"], y=trace["best"], line_shape="hv", name="wall"), 1, 1)
    fig.add_trace(go.Scatter(x=spent, y=trace["best"], line_shape="hv", name="spent"), 1, 2)
    fig.update_xaxes(title_text="seconds since the first result", row=1, col=1)
    fig.update_xaxes(title_text="summed trial seconds", row=1, col=2)
    fig.update_layout(title=f"Best {column.removeprefix('metric.')} so far ({mode})", showlegend=False)
    return fig


def fidelity_correlation(reported: pd.DataFrame, column: str) -> pd.DataFrame:
    """Spearman correlation of each fidelity level's scores with the highest level's, over the
    trials that reached both; the fidelity is the one ``fidelity.*`` column that varies, else
    the iteration."""
    varying = [c for c in reported.columns if c.startswith("fidelity.") and reported[c].nunique() > 1]
    level = varying[0] if len(varying) == 1 else "iteration"
    scores = reported.dropna(subset=[column]).groupby(["trial_id", level])[column].last().unstack(level)
    if scores.shape[1] < 2:
        return pd.DataFrame(columns=["fidelity", "level", "spearman", "trials"])
    top = scores.columns.max()
    rows = []
    for value in scores.columns[:-1]:
        both = scores[[value, top]].dropna()
        if len(both) >= MIN_TRIALS_FOR_CORRELATION:
            rho = both[value].rank().corr(both[top].rank())
            rows.append({"fidelity": level, "level": value, "spearman": rho, "trials": len(both)})
    return pd.DataFrame(rows, columns=["fidelity", "level", "spearman", "trials"])


def importance(store: ParquetStore, experiment: str, column: str, mode: str, seed: int = 0) -> pd.Series:
    """Permutation importance (scikit-learn) of each varying hyperparameter for the trials' best
    results; empty when there are too few trials or nothing varies."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    trials = store.trials(experiment, column, mode).dropna(subset=[column])
    configs = trials[[c for c in trials.columns if c.startswith("config.")]]
    configs = configs.loc[:, [c for c in configs.columns if configs[c].nunique() > 1]]
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE or configs.empty:
        return pd.Series(dtype=float)
    features = pd.get_dummies(configs.rename(columns=lambda c: c.removeprefix("config.")), dtype=float)
    forest = RandomForestRegressor(n_estimators=200, random_state=seed).fit(features, trials[column])
    scores = permutation_importance(forest, features, trials[column], n_repeats=10, random_state=seed)
    return pd.Series(scores.importances_mean, index=features.columns).sort_values(ascending=False)


def write_html_report(store: ParquetStore, experiment: str, path: str | os.PathLike[str],
                      metric: str | None = None, mode: str | None = None) -> Path:
    """Write the experiment's page (module docstring) to ``path``; returns it."""
    try:
        import plotly.express as px
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
    except ImportError as error:
        raise ValueError("`report --html` needs plotly, which is not installed. Fix: pip install "
                         "'efficient-search[html]'.") from error
    results = store.results(experiment)
    column, mode = store._objective(experiment, metric, mode, results)
    reported = results[results["status"] == RUNNING]
    name = column.removeprefix("metric.")
    sections = [("Trials, best first", _table_html(ranked_table(store, experiment, metric, mode)),
                 "Click a header to sort; #sort=&lt;column&gt;[&amp;desc] in the address sorts on load.")]
    sections.append(("Learning curves", _figure_html(learning_curves(reported, column)), ""))
    sections.append(("Best so far", _figure_html(best_over_time_and_cost(results, column, mode)), ""))
    metrics, modes = objectives(store, experiment)
    if len(metrics) >= 2:
        front = pareto_front(store, experiment)
        last = reported.sort_values("iteration").groupby("trial_id").tail(1)
        x, y = (f"metric.{m}" for m in metrics[:2])
        fig = go.Figure([go.Scatter(x=last[x], y=last[y], mode="markers", name="trials"),
                         go.Scatter(x=front[x], y=front[y], mode="lines+markers", name="Pareto front")])
        fig.update_layout(title=f"Pareto front ({modes[0]} {metrics[0]}, {modes[1]} {metrics[1]})",
                          xaxis_title=metrics[0], yaxis_title=metrics[1])
        sections.append(("Pareto front", _figure_html(fig), ""))
    correlation = fidelity_correlation(reported, column)
    if not correlation.empty:
        level = correlation["fidelity"].iloc[0]
        fig = px.bar(correlation, x="level", y="spearman", hover_data=["trials"],
                     title=f"Rank correlation of {name} at each {level} with the highest")
        fig.update_yaxes(range=[-1, 1])
        sections.append(("Rank correlation across fidelities", _figure_html(fig), ""))
    if "cost.flops" in reported.columns and reported["cost.flops"].notna().any():
        fig = go.Figure()
        for trial_id, rows in reported.dropna(subset=["cost.flops"]).groupby("trial_id"):
            fig.add_trace(go.Scatter(x=rows["cost.flops"], y=rows[column], mode="lines+markers",
                                     name=str(trial_id)))
        fig.update_layout(title=f"{name} on the compute axis", xaxis_title="training FLOPs (6·N·D)",
                          xaxis_type="log", yaxis_title=name)
        sections.append(("Compute axis", _figure_html(fig), ""))
    weights = importance(store, experiment, column, mode)
    if not weights.empty:
        fig = px.bar(x=weights.index, y=weights.to_numpy(), labels={"x": "hyperparameter", "y": "importance"},
                     title=f"Permutation importance for the best {name} (random forest, scikit-learn)")
        sections.append(("Hyperparameter importance", _figure_html(fig), ""))
    body = "".join(f'<section><h2>{html.escape(title)}</h2>{content}'
                   f'{f"<p class=note>{note}</p>" if note else ""}</section>'
                   for title, content, note in sections)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(experiment)}</title>"
            f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(experiment)}</h1><p class=note>{len(results['trial_id'].unique())} trials, "
            f"{len(reported)} results; ranked by {html.escape(name)} ({mode}).</p>{body}"
            f"<script>{SORT_SCRIPT}</script></body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
