"""Language-model pretraining runs on the compute axis ``C = 6 * N * D``, against a reference trend.

The reference trend is a saturating power law ``L(C) = E + A * C^(-alpha)`` fitted to every reported
(compute, validation loss) point of the reference runs (plain random init, no distillation). Each run
is then read off that trend: ``compute_multiplier = C_ref(L) / C`` says how much more compute the
reference needs to reach the run's final loss ``L``.

Example::

    table = compute_axis_table(store, ["lm-random", "lm-searched-kd"])
    table[["label", "flops", "val_loss", "compute_multiplier"]]
    save_compute_plot(store, ["lm-random", "lm-searched-kd"], "plots")
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt
import pandas as pd

from efficient_search.reference.recipes import OPEN_SCI_REF, compute_flops

if TYPE_CHECKING:
    from efficient_search.store import ParquetStore


TREND_KINDS = ("power", "log-linear")

#: Columns each compared experiment must hold: (column, what it is, the key the pretraining task reports).
REQUIRED_COLUMNS = (
    ("metric.val_loss", "validation loss", "val_loss"),
    ("cost.flops", "training compute so far, C = 6*N*D", "cost/flops"),
    ("fidelity.tokens", "training tokens seen so far, D", "fidelity/tokens"),
)
OPTIONAL_COLUMNS = {"metric.params": "params", "metric.val_perplexity": "val_perplexity",
                    "cost.teacher_flops": "teacher_flops"}
DISTILL_TAGS = {"none": "", "online": "+KD", "offline": "+KD(offline)"}


@dataclass(frozen=True)
class Trend:
    """Validation loss against training compute: ``E + A * C^(-alpha)``, or ``intercept + slope * ln C``.

    Example::

        trend = fit_trend(flops, losses)
        trend.loss(1e18)          # the trend's loss at 1e18 FLOPs
        trend.flops_for(3.0)      # compute it needs to reach loss 3.0 (NaN if never)
    """

    kind: str
    """``"power"`` (saturating power law) or ``"log-linear"`` (the fallback: a line in ``ln C``)."""
    E: float = math.nan
    """Irreducible loss of the power law."""
    A: float = math.nan
    alpha: float = math.nan
    intercept: float = math.nan
    slope: float = math.nan
    """Loss change per unit of ``ln C`` (log-linear only)."""
    n_points: int = 0
    """Number of (compute, loss) points fitted."""
    flops_range: tuple[float, float] = (math.nan, math.nan)
    """Smallest and largest compute fitted; outside it the trend is an extrapolation."""

    def __post_init__(self) -> None:
        if self.kind not in TREND_KINDS:
            raise ValueError(f"`kind` must be one of {TREND_KINDS}, but got {self.kind!r}.")

    @overload
    def loss(self, flops: float) -> float: ...
    @overload
    def loss(self, flops: np.ndarray) -> np.ndarray: ...
    def loss(self, flops: float | np.ndarray) -> float | np.ndarray:
        """The trend's loss at ``flops`` (NaN where ``flops <= 0``)."""
        c = np.asarray(flops, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_c = np.where(c > 0, np.log(np.where(c > 0, c, 1.0)), np.nan)
            if self.kind == "power":
                value = self.E + np.exp(math.log(self.A) - self.alpha * log_c)
            else:
                value = self.intercept + self.slope * log_c
        return float(value) if value.ndim == 0 else value

    @overload
    def flops_for(self, loss: float) -> float: ...
    @overload
    def flops_for(self, loss: np.ndarray) -> np.ndarray: ...
    def flops_for(self, loss: float | np.ndarray) -> float | np.ndarray:
        """Compute the trend needs to reach ``loss``; NaN where it never does (``loss <= E``)."""
        target = np.asarray(loss, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.kind == "power":
                gap = np.where(target > self.E, target - self.E, np.nan)
                value = np.exp((math.log(self.A) - np.log(gap)) / self.alpha)
            elif self.slope < 0:
                value = np.exp((target - self.intercept) / self.slope)
            else:  # a flat or rising trend reaches no lower loss with more compute
                value = np.full_like(target, np.nan)
        return float(value) if value.ndim == 0 else value

    def to_dict(self) -> dict[str, Any]:
        """The fit as plain JSON-able data."""
        return {"kind": self.kind, "E": self.E, "A": self.A, "alpha": self.alpha,
                "intercept": self.intercept, "slope": self.slope, "n_points": self.n_points,
                "flops_min": self.flops_range[0], "flops_max": self.flops_range[1]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trend:
        """The trend :meth:`to_dict` described."""
        fields = {k: v for k, v in data.items() if k not in ("flops_min", "flops_max")}
        return cls(**fields, flops_range=(float(data["flops_min"]), float(data["flops_max"])))

    def __str__(self) -> str:
        if self.kind == "power":
            formula = f"L(C) = {self.E:.4g} + {self.A:.4g} * C^-{self.alpha:.4g}"
        else:
            formula = f"L(C) = {self.intercept:.4g} + {self.slope:.4g} * ln C"
        return (f"{formula}  ({self.kind}, {self.n_points} points, "
                f"C in [{self.flops_range[0]:.3g}, {self.flops_range[1]:.3g}])")


def fit_trend(flops: npt.ArrayLike, losses: npt.ArrayLike) -> Trend:
    """Fit ``L(C) = E + A * C^(-alpha)`` to (compute, loss) points.

    The fit runs in ``ln C`` (centred, so the parameters are of similar size) from several starting
    points with ``0 <= E <= min(loss)``. With fewer than 4 points, when the fit fails, or when a line
    in ``ln C`` fits better, the line is returned instead. Points with ``C <= 0`` or a non-finite
    value are left out.
    """
    c = np.asarray(flops, dtype=float).ravel()
    loss = np.asarray(losses, dtype=float).ravel()
    if c.shape != loss.shape:
        raise ValueError(f"`flops` and `losses` must have the same length, but got {c.size} and "
                         f"{loss.size} values.")
    keep = np.isfinite(c) & np.isfinite(loss) & (c > 0)
    c, loss = c[keep], loss[keep]
    if np.unique(c).size < 2:
        raise ValueError(
            f"A compute trend needs points at two or more distinct `flops` > 0, but got "
            f"{np.unique(c).size} (of {keep.size} points, {int(keep.sum())} usable). Fix: give the "
            "reference runs more than one reported result each, with `cost/flops` and `val_loss`."
        )
    log_c = np.log(c)
    span = (float(c.min()), float(c.max()))
    slope, intercept = np.polyfit(log_c, loss, 1)
    line = Trend("log-linear", intercept=float(intercept), slope=float(slope), n_points=c.size,
                 flops_range=span)
    power = _fit_power(log_c, loss, span) if c.size >= 4 else None
    if power is not None and _sse(power, c, loss) <= _sse(line, c, loss):
        return power
    return line


def _sse(trend: Trend, c: np.ndarray, loss: np.ndarray) -> float:
    return float(np.sum((trend.loss(c) - loss) ** 2))


def _fit_power(log_c: np.ndarray, loss: np.ndarray, span: tuple[float, float]) -> Trend | None:
    from scipy.optimize import OptimizeWarning, curve_fit

    floor = float(loss.min())
    if floor <= 0:
        return None
    centre = float(log_c.mean())
    x = log_c - centre

    def model(x: np.ndarray, e: float, log_a: float, alpha: float) -> np.ndarray:
        return e + np.exp(log_a - alpha * x)

    best: tuple[float, np.ndarray] | None = None
    bounds = ([0.0, -50.0, 1e-4], [floor, 50.0, 5.0])
    for e0 in (0.5 * floor, 0.9 * floor):
        for alpha0 in (0.05, 0.3, 1.0):
            p0 = [e0, math.log(max(float(np.median(loss)) - e0, 1e-6)), alpha0]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", OptimizeWarning)
                    params, _ = curve_fit(model, x, loss, p0=p0, bounds=bounds, maxfev=20_000)
            except (RuntimeError, ValueError):
                continue
            sse = float(np.sum((model(x, *params) - loss) ** 2))
            if np.all(np.isfinite(params)) and (best is None or sse < best[0]):
                best = (sse, params)
    if best is None:
        return None
    e, log_a, alpha = (float(p) for p in best[1])
    # exp(log_a - alpha * (ln C - centre)) = A * C^-alpha with ln A = log_a + alpha * centre.
    log_big_a = log_a + alpha * centre
    if not math.isfinite(log_big_a) or log_big_a > 700:
        return None
    return Trend("power", E=e, A=math.exp(log_big_a), alpha=alpha, n_points=log_c.size, flops_range=span)


def reference_points(token_budgets: Sequence[float] = (50e9, 300e9, 1e12)) -> pd.DataFrame:
    """Every open-sci-ref recipe at each token budget: ``n_params`` (N), ``tokens`` (D), ``flops`` (6ND).

    ``scaled_down`` marks the CPU variants, which are not open-sci-ref models. Example::

        reference_points((50e9,)).query("not scaled_down")
    """
    if isinstance(token_budgets, (str, bytes)) or not isinstance(token_budgets, Sequence) \
            or not token_budgets:
        raise ValueError(f"`token_budgets` must be a non-empty sequence of token counts, but got "
                         f"{token_budgets!r}. Fix: e.g. token_budgets=(50e9, 300e9).")
    rows = [
        {"recipe": recipe.name, "scaled_down": "-cpu-" in recipe.name, "n_params": recipe.n_params,
         "tokens": float(tokens), "flops": compute_flops(recipe.n_params, tokens)}
        for recipe in OPEN_SCI_REF.values()
        for tokens in token_budgets
    ]
    return pd.DataFrame(rows)


# -- reading runs from the store ---------------------------------------------------------------------


def _names(value: str | Sequence[str], field: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"`{field}` must be one or more experiment names, but got {value!r}. "
                         f"Fix: e.g. {field}=['lm-random', 'lm-searched-kd'].")
    return list(dict.fromkeys(names))


def _task_options(store: ParquetStore, experiment: str) -> tuple[str | None, dict[str, Any]]:
    spec = store.metadata(experiment).get("spec") or {}
    return spec.get("task"), dict(spec.get("task_options") or {})


def _reported(store: ParquetStore, experiment: str) -> pd.DataFrame:
    """The experiment's reported rows with ``label``, ``init`` and ``distill`` columns added."""
    from efficient_search.store.rows import RUNNING

    results = store.results(experiment)  # raises, listing the store's experiments, if unknown
    task, options = _task_options(store, experiment)
    ran = f"it ran task {task!r}" if task else "its metadata names no task"
    if results.empty:
        raise ValueError(f"Experiment {experiment!r} has no reported results yet ({ran}). Fix: wait "
                         "for its first results, or leave it out of `experiments`.")
    for column, meaning, key in REQUIRED_COLUMNS:
        if column not in results.columns:
            raise ValueError(
                f"Experiment {experiment!r} has no column {column!r} ({meaning}), so it cannot be "
                f"placed on the compute axis; {ran}. The pretraining task (`task: pretrain`) reports it as "
                f"`{key}`. Fix: compare pretraining experiments, or report `{key}` from your task."
            )
    rows = results[results["status"] == RUNNING].copy()
    for column in (*OPTIONAL_COLUMNS, "metric.init", "metric.distill"):
        if column not in rows.columns:
            rows[column] = np.nan
    # A run that does not report init/distill may have them as fixed task options.
    init = rows["metric.init"].where(rows["metric.init"].notna(), options.get("init"))
    distill = rows["metric.distill"].where(rows["metric.distill"].notna(), options.get("distill"))
    rows["init"] = init.astype(object).where(init.notna(), None)
    rows["distill"] = distill.astype(object).where(distill.notna(), "none")
    rows["label"] = [
        experiment if i is None else f"{i}{DISTILL_TAGS.get(str(d), f'+{d}')}"
        for i, d in zip(rows["init"], rows["distill"], strict=True)
    ]
    numeric = [c for c, _, _ in REQUIRED_COLUMNS] + list(OPTIONAL_COLUMNS)
    rows[numeric] = rows[numeric].apply(pd.to_numeric, errors="coerce")
    return rows.sort_values(["trial_id", "iteration"], kind="stable")


def _load(store: ParquetStore, experiments: str | Sequence[str],
          reference: str | Sequence[str] | None) -> tuple[pd.DataFrame, pd.Series, Trend]:
    """Reported rows of the compared (and reference) experiments, which rows are reference, the trend."""
    names = _names(experiments, "experiments")
    references = None if reference is None else _names(reference, "reference")
    frames = [_reported(store, name).assign(experiment=name)
              for name in dict.fromkeys([*names, *(references or [])])]
    rows = pd.concat(frames, ignore_index=True)
    if references is None:
        is_reference = (rows["init"] == "random") & (rows["distill"] == "none")
        if not is_reference.any():
            raise ValueError(
                f"No reference runs among experiments {names}: none reported `metric.init` == 'random' "
                "with `metric.distill` == 'none'. Fix: pass reference='<experiment>' (CLI: --reference "
                "NAME) naming the experiment whose runs give the baseline trend."
            )
    else:
        is_reference = rows["experiment"].isin(references)
    points = rows[is_reference]
    trend = fit_trend(points["cost.flops"].to_numpy(), points["metric.val_loss"].to_numpy())
    return rows, is_reference, trend


def first_reach(xs: np.ndarray, losses: np.ndarray, target: float) -> float:
    """``xs`` (tokens, compute) where ``losses`` first reach ``target``, linear between reports;
    the first x if they start there; NaN if they never do."""
    xs, losses = np.asarray(xs, dtype=float), np.asarray(losses, dtype=float)
    hits = np.flatnonzero(losses <= target)
    if not math.isfinite(target) or hits.size == 0:
        return math.nan
    i = int(hits[0])
    if i == 0 or losses[i - 1] == losses[i]:
        return float(xs[i])
    share = (losses[i - 1] - target) / (losses[i - 1] - losses[i])
    return float(xs[i - 1] + share * (xs[i] - xs[i - 1]))


def _tokens_to_reach(curve: pd.DataFrame, target: float) -> float:
    """Tokens at which ``curve`` first reaches ``target`` loss, interpolated between reports."""
    curve = curve.dropna(subset=["fidelity.tokens", "metric.val_loss"])
    tokens, losses = (curve[c].to_numpy(dtype=float) for c in ("fidelity.tokens", "metric.val_loss"))
    return first_reach(tokens, losses, target)


def reference_trend(store: ParquetStore, experiments: str | Sequence[str],
                    reference: str | Sequence[str] | None = None) -> Trend:
    """The loss-against-compute trend of the reference runs (see :func:`compute_axis_table`)."""
    return _load(store, experiments, reference)[2]


def compute_axis_table(store: ParquetStore, experiments: str | Sequence[str],
                       reference: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (experiment, trial): final loss and compute, read off the reference trend.

    The reference runs are those of the ``reference`` experiments (they join the table if not among
    ``experiments``), by default the runs that report ``init == 'random'`` and ``distill == 'none'``.
    Columns: ``experiment``, ``trial_id``, ``label`` (``searched+KD``, ``random``...), ``reference``,
    ``params``, ``tokens``, ``flops``, ``teacher_flops``, ``val_loss``, ``val_perplexity``,
    ``reference_loss_at_flops`` (the trend's loss at the run's compute), ``compute_multiplier``
    (``C_ref(val_loss) / flops``; NaN if the trend never reaches that loss),
    ``compute_multiplier_with_teacher`` (the same over ``flops + teacher_flops``) and
    ``tokens_to_reference_final`` (tokens the run took to reach the best final loss of the reference
    runs). ``table.attrs["trend"]`` holds the trend as a dict.
    """
    rows, is_reference, trend = _load(store, experiments, reference)
    finals = rows.groupby(["experiment", "trial_id"], sort=False).tail(1)
    target = float(finals.loc[is_reference[finals.index], "metric.val_loss"].min())
    curves = dict(list(rows.groupby(["experiment", "trial_id"], sort=False)))

    flops = finals["cost.flops"].to_numpy(dtype=float)
    loss = finals["metric.val_loss"].to_numpy(dtype=float)
    teacher = finals["cost.teacher_flops"].fillna(0.0).to_numpy(dtype=float)
    reference_flops = trend.flops_for(loss)
    table = pd.DataFrame({
        "experiment": finals["experiment"].to_numpy(),
        "trial_id": finals["trial_id"].to_numpy(),
        "label": finals["label"].to_numpy(),
        "reference": is_reference[finals.index].to_numpy(),
        "params": finals["metric.params"].to_numpy(dtype=float),
        "tokens": finals["fidelity.tokens"].to_numpy(dtype=float),
        "flops": flops,
        "teacher_flops": teacher,
        "val_loss": loss,
        "val_perplexity": finals["metric.val_perplexity"].to_numpy(dtype=float),
        "reference_loss_at_flops": trend.loss(flops),
        "compute_multiplier": reference_flops / flops,
        "compute_multiplier_with_teacher": reference_flops / (flops + teacher),
        "tokens_to_reference_final": [_tokens_to_reach(curves[key], target)
                                      for key in zip(finals["experiment"], finals["trial_id"], strict=True)],
    })
    table.attrs["trend"] = trend.to_dict()
    table.attrs["reference_final_loss"] = target
    return table


def save_compute_plot(store: ParquetStore, experiments: str | Sequence[str], out_dir: str | os.PathLike[str],
                      reference: str | Sequence[str] | None = None) -> Path:
    """Validation loss against tokens and against compute (log x), with the reference trend dashed.

    Saved as ``<out_dir>/<first experiment>-compute-axis.png``. The compute panel also marks where
    the smallest open-sci-ref recipe at 50B tokens lies (as text when it is off the axis).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, is_reference, trend = _load(store, experiments, reference)
    groups = list(rows.groupby(["experiment", "trial_id"], sort=False))
    labels = [curve["label"].iloc[0] for _, curve in groups]
    fig, (by_tokens, by_flops) = plt.subplots(1, 2, figsize=(12, 4.5))
    for ((_, trial_id), curve), label in zip(groups, labels, strict=True):
        name = f"{label} ({trial_id})" if labels.count(label) > 1 else label
        style = {"linestyle": "-", "marker": "o", "markersize": 3, "label": name}
        if bool(is_reference[curve.index].all()):
            style["label"] = f"{name} [reference]"
        by_tokens.plot(curve["fidelity.tokens"], curve["metric.val_loss"], **style)
        by_flops.plot(curve["cost.flops"], curve["metric.val_loss"], **style)

    positive = rows.loc[rows["cost.flops"] > 0, "cost.flops"]
    low, high = float(positive.min()), float(positive.max())
    grid = np.geomspace(low, high, 200)
    by_flops.plot(grid, trend.loss(grid), "k--", linewidth=1.2, label=f"reference trend ({trend.kind})")
    by_flops.set_xscale("log")

    points = reference_points((50e9,)).query("not scaled_down")
    smallest = points.loc[points["n_params"].idxmin()]
    note = f"{smallest['recipe']} @{smallest['tokens'] / 1e9:.0f}B tokens: C={smallest['flops']:.2g}"
    if low <= smallest["flops"] <= high:
        by_flops.axvline(smallest["flops"], color="grey", linestyle=":", linewidth=1)
        by_flops.annotate(note, (smallest["flops"], 0.98), xycoords=("data", "axes fraction"),
                          rotation=90, va="top", ha="right", fontsize=7, color="grey")
    else:
        right = smallest["flops"] > high
        by_flops.text(0.98 if right else 0.02, 0.98, f"{note} {'->' if right else '<-'}",
                      transform=by_flops.transAxes, ha="right" if right else "left", va="top",
                      fontsize=7, color="grey")

    first = _names(experiments, "experiments")[0]
    by_tokens.set(xlabel="training tokens D", ylabel="validation loss", title=f"{first}: loss by tokens")
    by_flops.set(xlabel="training compute C = 6ND (FLOPs)", ylabel="validation loss",
                 title="loss by compute")
    if len(groups) <= 12:
        by_flops.legend(fontsize=7)
    from efficient_search.report import save_figure

    return save_figure(fig, Path(out_dir) / f"{first}-compute-axis.png")
