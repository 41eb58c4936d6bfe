"""The YAML form of search spaces becomes real Ray Tune domains."""

from __future__ import annotations

import pytest
from ray.tune.search.sample import Categorical, Float, Integer

from efficient_search.search_spaces import parse_search_space, resolve_search_space


def test_yaml_form_becomes_tune_domains() -> None:
    space = parse_search_space({
        "lr": {"loguniform": [1e-4, 1e-1]},
        "depth": {"randint": [1, 5]},
        "width": {"choice": [8, 16]},
        "opt": {"grid": ["sgd", "adam"]},
        "batch_size": 64,
        "head": {"hidden": {"choice": [32, 64]}, "dropout": {"uniform": [0.0, 0.5]}},
    })
    assert isinstance(space["lr"], Float) and space["lr"].lower == 1e-4
    assert isinstance(space["depth"], Integer) and space["depth"].upper == 5
    assert isinstance(space["width"], Categorical) and space["width"].categories == [8, 16]
    assert space["opt"] == {"grid_search": ["sgd", "adam"]}
    assert space["batch_size"] == 64
    assert isinstance(space["head"]["hidden"], Categorical)
    assert isinstance(space["head"]["dropout"], Float)


def test_named_and_default_spaces() -> None:
    space = resolve_search_space(None, {}, default="digits")
    assert {"depth", "width", "lr"} <= set(space)


@pytest.mark.parametrize(
    ("space", "pattern"),
    [
        ({"d": {"randint": [1.5, 3]}}, "bounds must be integers"),
        ({"d": {"randint": [1]}}, r"needs \[low, high\]"),
        ({"d": {"loguniform": [0, 1]}}, "needs low > 0"),
        ({"d": {"choice": []}}, "needs a non-empty list"),
    ],
)
def test_bad_domains_are_explained(space, pattern) -> None:
    with pytest.raises((ValueError, TypeError), match=pattern):
        parse_search_space(space)
