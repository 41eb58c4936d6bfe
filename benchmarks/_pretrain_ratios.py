"""The sums behind `pretrain_from_subnetwork.py`: tokens and compute to reach a loss, their ratios,
random init's fitted loss-vs-tokens law, and what the teacher's vocabulary costs a small student.

A curve is a frame of one run's validation loss from the start (``tokens`` 0, the initial loss) to
the end of its budget, with ``compute``: everything spent to get there (the student's 6·N·D, the
teacher's forward FLOPs on the tokens distilled so far, and what the search and importance
estimation cost before the first update).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from efficient_search.reference.compare import Trend, first_reach, fit_trend


def x_to_reach(curve: pd.DataFrame, column: str, target: float) -> float:
    """``column`` (tokens or compute) where the loss first reaches ``target``, linear in between;
    the start's value if it starts there; NaN if it never does."""
    return first_reach(curve[column].to_numpy(dtype=float), curve["val_loss"].to_numpy(dtype=float), target)


def tokens_to_reach(curve: pd.DataFrame, target: float) -> float:
    """Tokens at which the validation curve first reaches ``target`` (NaN if it never does)."""
    return x_to_reach(curve, "tokens", target)


def _ratio(reference: float, needed: float) -> float:
    """reference / needed: inf when nothing was needed, NaN when the target was never reached."""
    if math.isnan(needed):
        return math.nan
    return reference / needed if needed > 0 else math.inf


def ratio_at(curves: Mapping[str, pd.DataFrame], label: str, budget: float, column: str = "tokens") -> float:
    """What random init spends to reach its own loss at ``budget`` tokens over what ``label`` spends to
    reach it, in tokens or (``column="compute"``) in compute."""
    random = curves["random"]
    target = float(np.interp(budget, random["tokens"], random["val_loss"]))
    spent = float(np.interp(budget, random["tokens"], random[column]))
    return _ratio(spent, x_to_reach(curves[label], column, target))


def law_extrapolation(random: pd.DataFrame, finals: Mapping[str, float],
                      holdout_share: float = 0.5) -> tuple[Trend, pd.DataFrame, dict[str, float]]:
    """Random init's law ``L(D) = E + A·D^-alpha`` fitted on its curve, and the tokens it would need
    to reach each run's final loss (an extrapolation beyond the budget).

    Returns (trend, one row per run: final loss, extrapolated tokens, their ratio to the budget and
    whether the loss is beyond the fitted asymptote E, fit errors: the RMSE of the fit in nats and
    the error of a fit on the first ``holdout_share`` of the budget predicting the final loss)."""
    points = random[random["tokens"] > 0]
    tokens, losses = points["tokens"].to_numpy(dtype=float), points["val_loss"].to_numpy(dtype=float)
    trend = fit_trend(tokens, losses)
    budget = float(tokens[-1])
    early = tokens <= holdout_share * budget
    early_trend = fit_trend(tokens[early], losses[early]) if early.sum() >= 4 else None
    errors = {
        "fit_rmse": float(np.sqrt(np.mean((trend.loss(tokens) - losses) ** 2))),
        "holdout_error": float(early_trend.loss(budget) - losses[-1]) if early_trend else math.nan,
    }
    rows = []
    for label, final in finals.items():
        needed = float(trend.flops_for(final))
        rows.append({"method": label, "final_val_loss": final, "extrapolated_tokens": needed,
                     "extrapolated_ratio": needed / budget,
                     "below_asymptote": bool(trend.kind == "power" and final <= trend.E)})
    return trend, pd.DataFrame(rows), errors


def vocabulary_costs(train: torch.Tensor, validation: torch.Tensor, vocab_size: int, n_embd: int,
                     params: int, layer_flops_per_token: float) -> dict[str, float]:
    """What keeping the teacher's vocabulary costs a student of width ``n_embd``, and what trimming
    it to the ids of the training text would lose.

    ``layer_flops_per_token``: the student's forward FLOPs per token without the LM head."""
    seen = torch.unique(train)
    head = 2.0 * vocab_size * n_embd
    trimmed_head = 2.0 * len(seen) * n_embd
    return {
        "vocab_size": float(vocab_size),
        "train_distinct_ids": float(len(seen)),
        "embedding_param_share": vocab_size * n_embd / params,
        "head_flops_share": head / (head + layer_flops_per_token),
        "trimmed_head_flops_share": trimmed_head / (trimmed_head + layer_flops_per_token),
        "trimmed_params": float(params - (vocab_size - len(seen)) * n_embd),
        "validation_oov_share": float((~torch.isin(validation, seen)).float().mean()),
    }
