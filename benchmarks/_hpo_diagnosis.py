"""Why a method wins or loses on an instance: where its budget went and how well Quick-Tune's surrogate
predicted the held-out instance (printed and plotted by ``quicktune_replay.py`` and ``hpo_suite.py``).

- :func:`allocation`: from one replayed search's log, trials started, resumes (a trial that runs again
  after another trial ran), epochs per trial, and the share of continued trials (more than one budget
  step) that ended below the instance's median at the step they reached (the median of the instance's
  recorded or sampled curves at that step: ``medians``);
- :func:`calibration`: the meta-trained surrogate on the held-out instance's curves: conditioned on the
  first ``k`` steps of every run (``k`` = 0, 1, 3), its predictions at the next step and at the last
  step. Reported: Gaussian negative log-likelihood (per point, in the metric's standardised units),
  coverage of the central 68 % and 95 % intervals, and the Spearman correlation of the predicted last
  value with the truth;
- :func:`allocation_plot`: which trial got each budget step over simulated time, for a few methods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm, spearmanr

from efficient_search.surrogate import DeepKernelSurrogate, MetaDataset
from efficient_search.testing.replay import ReplayOutcome

#: Steps of every run the surrogate is conditioned on before it predicts.
OBSERVED = (0, 1, 3)
ALLOCATION_KEYS = ("started", "resumes", "epochs_per_trial", "max_epochs_trial", "continued",
                   "continued_below_median")


def step_medians(curves: np.ndarray) -> np.ndarray:
    """``(T,)`` the median over runs of each step's value (NaN where no run reached it)."""
    observed = np.isfinite(curves).any(axis=0)
    out = np.full(curves.shape[1], np.nan)
    out[observed] = np.nanmedian(curves[:, observed], axis=0)
    return out


def allocation(outcome: ReplayOutcome, medians: np.ndarray, mode: str) -> dict[str, float]:
    """Where one search's budget steps went (see the module docstring)."""
    steps: dict[str, list[tuple[int, float]]] = {}
    resumes, previous = 0, None
    for record in outcome.log:
        if record.trial_id in steps and previous != record.trial_id:
            resumes += 1
        steps.setdefault(record.trial_id, []).append((record.step, record.value))
        previous = record.trial_id
    counts = np.asarray([len(s) for s in steps.values()], dtype=np.float64)
    continued = [s for s in steps.values() if len(s) > 1]
    sign = 1.0 if mode == "max" else -1.0
    below = [sign * (value - medians[min(step, medians.size) - 1]) < 0
             for step, value in (s[-1] for s in continued)
             if math.isfinite(value) and math.isfinite(medians[min(step, medians.size) - 1])]
    return {"started": float(len(steps)), "resumes": float(resumes),
            "epochs_per_trial": float(np.median(counts)) if counts.size else 0.0,
            "max_epochs_trial": float(counts.max()) if counts.size else 0.0,
            "continued": float(len(continued)),
            "continued_below_median": float(np.mean(below)) if below else math.nan}


def calibration(surrogate: DeepKernelSurrogate, data: MetaDataset,
                meta_features: Mapping[str, float] | None,
                observed: Sequence[int] = OBSERVED) -> dict[str, float]:
    """The surrogate's predictions on ``data`` (one held-out instance), see the module docstring. The
    surrogate is copied: the caller's is not conditioned."""
    model = surrogate.copy()
    curves, configs = data.curves, data.configs
    last = data.n_steps
    out: dict[str, float] = {}
    for k in observed:
        if k >= last:
            continue
        if k == 0:
            model.reset()
        else:
            seen = np.where(np.arange(last)[None, :] < k, curves, np.nan)
            keep = np.isfinite(seen).any(axis=1)
            model.fine_tune(configs[keep], seen[keep], meta_features=meta_features)
        prefix = np.where(np.arange(last)[None, :] < k, curves, np.nan)
        for name, step in (("next", k + 1), ("last", last)):
            truth = curves[:, step - 1]
            rows = np.flatnonzero(np.isfinite(truth))
            if rows.size < 3:
                continue
            mean, variance = model.predict(configs.iloc[rows], budgets=float(data.budgets[step - 1]),
                                           curves=prefix[rows], meta_features=meta_features)
            std = np.sqrt(np.maximum(variance, 1e-12))
            z = (truth[rows] - mean) / std
            scale = surrogate.y_std
            out[f"nll_{name}_{k}"] = float(np.mean(0.5 * z ** 2 + np.log(std / scale)
                                                   + 0.5 * math.log(2 * math.pi)))
            out[f"cover68_{name}_{k}"] = float(np.mean(np.abs(z) <= norm.ppf(0.84)))
            out[f"cover95_{name}_{k}"] = float(np.mean(np.abs(z) <= norm.ppf(0.975)))
            if name == "last":
                rho = spearmanr(mean, truth[rows]).statistic
                out[f"spearman_last_{k}"] = float(rho) if np.isfinite(rho) else math.nan
    return out


def allocation_plot(logs: Mapping[str, ReplayOutcome], title: str) -> Any:
    """One panel per method: each budget step as a dot at (simulated time, trial in order of start),
    coloured by the value it reported."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(logs), figsize=(4.2 * len(logs), 3.6), squeeze=False, sharey=False)
    values = [r.value for o in logs.values() for r in o.log if math.isfinite(r.value)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    for ax, (name, outcome) in zip(axes[0], logs.items(), strict=True):
        order: dict[str, int] = {}
        xs, ys, cs = [], [], []
        for record in outcome.log:
            order.setdefault(record.trial_id, len(order))
            xs.append(record.clock)
            ys.append(order[record.trial_id])
            cs.append(record.value)
        dots = ax.scatter(xs, ys, c=cs, s=8, cmap="viridis", vmin=low, vmax=high)
        ax.set_title(f"{name}\n{len(order)} trials, {len(xs)} steps", fontsize=9)
        ax.set_xlabel("simulated seconds")
        ax.set_ylabel("trial (order of start)")
    fig.colorbar(dots, ax=axes[0][-1], label="reported value")
    fig.suptitle(title, fontsize=10)
    return fig


def allocation_table(frame: Any) -> Any:
    """Per method: the mean of each :data:`ALLOCATION_KEYS` column over instances x seeds."""
    present = [k for k in ALLOCATION_KEYS if k in frame.columns]
    return frame.groupby("method", sort=False)[present].mean()


def calibration_table(frame: Any, ours: str) -> Any:
    """The surrogate's checks (one row per instance: they do not depend on the seed), as mean and
    standard error over instances, one row per number of observed steps."""
    import pandas as pd

    rows = frame[frame["method"] == ours].drop_duplicates("instance")
    out = []
    for k in OBSERVED:
        row: dict[str, Any] = {"observed_steps": k}
        for name in ("nll_next", "cover68_next", "cover95_next", "nll_last", "cover68_last",
                     "cover95_last", "spearman_last"):
            column = f"{name}_{k}"
            if column in rows.columns and rows[column].notna().any():
                values = rows[column].dropna()
                row[name] = float(values.mean())
                row[f"{name}_se"] = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 \
                    else math.nan
        out.append(row)
    return pd.DataFrame(out).set_index("observed_steps")
