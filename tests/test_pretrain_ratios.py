"""benchmarks/_pretrain_ratios.py: tokens and compute to reach a loss, their ratios, the fitted law."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from benchmark_modules import load_benchmark_module

ratios = load_benchmark_module("_pretrain_ratios")


def curve(tokens: list[float], losses: list[float], per_token: float = 6.0,
          overhead: float = 0.0) -> pd.DataFrame:
    t = np.asarray(tokens, dtype=float)
    return pd.DataFrame({"tokens": t, "val_loss": losses, "compute": per_token * t + overhead})


def test_tokens_and_compute_to_reach_interpolate_and_say_never() -> None:
    run = curve([0, 100, 200, 400], [10.0, 6.0, 5.0, 4.0], overhead=50.0)
    assert ratios.tokens_to_reach(run, 5.5) == pytest.approx(150.0)
    assert ratios.x_to_reach(run, "compute", 5.5) == pytest.approx(6 * 150 + 50)
    assert ratios.tokens_to_reach(run, 11.0) == 0.0  # starts below the target
    assert math.isnan(ratios.tokens_to_reach(run, 3.0))


def test_ratios_count_the_teacher_and_the_search_in_compute() -> None:
    random = curve([0, 100, 200, 400], [10.0, 7.0, 6.0, 5.0])
    # Reaches random's final loss (5.0) at 100 tokens: 4x fewer tokens; per token it costs 3x random's
    # compute (teacher forward) and 600 FLOPs before training (the search): 2400 / (1800 + 600).
    kd = curve([0, 100, 200, 400], [8.0, 5.0, 4.5, 4.0], per_token=18.0, overhead=600.0)
    curves = {"random": random, "kd": kd}
    assert ratios.ratio_at(curves, "kd", 400) == pytest.approx(4.0)
    assert ratios.ratio_at(curves, "kd", 400, column="compute") == pytest.approx(2400 / 2400)
    # Against random stopped at 100 tokens (loss 7): kd reaches 7 after 100 / 3 tokens.
    assert ratios.ratio_at(curves, "kd", 100) == pytest.approx(100 / (100 / 3))
    start_below = {"random": random, "kd": curve([0, 100], [4.0, 3.0])}
    assert ratios.ratio_at(start_below, "kd", 400) == math.inf
    never = {"random": random, "kd": curve([0, 400], [9.0, 8.0])}
    assert math.isnan(ratios.ratio_at(never, "kd", 400))


def test_law_extrapolation_recovers_a_power_law_and_reports_its_error() -> None:
    tokens = np.linspace(0, 1e6, 17)
    losses = np.r_[10.8, 3.0 + 400.0 * tokens[1:] ** -0.4]
    random = pd.DataFrame({"tokens": tokens, "val_loss": losses})
    trend, table, errors = ratios.law_extrapolation(random, {"kd": 3.5, "better": 2.9})
    assert trend.kind == "power" and trend.E == pytest.approx(3.0, abs=0.05)
    kd = table.set_index("method").loc["kd"]
    assert kd["extrapolated_tokens"] == pytest.approx((400.0 / 0.5) ** (1 / 0.4), rel=0.1)
    assert kd["extrapolated_ratio"] == pytest.approx(kd["extrapolated_tokens"] / 1e6)
    better = table.set_index("method").loc["better"]
    assert better["below_asymptote"] and math.isnan(better["extrapolated_tokens"])
    assert errors["fit_rmse"] < 1e-3 and abs(errors["holdout_error"]) < 0.01


def test_vocabulary_costs_count_embeddings_head_and_unseen_ids() -> None:
    train = torch.tensor([[1, 2, 3, 3], [2, 4, 4, 1]])
    validation = torch.tensor([[1, 5, 2, 6]])  # 5 and 6 never appear in training
    costs = ratios.vocabulary_costs(train, validation, vocab_size=100, n_embd=8, params=1_000,
                                    layer_flops_per_token=400.0)
    assert costs["train_distinct_ids"] == 4 and costs["validation_oov_share"] == 0.5
    assert costs["embedding_param_share"] == pytest.approx(0.8)
    assert costs["head_flops_share"] == pytest.approx(1600 / 2000)
    assert costs["trimmed_head_flops_share"] == pytest.approx(64 / 464)
    assert costs["trimmed_params"] == 1_000 - 96 * 8


def test_the_hand_chosen_shape_has_one_width_step_and_the_depth_of_the_size() -> None:
    from efficient_search.subnetwork import SuperDims

    shapes = load_benchmark_module("_hand_shapes")
    smollm2 = SuperDims(arch="llama", n_layer=30, n_embd=576, intermediate_size=1536, n_heads=9,
                        n_query_groups=3, head_size=64, vocab_size=49152, tied_embeddings=True)
    full = shapes.parameters(smollm2, {})
    low, high = 0.075 * full, 0.1 * full
    for target in (10_675_152, 11_899_368):
        shape = shapes.proportional_shape(smollm2, target, low, high)
        # Every width at one step (2/8) of the teacher's; the depth brings it nearest the target.
        assert {k: shape[k] for k in ("n_embd", "intermediate_size", "head_size")} == \
            {"n_embd": 144, "intermediate_size": 384, "head_size": 16}
        size = shapes.parameters(smollm2, shape)
        assert low <= size <= high
        for depth in (shape["n_layer"] - 1, shape["n_layer"] + 1):
            assert abs(shapes.parameters(smollm2, {**shape, "n_layer": depth}) - target) >= abs(size - target)
    with pytest.raises(ValueError, match="No hand-chosen shape of this super-network has 1-2 parameters"):
        shapes.proportional_shape(smollm2, 1.5, 1, 2)


def test_readme_tables_render_from_the_csv_summaries(tmp_path) -> None:
    tables = load_benchmark_module("_pretrain_tables")
    name = tables.NAME
    pd.DataFrame({"method": ["random+KD", "searched+KD"] * 2, "budget_fraction": [0.1, 0.1, 1.0, 1.0],
                  "tokens_ratio": ["0.8 (0.7-0.9)", "2 (1-3)", "never", "3.2 (2.2-3.3)"],
                  "compute_ratio": ["0.1", "0.3", "never", "0.6"]}).to_csv(tmp_path / f"{name}_by_budget.csv")
    pd.DataFrame({"max_tokens": [250_000]}).to_csv(tmp_path / f"{name}_context.csv")
    pd.DataFrame({"seed": [0, 0], "init": ["random", "searched"] * 1, "temperature": [1.0, 1.0],
                  "search_loss": [6.2, 5.1]}).pipe(
        lambda f: pd.concat([f, f.assign(temperature=10.0, search_loss=[6.0, 5.3])])).to_csv(
        tmp_path / f"{name}_temperature.csv")
    budget = tables.by_budget("tokens_ratio", tmp_path)
    assert "| 10% (25k tokens) | 0.8 (0.7-0.9) |  |  | 2 (1-3) |" in budget
    assert "| 100% (250k tokens) | never |  |  | 3.2 (2.2-3.3) |" in budget
    chosen = tables.temperatures(tmp_path)
    assert "| 0 | random | 6.200 | **6.000** |" in chosen and "| 0 | searched | **5.100** | 5.300 |" in chosen
