"""Regenerate README tables from the benchmark summaries committed under ``benchmarks/results/``.

A README region between two marker comments

    <!-- bench-report:hpo_suite_lcbench -->
    (generated: do not edit by hand)
    <!-- /bench-report -->

is replaced by the table its report makes from its summary file, and a line naming that file and the
command that wrote it, so every quoted figure can be traced to committed data.

    python benchmarks/bench_report.py            # rewrite the regions of README.md (also `make bench-report`)
    python benchmarks/bench_report.py --check    # exit 1 if README.md differs from the committed summaries

A summary that is not committed yet is not an error: its region says so and names the command that
writes it. That keeps the command usable while some runs are still missing, and ``--check`` still
fails if README quotes figures from a file that is not there.

To add a report: write a renderer ``(path) -> markdown`` and add an entry to ``REPORTS``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from efficient_search.durable import atomic_write

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
COMMAND = "make bench-report"
START = re.compile(r"<!-- bench-report:(?P<name>[\w.-]+) -->")
END = "<!-- /bench-report -->"
#: Anything that looks like a marker; each must be exactly START or END.
MARKER = re.compile(r"<!--\s*/?\s*bench-report\b.*?-->", re.DOTALL)
FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Report:
    """How one README region is made. ``{field}`` placeholders in ``source`` and ``command`` are
    filled from the marker name matched against the registry key (e.g. ``hpo_suite_{scenario}``)."""

    #: The summary file, relative to the results folder.
    source: str
    #: The command that writes it (quoted beside the table).
    command: str
    #: Markdown made from the summary file.
    render: Callable[[Path], str]


# -- renderers ------------------------------------------------------------------------------------------

def number(value: float) -> str:
    """Four decimals; small non-zero values in scientific notation; NaN as a dash."""
    if math.isnan(value):
        return "–"
    return f"{value:.1e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"


def read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """The CSV at ``path``, refused with the missing column names if it lacks any of ``columns``."""
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"summary {path} must have columns {missing}, but has {list(frame.columns)}; "
                         "rewrite it with the benchmark that made it.")
    return frame


HPO_PERCENTS = (10, 25, 50, 100)


#: The method the paired comparison is about (efficient_search's Quick-Tune pair) and its ablation.
HEADLINE = "quicktune+freeze_thaw"
ABLATION = "quicktune_no_meta+freeze_thaw"
#: The successive-halving peer every Quick-Tune result is also paired with.
ASHA = "random+asha"


def render_hpo_suite(path: Path) -> str:
    """Per method: regret mean ± s.e. and average rank at 10/25/50/100 % of the budget, overhead and
    runs; best rank at 50 % first, the best value of each column in bold. With the per-run file beside
    the summary (``<stem>.csv``), the paired comparison of :data:`HEADLINE` with the best peer and with
    its ablation follows (:func:`paired_lines`)."""
    regret = [f"regret_{p}" for p in HPO_PERCENTS]
    ranks = [f"rank_{p}" for p in HPO_PERCENTS]
    columns = ["method", *(f"{r}_{s}" for r in regret for s in ("mean", "se")), *ranks, "overhead_share",
               "runs"]
    summary = read_csv(path, columns).sort_values(["rank_50", "regret_50_mean"], kind="stable")
    best = {c: summary[c].min() for c in [*(f"{r}_mean" for r in regret), *ranks]}

    def bold(column: str, value: float, text: str) -> str:
        return f"**{text}**" if value == best[column] else text

    lines = ["| method | " + " | ".join(f"regret @ {p} %" for p in HPO_PERCENTS)
             + " | rank @ 10 / 25 / 50 / 100 % | overhead | runs |", "|---" * (len(HPO_PERCENTS) + 4) + "|"]
    for row in summary.itertuples(index=False):
        values = row._asdict()
        cells = [bold(f"{r}_mean", values[f"{r}_mean"], number(values[f"{r}_mean"]))
                 + f" ± {number(values[f'{r}_se'])}" for r in regret]
        cells.append(" / ".join(bold(r, values[r], f"{values[r]:.2f}") for r in ranks))
        cells += [f"{100 * values['overhead_share']:.2f} %", str(int(values["runs"]))]
        lines.append(f"| {values['method']} | " + " | ".join(cells) + " |")
    lines += ["", "Normalised regret, mean ± standard error over instances x seeds (runs); average rank "
              "(1 = lowest regret among the methods of a cell); overhead = searcher + scheduler wall time / "
              "simulated budget."]
    runs = path.with_name(path.name.replace("_summary.csv", ".csv"))
    if runs.is_file():
        lines += ["", *paired_lines(pd.read_csv(runs), summary)]
    return "\n".join(lines)


def paired_lines(runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """:data:`HEADLINE` against the peer with the lowest mean regret at 50 % and against its ablation:
    per fraction, the mean ± s.e. of the paired difference over (instance, seed) cells (negative = ours
    lower) and the share of cells ours wins (ties half). Peers are the methods the summary marks
    ``ours == 0`` (all but ours' names when the column is absent)."""
    methods = set(runs["method"])
    if HEADLINE not in methods:
        return []
    if "ours" in summary.columns:
        peers = summary.loc[summary["ours"] == 0, "method"].tolist()
    else:
        peers = [m for m in summary["method"] if m not in (HEADLINE, ABLATION, "evolution+asha", "random+sh")]
    peer = summary[summary["method"].isin(peers)].sort_values("regret_50_mean")["method"].iloc[0]
    cell = ["instance", "seed"]
    out = []
    pairs = [(peer, f"the best peer at 50 % ({peer})"), (ASHA, f"Ray's ASHA ({ASHA})"),
             (ABLATION, f"the ablation ({ABLATION})")]
    for other, label in pairs:
        if other not in methods or (other == ASHA and peer == ASHA):
            continue
        mine = runs[runs["method"] == HEADLINE].set_index(cell)
        theirs = runs[runs["method"] == other].set_index(cell).loc[mine.index]
        parts = []
        for p in HPO_PERCENTS:
            diff = mine[f"regret_{p}"] - theirs[f"regret_{p}"]
            se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
            wins = float(((diff < 0) + 0.5 * (diff == 0)).mean())
            sign = " (> 2 s.e.)" if abs(diff.mean()) > 2 * se else ""
            parts.append(f"{p} %: {number(float(diff.mean()))} ± {number(se)}{sign}, wins {wins:.2f}")
        out.append(f"{HEADLINE} − {label}, paired over {len(diff)} (instance, seed) cells: "
                   + "; ".join(parts) + ".")
    return out


def render_scale(path: Path) -> str:
    """Per method (rows sorted by mean regret at 50 % with 32 workers, else the most), per worker count N:
    regret at 50 % of the wall-clock budget (mean ± s.e.), time-to-target speed-up (median, and the
    share of runs that reached the target) and worker utilisation."""
    columns = ["method", "workers", "regret_50_mean", "regret_50_se", "speedup_median", "reached",
               "utilisation", "rank_50", "runs"]
    frame = read_csv(path, columns)
    workers = sorted(int(n) for n in frame["workers"].unique())
    probe = 32 if 32 in workers else workers[-1]  # the targets are read at 32 workers
    most = frame[frame["workers"] == probe].sort_values("regret_50_mean")
    best = {n: frame.loc[frame["workers"] == n, "regret_50_mean"].min() for n in workers}
    lines = ["| method | " + " | ".join(f"regret @ 50 %, N = {n}" for n in workers) + " | "
             + " | ".join(f"speed-up N = {n} (reached)" for n in workers[1:])
             + " | utilisation N = " + " / ".join(str(n) for n in workers) + " |",
             "|---" * (1 + len(workers) + len(workers) - 1 + 1) + "|"]
    for method in most["method"]:
        rows = frame[frame["method"] == method].set_index("workers")
        cells = []
        for n in workers:
            mean, se = rows.loc[n, "regret_50_mean"], rows.loc[n, "regret_50_se"]
            text = f"{number(mean)} ± {number(se)}"
            cells.append(f"**{text}**" if mean == best[n] else text)
        cells += [f"{rows.loc[n, 'speedup_median']:.1f}x ({rows.loc[n, 'reached']:.2f})" for n in workers[1:]]
        cells.append(" / ".join(f"{rows.loc[n, 'utilisation']:.2f}" for n in workers))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    runs = int(frame["runs"].iloc[0])
    lines += ["", f"Regret at 50 % of each N's wall-clock budget (1/N of the same compute), mean ± s.e. "
              f"over {runs} (instance, seed) runs; speed-up: median over the runs where one worker needed "
              "more than its first result, of one worker's time to its own regret at 25 % of its budget "
              "over N workers' time (ideal = N; not reached within the budget = 0; reached = share that "
              "did); utilisation = training seconds / (N x makespan)."]
    return "\n".join(lines)


def render_scale_latency(path: Path) -> str:
    """Per method: trials started (and results reported, where recorded) when timing began,
    decision-call latency (median, p95, max) and memory held then."""
    frame = read_csv(path, ["method", "workers", "trials", "calls", "decide_ms_median", "decide_ms_p95",
                            "decide_ms_max", "memory_mb", "wall_s"]).sort_values("decide_ms_p95")
    results = "results" in frame
    lines = ["| method | trials started | " + ("results | " if results else "") + "calls timed | "
             "decision ms: median / p95 / max | memory held | wall |", "|---" * (7 if results else 6) + "|"]
    for row in frame.itertuples(index=False):
        reported = f"{row.results:,.0f} | " if results else ""
        lines.append(f"| {row.method} | {row.trials:,.0f} | {reported}{row.calls:,.0f} | "
                     f"{row.decide_ms_median:.2f} / {row.decide_ms_p95:.2f} / {row.decide_ms_max:.1f} | "
                     f"{row.memory_mb:.0f} MiB | {row.wall_s:.0f} s |")
    lines += ["", f"{int(frame['workers'].iloc[0])} simulated workers on one LCBench instance; every "
              "decision call (suggest, on_trial_result, choose_trial_to_run; ask/report/end for native "
              "loops) after the trials started column"
              + (" (results = budget steps reported by then)" if results else "")
              + ", wall ms on one core; memory = resident set of the search process after minus before "
              "the search (searcher, scheduler and the replay's trials)."]
    return "\n".join(lines)


def render_scale_tune(path: Path) -> str:
    """One row per full run of the 1,000-trial Tune comparison: wall and driver CPU per trial, ours
    against plain Ray Tune, our callbacks' own time per trial where it was timed, and the store's rows
    against the results Tune saw."""
    frame = read_csv(path, ["date", "order", "trials", "concurrency", "ours_ms_per_trial",
                            "plain_ms_per_trial", "overhead_pct", "ours_driver_cpu_ms_per_trial",
                            "plain_driver_cpu_ms_per_trial", "driver_cpu_overhead_pct", "results",
                            "result_rows"])
    lines = ["| run | trials x at once | wall ms per trial: ours / plain (extra) | driver CPU ms per trial: "
             "ours / plain (extra) | our callbacks' hooks per trial: wall / CPU ms (CPU share of plain's "
             "driver CPU) | store rows / results |", "|---" * 6 + "|"]
    for row in frame.itertuples(index=False):
        note = f"; {row.note}" if isinstance(getattr(row, "note", None), str) else ""
        wall = f"{row.ours_ms_per_trial:.1f} / {row.plain_ms_per_trial:.1f} ({row.overhead_pct:+.1f} %)"
        cpu = (f"{row.ours_driver_cpu_ms_per_trial:.1f} / {row.plain_driver_cpu_ms_per_trial:.1f} "
               f"({row.driver_cpu_overhead_pct:+.1f} %)")
        hooks = getattr(row, "hooks_ms_per_trial", float("nan"))
        timed = (f"{hooks:.2f} / {row.hooks_cpu_ms_per_trial:.2f} ({row.hooks_pct:.1f} %)"
                 if hooks == hooks else "not timed")
        lines.append(f"| {row.date}, {row.order}{note} | {row.trials:,.0f} x {row.concurrency:.0f} | "
                     f"{wall} | {cpu} | {timed} | {row.result_rows:,.0f} / {row.results:,.0f} |")
    return "\n".join(lines)


def mean_se(values: pd.Series) -> str:
    """``mean ± standard error`` over the values (seeds)."""
    error = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():.2f} ± {error:.2f}"


