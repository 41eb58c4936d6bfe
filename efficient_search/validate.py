"""Input validators: one place for "an int but not a bool" and friends.

Errors state the rule, the value and, where one is given, the fix::

    check_int("max_t", 0, min=1)        # ValueError: `max_t` must be an integer >= 1, but got 0.
    check_int("num_samples", "4", min=1, example="8")
    # TypeError: `num_samples` must be an integer, but got '4' (str). Fix: e.g. num_samples: 8.

Without ``example`` a wrong type and a wrong value raise the same error class (``error``, a
``ValueError`` by default) with one message; with ``example`` (user-facing spec fields) a wrong
type is a ``TypeError`` naming the type and the YAML fix, a wrong value a ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, TypeGuard

import numpy as np

__all__ = ["check_choice", "check_int", "check_mapping", "check_name", "check_number", "is_int",
           "is_number", "type_error"]


def is_int(value: Any, *, numpy: bool = False) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool`` (with ``numpy``, NumPy integers too)."""
    kinds = (int, np.integer) if numpy else (int,)
    return isinstance(value, kinds) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any, *, numpy: bool = False, finite: bool = False) -> TypeGuard[float]:
    """An ``int``/``float`` that is not a ``bool`` (with ``numpy``, any NumPy number); with
    ``finite``, neither NaN nor infinite."""
    kinds = (int, float, np.number) if numpy else (int, float)
    if not isinstance(value, kinds) or isinstance(value, (bool, np.bool_)):
        return False
    return not finite or math.isfinite(value)


def type_error(field: str, value: Any, expected: str, example: str) -> TypeError:
    """``field`` must be ``expected``; the fix shows ``<last part of field>: example``."""
    leaf = field.rsplit(".", 1)[-1]
    return TypeError(f"`{field}` must be {expected}, but got {value!r} ({type(value).__name__}). "
                     f"Fix: e.g. {leaf}: {example}.")


def _bounds_text(min: float | None, max: float | None, above: float | None) -> str:
    if min is not None and max is not None:
        return f" in [{min}, {max}]"
    if above is not None and max is not None:
        return f" in ({above}, {max}]"
    if min is not None:
        return f" >= {min}"
    if above is not None:
        return f" > {above}"
    if max is not None:
        return f" <= {max}"
    return ""


def _check(field: str, value: Any, *, kind_ok: bool, kind: str, min: float | None,
           max: float | None, above: float | None, optional: bool, expected: str | None,
           fix: str | None, example: str | None, error: type[Exception]) -> Any:
    if value is None and optional:
        return None
    or_none = " or None" if optional else ""
    in_range = kind_ok and math.isfinite(value) and not (
        min is not None and value < min or above is not None and value <= above
        or max is not None and value > max)
    if example is not None:  # user-facing: the type first, with its YAML fix, then the range
        if not kind_ok:
            raise type_error(field, value, kind + (" or null" if optional else ""), example)
        if not in_range:
            bounds = _bounds_text(min, max, above)
            leaf = field.rsplit(".", 1)[-1]
            raise ValueError(f"`{field}` must be a finite number{bounds}, but got {value!r}. "
                             f"Fix: e.g. {leaf}: {example}.")
        return value
    if not in_range:
        rule = expected or f"{kind}{_bounds_text(min, max, above)}{or_none}"
        raise error(f"`{field}` must be {rule}, but got {value!r}." + (f" Fix: {fix}" if fix else ""))
    return value


def check_int(field: str, value: Any, *, min: int | None = None, max: int | None = None,
              optional: bool = False, numpy: bool = False, expected: str | None = None,
              fix: str | None = None, example: str | None = None,
              error: type[Exception] = ValueError) -> Any:
    """``value`` if it is an integer (never a bool) within ``[min, max]``, else an error naming
    ``field``. ``expected`` replaces the generated rule text ("an integer >= 1"), ``fix`` is
    appended as "Fix: ..."; see the module docstring for ``example``."""
    return _check(field, value, kind_ok=is_int(value, numpy=numpy), kind="an integer", min=min,
                  max=max, above=None, optional=optional, expected=expected, fix=fix,
                  example=example, error=error)


def check_number(field: str, value: Any, *, min: float | None = None, max: float | None = None,
                 above: float | None = None, optional: bool = False, numpy: bool = False,
                 expected: str | None = None, fix: str | None = None, example: str | None = None,
                 error: type[Exception] = ValueError) -> Any:
    """``value`` if it is a finite number (never a bool) within the bounds (``above``: an
    exclusive lower bound), else an error naming ``field``; options as :func:`check_int`."""
    return _check(field, value, kind_ok=is_number(value, numpy=numpy), kind="a number", min=min,
                  max=max, above=above, optional=optional, expected=expected, fix=fix,
                  example=example, error=error)


def check_choice(field: str, value: Any, choices: Collection[Any], *, fix: str | None = None) -> Any:
    """``value`` if it is one of ``choices`` (``True`` is not ``1``), else a ``ValueError``."""
    if not any(value == c and type(value) is type(c) for c in choices):
        listed = ", ".join(str(c) for c in choices)
        raise ValueError(f"`{field}` must be one of {listed}, but got {value!r}."
                         + (f" Fix: {fix}" if fix else ""))
    return value


def check_name(field: str, value: Any, *, optional: bool = False,
               expected: str = "a non-empty string") -> Any:
    """``value`` if it is a non-empty string (a metric or result key), else a ``TypeError``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"`{field}` must be {expected}{' or None' if optional else ''}, but got "
                        f"{value!r}.")
    return value


def check_mapping(field: str, value: Any, *, example: str = "{key: value}") -> Mapping[str, Any]:
    """``value`` if it is a mapping, else a ``TypeError`` naming ``field``."""
    if not isinstance(value, Mapping):
        raise type_error(field, value, "a mapping", example)
    return value
