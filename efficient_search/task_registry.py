"""The task registry without the built-in tasks: ``Task``, ``register_task``, ``get_task``.

Importing it costs no torch, so a Tune trial process that runs a task registered elsewhere (a
benchmark's millisecond loop) stays small; the built-in tasks (``efficient_search.tasks``) are
imported the first time a name is not found.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from efficient_search.train.session import TrialSession

TrainLoop = Callable[[Mapping[str, Any], Mapping[str, Any], TrialSession, int], None]


@dataclass(frozen=True)
class Task:
    """A registered task."""

    name: str
    train_loop: TrainLoop
    metrics: Mapping[str, str]
    """Every objective the loop reports, with its natural mode (``min``/``max``)."""
    default_metric: str
    default_space: str
    """Name of the search space used when a spec gives none."""
    options: Mapping[str, Any]
    """Valid ``task_options`` and their defaults."""
    positive_options: tuple[str, ...] = ()
    """Options that must be >= 1."""
    fraction_options: tuple[str, ...] = ()
    """Options that must lie strictly between 0 and 1."""
    nonnegative_options: tuple[str, ...] = ()
    """Options that must be >= 0 (seeds)."""
    check: Callable[[Mapping[str, Any]], None] | None = None
    """Further checks of the resolved options (raise ValueError naming the option)."""
    zero3: bool = False
    """Whether the loop checkpoints through DeepSpeed itself, so ZeRO stage 3 (partitioned
    weights) is safe; loops that save ``state_dict()`` would write empty checkpoints."""

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; unknown or ill-typed names raise."""
        for key, value in options.items():
            if key not in self.options:
                close = difflib.get_close_matches(str(key), list(self.options), n=1)
                hint = f"Did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"Unknown `task_options.{key}` (value {value!r}) for task {self.name!r}. "
                    f"{hint}Valid options: {', '.join(self.options)}."
                )
            default = self.options[key]
            if default is not None and not _same_kind(default, value):
                raise TypeError(
                    f"`task_options.{key}` must be {type(default).__name__} like the default "
                    f"{default!r}, but got {value!r} ({type(value).__name__})."
                )
        resolved = {**self.options, **options}
        for key in self.positive_options:
            if resolved[key] < 1:
                raise ValueError(f"`task_options.{key}` must be >= 1, but got {resolved[key]!r}.")
        for key in self.nonnegative_options:
            if resolved[key] < 0:
                raise ValueError(f"`task_options.{key}` must be >= 0, but got {resolved[key]!r}. "
                                 f"Fix: e.g. {key}: 0.")
        for key in self.fraction_options:
            if not 0 < resolved[key] < 1:
                raise ValueError(
                    f"`task_options.{key}` must lie in (0, 1), but got {resolved[key]!r}."
                )
        if self.check is not None:
            self.check(resolved)
        return resolved


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry (later issues register language modelling, SAM...)."""
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task called ``name``; unknown names list every valid one."""
    if isinstance(name, str) and name not in TASKS:
        import efficient_search.tasks  # noqa: F401  (the built-in tasks register themselves)
    if not isinstance(name, str) or name not in TASKS:
        close = difflib.get_close_matches(str(name), list(TASKS), n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"Unknown `task` {name!r}. {hint}Valid tasks: {', '.join(sorted(TASKS))}.")
    return TASKS[name]