def render_layer_freezing_quality(path: Path) -> str:
    """Per network and z: rank agreement with full fidelity, mean ± s.e. over training seeds, and the
    network's seed-noise ceiling."""
    frame = read_csv(path, ["task", "layers", "z", "seed", "spearman", "kendall", "top_k_overlap",
                            "cross_seed_spearman", "ceiling", "ceiling_se"])
    lines = ["| network (L units) | z / L | Spearman, same seed | Kendall | top-25 % overlap | Spearman "
             "vs other seeds' full fidelity |", "|---" * 6 + "|"]
    ceilings = []
    for (task, layers), rows in frame.groupby(["task", "layers"], sort=False):
        for z, at in rows.groupby("z"):
            lines.append(f"| {task} ({layers}) | {z}/{layers} | {mean_se(at['spearman'])} | "
                         f"{mean_se(at['kendall'])} | {mean_se(at['top_k_overlap'])} | "
                         f"{at['cross_seed_spearman'].mean():.2f} |")
        ceilings.append(f"{task} {rows['ceiling'].iloc[0]:.2f} ± {rows['ceiling_se'].iloc[0]:.2f}")
    seeds = frame["seed"].nunique()
    lines += ["", f"Mean ± standard error over {seeds} training seeds. Seed-noise ceiling (full fidelity "
              "under one seed against another, mean ± s.e. over seed pairs): " + "; ".join(ceilings) + "."]
    return "\n".join(lines)


