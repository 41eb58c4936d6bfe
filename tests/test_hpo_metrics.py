"""The hpo_suite metrics on small synthetic frames: ranks, the Friedman/Nemenyi critical difference
(against Demšar 2006's table), its cliques and the critical-difference diagram."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchmark_modules import load_benchmark_module
from scipy.stats import friedmanchisquare

ROOT = Path(__file__).resolve().parents[1]


metrics = load_benchmark_module("_hpo_metrics")

#: Demšar (2006), table 5a: q_0.05 of the Nemenyi test for k = 2..10 methods.
DEMSAR_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


def synthetic(offsets: dict[str, float], instances: int = 6, seeds: int = 3, noise: float = 0.0,
              seed: int = 0) -> pd.DataFrame:
    """One row per instance x seed x method; regret = the method's offset (+ seeded noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for instance in range(instances):
        for s in range(seeds):
            for method, offset in offsets.items():
                row = {"instance": f"i{instance}", "seed": float(s), "method": method, "overhead_share": 0.01}
                row.update({k: offset + noise * rng.standard_normal() for k in metrics.KEYS})
                rows.append(row)
    return pd.DataFrame(rows)


# -- ranks ----------------------------------------------------------------------------------------------

def test_a_fixed_order_gives_integer_ranks_matching_the_summary_table() -> None:
    frame = synthetic({"ours": 0.1, "peer": 0.2, "random": 0.3})
    result = metrics.critical_difference(frame, "regret_50")
    assert list(result.ranks.index) == ["ours", "peer", "random"]
    assert result.ranks.tolist() == [1.0, 2.0, 3.0]
    assert result.n_blocks == 6 and result.n_methods == 3
    table = metrics.table(frame)
    for method, rank in result.ranks.items():
        assert table.loc[method, "rank_50"] == pytest.approx(rank)


def test_ranks_are_averaged_over_seeds_within_one_block_per_instance() -> None:
    frame = synthetic({"a": 0.1, "b": 0.2}, instances=2, seeds=2)
    swap = (frame["instance"] == "i0") & (frame["seed"] == 1.0)
    frame.loc[swap & (frame["method"] == "a"), "regret_50"] = 0.9  # a is last in one of i0's two seeds
    blocks = metrics.block_ranks(frame, "regret_50")
    assert blocks.shape == (2, 2)
    assert blocks.loc["i0"].tolist() == [1.5, 1.5] and blocks.loc["i1"].tolist() == [1.0, 2.0]
    assert metrics.critical_difference(frame, "regret_50").ranks.to_dict() == {"a": 1.25, "b": 1.75}


def test_ties_share_their_average_rank() -> None:
    frame = synthetic({"a": 0.1, "b": 0.1, "c": 0.5})
    assert metrics.critical_difference(frame, "regret_10").ranks.to_dict() == {"a": 1.5, "b": 1.5, "c": 3.0}


# -- Friedman test and Nemenyi critical difference ------------------------------------------------------

@pytest.mark.parametrize("k", sorted(DEMSAR_Q05))
def test_nemenyi_q_reproduces_demsar_table(k: int) -> None:
    # The printed table is off by up to 7e-4 in its last digit (k=3: 2.3437, k=7: 2.9483).
    assert metrics.nemenyi_q(k) == pytest.approx(DEMSAR_Q05[k], abs=1e-3)
    if k in (2, 5, 10):
        assert round(metrics.nemenyi_q(k), 3) == DEMSAR_Q05[k]


def test_critical_difference_follows_the_nemenyi_formula() -> None:
    frame = synthetic({m: 0.1 * i for i, m in enumerate("abcd")}, instances=10, seeds=2, noise=0.3)
    result = metrics.critical_difference(frame, "regret_50")
    assert result.n_blocks == 10 and result.q_alpha == pytest.approx(2.569, abs=5e-4)
    assert result.cd == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 10)), abs=1e-3)


