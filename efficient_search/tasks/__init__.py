"""Tasks: a training loop plus the metrics it reports. Tasks know nothing about searching.

A task's ``train_loop(params, options, session, seed)`` trains one configuration ``params``
with task ``options`` and reports through ``session.report`` once per unit of budget.
Importing this package registers the built-in tasks; the registry itself lives in
:mod:`efficient_search.task_registry` (no torch), which imports them on a name it does not know.
"""

from __future__ import annotations

from efficient_search.task_registry import TASKS, Task, TrainLoop, get_task, register_task
from efficient_search.tasks import digits as _digits  # noqa: F401  (registers itself)
from efficient_search.tasks import pretrain as _pretrain  # noqa: F401
from efficient_search.tasks import sam as _sam  # noqa: F401
from efficient_search.tasks import shakespeare as _shakespeare  # noqa: F401
from efficient_search.tasks import subnetwork_eval as _subnetwork_eval  # noqa: F401

__all__ = ["TASKS", "Task", "TrainLoop", "get_task", "register_task"]