def render_layer_freezing_cost(path: Path) -> str:
    """Per network and z: step speed-up over full training (median and range over interleaved
    repeats) and training-memory saving."""
    frame = read_csv(path, ["task", "layers", "z", "step_s", "step_speedup", "step_speedup_min",
                            "step_speedup_max", "memory_ratio", "repeats"])
    lines = ["| network | z / L | step time | step speed-up (range) | training-memory saving |",
             "|---" * 5 + "|"]
    for row in frame.itertuples(index=False):
        lines.append(f"| {row.task} | {row.z}/{row.layers} | {1000 * row.step_s:.1f} ms | "
                     f"{row.step_speedup:.2f}x ({row.step_speedup_min:.2f}-{row.step_speedup_max:.2f}) | "
                     f"{row.memory_ratio:.1f}x |")
    lines += ["", f"Median over {int(frame['repeats'].max())} interleaved repeats (every network and z "
              "once per repeat), one thread."]
    return "\n".join(lines)


def render_layer_freezing_e2e(path: Path) -> str:
    """Per scheduler, over seeds: compute, best full-fidelity score, and against ASHA the compute to
    reach its best and the best reached within its compute."""
    frame = read_csv(path, ["scheduler", "seed", "trials", "results", "compute_epochs", "compute_seconds",
                            "best_full", "asha_best", "reach_ratio_vs_asha", "total_ratio_vs_asha",
                            "best_within_asha_compute"])
    lines = ["| scheduler | compute, epoch-equivalents (x ASHA's) | best full-fidelity val_loss | compute to "
             "reach ASHA's best, x ASHA's (per seed) | best within ASHA's compute (per seed) |",
             "|---" * 5 + "|"]

    def per_seed(values: pd.Series, fmt: str) -> str:
        return ", ".join("not reached" if math.isinf(v) else "–" if math.isnan(v) else format(v, fmt)
                         + ("x" if fmt == ".2f" else "") for v in values)

    for name, rows in frame.groupby("scheduler", sort=False):
        rows = rows.sort_values("seed")
        lines.append(f"| {name} | {rows['compute_epochs'].median():.1f} "
                     f"({rows['total_ratio_vs_asha'].median():.2f}x) | {rows['best_full'].median():.4f} | "
                     f"{per_seed(pd.Series([rows['reach_ratio_vs_asha'].median()]), '.2f')} "
                     f"({per_seed(rows['reach_ratio_vs_asha'], '.2f')}) | "
                     f"{per_seed(rows['best_within_asha_compute'], '.4f')} |")
    lines += ["", f"Medians over seeds {', '.join(str(s) for s in sorted(frame['seed'].unique()))} (a seed "
              "fixes the configurations and the training seed); an epoch with z of L units trainable "
              "counts (1 + 2 z / L) / 3 of a full one. The trials' measured seconds are in the summary "
              "file, not here: part (a) trained in the background meanwhile."]
    return "\n".join(lines)


