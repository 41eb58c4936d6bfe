"""The shared input validators: the rule, the value and the fix, never a bool taken for an int."""

from __future__ import annotations

import math

import numpy as np
import pytest

from efficient_search.validate import (
    check_choice,
    check_int,
    check_mapping,
    check_name,
    check_number,
    is_int,
    is_number,
)


def test_predicates_reject_bools_and_take_numpy_on_request() -> None:
    assert is_int(3) and not is_int(True) and not is_int(3.0) and not is_int(np.int64(3))
    assert is_int(np.int64(3), numpy=True) and not is_int(np.bool_(True), numpy=True)
    assert is_number(2.5) and is_number(math.nan) and not is_number(math.nan, finite=True)
    assert not is_number(False) and not is_number("1") and is_number(np.float32(1), numpy=True)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: check_int("max_t", 0, min=1), ValueError, "`max_t` must be an integer >= 1, but got 0."),
    (lambda: check_int("max_t", True, min=1), ValueError, "`max_t` must be an integer >= 1, but got True."),
    (lambda: check_int("patience", 0, min=1, optional=True), ValueError,
     "`patience` must be an integer >= 1 or None, but got 0."),
    (lambda: check_int("seed", "1", error=TypeError), TypeError, "`seed` must be an integer, but got '1'."),
    (lambda: check_int("tile", 8, min=16, max=64, expected="an int in [16, 64]", fix="e.g. 32."),
     ValueError, "`tile` must be an int in [16, 64], but got 8. Fix: e.g. 32."),
    (lambda: check_int("num_samples", "4", min=1, example="8"), TypeError,
     "`num_samples` must be an integer, but got '4' (str). Fix: e.g. num_samples: 8."),
    (lambda: check_int("num_samples", 0, min=1, example="8"), ValueError,
     "`num_samples` must be a finite number >= 1, but got 0. Fix: e.g. num_samples: 8."),
    (lambda: check_number("eta", 1, above=1), ValueError, "`eta` must be a number > 1, but got 1."),
    (lambda: check_number("eta", math.inf, above=1), ValueError, "`eta` must be a number > 1, but got inf."),
    (lambda: check_number("a.time_budget_s", None, min=0, example="600"), TypeError,
     "`a.time_budget_s` must be a number, but got None (NoneType). Fix: e.g. time_budget_s: 600."),
    (lambda: check_choice("strategy", "fsdp", ("ddp", "deepspeed"), fix="strategy: ddp."), ValueError,
     "`strategy` must be one of ddp, deepspeed, but got 'fsdp'. Fix: strategy: ddp."),
    (lambda: check_choice("verbose", True, (0, 1)), ValueError,
     "`verbose` must be one of 0, 1, but got True."),
    (lambda: check_name("time_attr", ""), TypeError, "`time_attr` must be a non-empty string, but got ''."),
    (lambda: check_mapping("task_options", [1]), TypeError,
     "`task_options` must be a mapping, but got [1] (list). Fix: e.g. task_options: {key: value}."),
])
def test_errors_state_the_rule_the_value_and_the_fix(call, error, message) -> None:
    with pytest.raises(error) as caught:
        call()
    assert str(caught.value) == message


def test_valid_values_come_back() -> None:
    assert check_int("n", 3, min=1) == 3 and check_int("n", None, optional=True) is None
    assert check_number("x", 0.5, above=0, max=1) == 0.5 and check_choice("m", "min", ("min", "max")) == "min"
    assert check_name("t", "fidelity/epoch") == "fidelity/epoch" and check_mapping("o", {}) == {}