def test_friedman_p_is_scipys_over_the_instance_blocks() -> None:
    frame = synthetic({m: 0.05 * i for i, m in enumerate("abcd")}, instances=8, seeds=3, noise=0.1)
    result = metrics.critical_difference(frame, "regret_50")
    blocks = metrics.block_ranks(frame, "regret_50")
    statistic, p_value = friedmanchisquare(*(blocks[m] for m in blocks.columns))
    assert result.friedman_statistic == pytest.approx(statistic)
    assert result.friedman_p == pytest.approx(p_value)


def test_separated_methods_are_significant_and_share_no_clique() -> None:
    frame = synthetic({"ours": 0.0, "mid": 0.5, "worst": 1.0}, instances=12, seeds=2, noise=0.01)
    result = metrics.critical_difference(frame, "regret_100")
    assert result.friedman_p < 0.001
    assert result.ranks["worst"] - result.ranks["ours"] > result.cd
    assert not any({"ours", "worst"} <= set(group) for group in result.cliques)


def test_two_methods_have_a_cd_but_no_friedman_p() -> None:
    result = metrics.critical_difference(synthetic({"a": 0.1, "b": 0.2}, instances=5), "regret_50")
    assert math.isnan(result.friedman_p)
    assert result.cd == pytest.approx(1.960 * math.sqrt(2 * 3 / (6 * 5)), abs=1e-3)


# -- cliques --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cd", "expected"), [
    (1.2, [["a", "b"], ["b", "c"], ["c", "d"], ["d", "e"]]),
    (2.0, [["a", "b", "c"], ["b", "c", "d"], ["c", "d", "e"]]),
    (0.1, []),
    (10.0, [["a", "b", "c", "d", "e"]]),
])
def test_cliques_are_maximal_runs_spanning_less_than_cd(cd: float, expected: list[list[str]]) -> None:
    average = pd.Series([1.0, 1.5, 2.6, 3.0, 4.0], index=list("abcde"))
    assert metrics.cliques(average, cd) == expected


def test_a_run_inside_a_longer_one_is_no_clique_of_its_own() -> None:
    average = pd.Series([1.0, 1.1, 1.2, 3.0], index=list("abcd"))
    assert metrics.cliques(average, 0.5) == [["a", "b", "c"]]


# -- bad input ------------------------------------------------------------------------------------------

def test_unknown_column_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"column='regret_33'.*regret_50"):
        metrics.critical_difference(synthetic({"a": 0.1, "b": 0.2}), "regret_33")


def test_incomplete_cell_names_the_cell_and_the_fix() -> None:
    frame = synthetic({"a": 0.1, "b": 0.2, "c": 0.3})
    frame = frame.drop(frame.index[(frame["instance"] == "i2") & (frame["method"] == "c")][:1])
    with pytest.raises(ValueError, match=r"'instance': 'i2'.*rerun the missing methods"):
        metrics.critical_difference(frame, "regret_50")


def test_missing_regret_is_refused() -> None:
    frame = synthetic({"a": 0.1, "b": 0.2})
    frame.loc[3, "regret_25"] = float("nan")
    with pytest.raises(ValueError, match="1 are NaN"):
        metrics.critical_difference(frame, "regret_50")


# -- the diagram ----------------------------------------------------------------------------------------

def test_cd_plot_draws_every_method_with_ours_in_bold() -> None:
    import matplotlib.pyplot as plt

    offsets = {"ours": 0.0, "peer_a": 0.1, "peer_b": 0.12, "random": 0.4, "asha": 0.35}
    frame = synthetic(offsets, instances=8, seeds=2, noise=0.05)
    fig = metrics.cd_plot(frame, "regret_50", "ours", "synthetic")
    try:
        (ax,) = fig.axes
        assert len(ax.lines) > len(offsets) and ax.texts
        labels = {t.get_text(): t for t in ax.texts}
        for method in offsets:
            (text,) = [t for s, t in labels.items()
                       if s.startswith(f"{method} (") or s.endswith(f" {method}")]
            assert text.get_fontweight() == ("bold" if method == "ours" else "normal")
        assert any(s.startswith("CD = ") for s in labels)
        assert "N = 8 instances" in ax.get_title()
        fig.canvas.draw()  # renders without error
    finally:
        plt.close(fig)