def render_allocation(path: Path) -> str:
    """Where each method's budget went (``_hpo_diagnosis.allocation_table``), ours first."""
    frame = read_csv(path, ["method", "started", "resumes", "epochs_per_trial", "max_epochs_trial",
                            "continued", "continued_below_median"])
    lines = ["| method | trials started | resumes | epochs per trial (median) | most epochs of a trial | "
             "trials continued | continued, ended below the median |", "|---" * 7 + "|"]
    for row in frame.itertuples(index=False):
        lines.append(f"| {row.method} | {row.started:.1f} | {row.resumes:.1f} | {row.epochs_per_trial:.1f} | "
                     f"{row.max_epochs_trial:.1f} | {row.continued:.1f} | {row.continued_below_median:.2f} |")
    lines += ["", "Means over instances x seeds. A trial is continued when it runs past its first step; "
              "'ended below the median': its last value is below the median of the instance's recorded "
              "runs at that step."]
    return "\n".join(lines)


def render_calibration(path: Path) -> str:
    """The surrogate's checks on the held-out instance (``_hpo_diagnosis.calibration_table``)."""
    names = ["nll_next", "cover68_next", "cover95_next", "nll_last", "cover68_last", "cover95_last",
             "spearman_last"]
    frame = read_csv(path, ["observed_steps", *names])
    lines = ["| steps of every run observed | NLL next step | 68 % / 95 % coverage, next step | NLL last "
             "step | 68 % / 95 % coverage, last step | Spearman, last step |", "|---" * 6 + "|"]

    def cell(row: dict[str, float], name: str) -> str:
        se = row.get(f"{name}_se", math.nan)
        return f"{row[name]:.2f}" + ("" if math.isnan(se) else f" ± {se:.2f}")

    for row in frame.to_dict("records"):
        lines.append(f"| {int(row['observed_steps'])} | {cell(row, 'nll_next')} | "
                     f"{row['cover68_next']:.2f} / {row['cover95_next']:.2f} | {cell(row, 'nll_last')} | "
                     f"{row['cover68_last']:.2f} / {row['cover95_last']:.2f} | "
                     f"{cell(row, 'spearman_last')} |")
    lines += ["", "The meta-trained surrogate on each held-out instance, conditioned on the first k steps of "
              "every recorded run; mean (± s.e.) over instances. NLL per point in standardised units; a "
              "calibrated model covers 0.68 / 0.95."]
    return "\n".join(lines)


def render_design_choices(path: Path) -> str:
    """Quick-Tune variants against Ray's ASHA in the same run, one row per regime x variant."""
    percents = HPO_PERCENTS
    frame = read_csv(path, ["regime", "ei_variance", "alpha", "horizon", "eta",
                            *(f"{w}_regret_{p}" for w in ("ours", "asha") for p in percents)])
    lines = ["| regime | EI variance | alpha | horizon | eta | Quick-Tune regret @ 10 / 25 / 50 / 100 % | "
             "Ray's ASHA, same run | trials started | continued, ended below the median |", "|---" * 9 + "|"]
    for row in frame.to_dict("records"):
        ours = " / ".join(f"{row[f'ours_regret_{p}']:.3f}" for p in percents)
        asha = " / ".join(f"{row[f'asha_regret_{p}']:.3f}" for p in percents)
        started, below = row.get("ours_started", math.nan), row.get("ours_continued_below_median", math.nan)
        started_text = "–" if math.isnan(started) else f"{started:.1f}"
        below_text = "–" if math.isnan(below) else f"{below:.2f}"
        lines.append(f"| {row['regime']} | {row['ei_variance']} | {row['alpha']:g} | {row['horizon']} | "
                     f"{row['eta']} | {ours} | {asha} | {started_text} | {below_text} |")
    return "\n".join(lines)


#: Replay regimes with committed summaries: marker suffix -> the arguments that make them.
REPLAY_REGIMES = {"quicktune-mtlbm-extended-short": "--datasets all --regime short",
                  "lcbench-short": "--meta-dataset lcbench --datasets all --regime short"}
DIAGNOSIS = {"allocation": render_allocation, "calibration": render_calibration}


def with_diagnosis(stem: str, command: str) -> dict[str, Report]:
    """A suite's summary (``<stem>``) and its diagnosis tables (``<stem>_allocation``, ...)."""
    out = {stem: Report(source=f"{stem}_summary.csv", command=command, render=render_hpo_suite)}
    for part, render in DIAGNOSIS.items():
        out[f"{stem}_{part}"] = Report(source=f"{stem}_{part}.csv", command=command, render=render)
    return out


def replay_reports() -> dict[str, Report]:
    """The Quick-Tune replay's summaries and diagnosis, for every regime (and the default one), and the
    short-horizon HPO suite's."""
    out: dict[str, Report] = {}
    for stem, arguments in [("quicktune_replay", "--datasets all"),
                            *((f"quicktune_replay_{r}", a) for r, a in REPLAY_REGIMES.items())]:
        out.update(with_diagnosis(stem, f"python benchmarks/quicktune_replay.py {arguments}"))
    out.update(with_diagnosis("hpo_suite_lcbench-h10",
                              "python benchmarks/hpo_suite.py --horizon 10 --meta-configs 50 --seeds 3"))
    out.update(with_diagnosis("hpo_suite_lcbench",
                              "python benchmarks/hpo_suite.py --scenario lcbench --seeds 3"))
    return out


#: Marker name (``{field}`` matches letters, digits, ``_``, ``.``, ``-``) -> report. Exact names win over
#: patterns; among patterns the first match wins.
LAYER_FREEZING = {"layer_freezing_quality": render_layer_freezing_quality,
                  "layer_freezing_cost": render_layer_freezing_cost,
                  "layer_freezing_e2e": render_layer_freezing_e2e}

REPORTS: dict[str, Report] = {
    **replay_reports(),
    "quicktune_design_choices": Report(
        source="quicktune_design_choices.csv",
        command="python benchmarks/quicktune_replay.py --datasets all --seeds 0 --methods "
                "quicktune+freeze_thaw,random+asha [--regime short] [--meta-dataset lcbench] "
                "--searcher-options ... --scheduler-options ...", render=render_design_choices),
    "hpo_suite_{scenario}": Report(source="hpo_suite_{scenario}_summary.csv",
                                   command="python benchmarks/hpo_suite.py --scenario {scenario}",
                                   render=render_hpo_suite),
    "scale_latency": Report(source="scale_latency.csv", command="python benchmarks/scale.py --parts latency",
                            render=render_scale_latency),
    "scale_tune": Report(source="scale_tune.csv", command="python benchmarks/_scale_tune.py",
                         render=render_scale_tune),
    "scale_{blackbox}": Report(source="scale_{blackbox}_summary.csv",
                               command="python benchmarks/scale.py --parts scaling --blackboxes {blackbox}",
                               render=render_scale),
    "layer_freezing_{part}": Report(source="layer_freezing_{part}.csv",
                                    command="python benchmarks/layer_freezing.py",
                                    render=lambda path: LAYER_FREEZING[path.stem](path)),
}


# -- regions --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Region:
    """One marked region: its name, the line of its opening marker and the text offsets between the
    markers."""

    name: str
    line: int
    start: int
    end: int


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def regions(text: str, where: str = "README.md") -> list[Region]:
    """The marked regions of ``text``, refusing malformed, unclosed, nested or stray markers."""
    found: list[Region] = []
    opened: re.Match[str] | None = None  # the opening marker of the region being read
    for marker in MARKER.finditer(text):
        line, token = line_of(text, marker.start()), marker.group()
        start = START.fullmatch(token)
        if start is None and token != END:
            raise ValueError(f"{where} line {line}: marker `{token}` is malformed; write "
                             f"`<!-- bench-report:NAME -->` before the table and `{END}` after it.")
        if start is not None and opened is not None:
            raise ValueError(f"{where} line {line_of(text, opened.start())}: marker `{opened.group()}` is "
                             f"not closed before `{token}` (line {line}); add `{END}` after its table.")
        if start is None and opened is None:
            raise ValueError(f"{where} line {line}: `{END}` closes no region; remove it or add "
                             "`<!-- bench-report:NAME -->` before the table.")
        if start is not None:
            opened = marker
        elif opened is not None:
            name = opened.group()[len("<!-- bench-report:"):-len(" -->")]
            found.append(Region(name=name, line=line_of(text, opened.start()),
                                start=opened.end(), end=marker.start()))
            opened = None
    if opened is not None:
        raise ValueError(f"{where} line {line_of(text, opened.start())}: marker `{opened.group()}` is not "
                         f"closed; add `{END}` after its table.")
    return found


def key_pattern(key: str) -> re.Pattern[str]:
    """The registry key as a regex: literal text escaped, each ``{field}`` a named group."""
    parts = FIELD.split(key)  # literal, field, literal, field, ..., literal
    return re.compile("".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[\\w.-]+)"
                              for i, part in enumerate(parts)))


def lookup(name: str, where: str = "README.md", line: int = 0) -> tuple[Report, dict[str, str]]:
    """The report for marker ``name`` and the fields its name fills in."""
    if name in REPORTS:
        return REPORTS[name], {}
    for key, report in REPORTS.items():
        match = key_pattern(key).fullmatch(name)
        if match is not None:
            return report, match.groupdict()
    raise ValueError(f"{where} line {line}: marker `<!-- bench-report:{name} -->` names no report "
                     f"(known: {', '.join(REPORTS)}); fix the name or add an entry to REPORTS in "
                     "benchmarks/bench_report.py.")


def shown(path: Path, base: Path) -> str:
    """``path`` as README links it: relative to the README's folder (POSIX separators)."""
    return Path(os.path.relpath(path, base)).as_posix()


def render_region(name: str, results: Path, readme_dir: Path, *, where: str = "README.md",
                  line: int = 0) -> str:
    """The generated text of region ``name``: the table, or a note while its summary is not committed,
    and the line naming the file and the commands."""
    report, fields = lookup(name, where, line)
    path = results / report.source.format(**fields)
    command = report.command.format(**fields)
    link = f"[`{shown(path, readme_dir)}`]({shown(path, readme_dir)})"
    if not path.is_file():
        print(f"note: {path} is not there; region {name!r} says no full run is committed yet",
              file=sys.stderr)
        return f"_No full run committed yet: `{command}` writes {link}; `{COMMAND}` puts its table here._"
    source = f"Source: {link}, written by `{command}` (full mode); table by `{COMMAND}`."
    return f"{report.render(path)}\n\n{source}"


def update(text: str, results: Path, readme_dir: Path, where: str = "README.md") -> tuple[str, list[str]]:
    """``text`` with every region regenerated, and the names of the regions that changed."""
    pieces, changed, cursor = [], [], 0
    for region in regions(text, where):
        body = "\n" + render_region(region.name, results, readme_dir, where=where, line=region.line) + "\n"
        if text[region.start:region.end] != body:
            changed.append(region.name)
        pieces += [text[cursor:region.start], body]
        cursor = region.end
    pieces.append(text[cursor:])
    return "".join(pieces), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the file to update")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of the summary files")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if the README differs from the summaries")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new, changed = update(text, args.results, args.readme.resolve().parent, where=args.readme.name)
    count = len(regions(text, args.readme.name))
    if args.check:
        if changed:
            print(f"{args.readme} is out of date in {', '.join(changed)}: run `{COMMAND}` and commit it.")
            return 1
        print(f"{args.readme}: {count} generated region(s) match their summaries.")
        return 0
    if changed:
        atomic_write(args.readme, new)
    print(f"{args.readme}: {len(changed)} of {count} generated region(s) updated.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
