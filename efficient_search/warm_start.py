"""Seed a new search with earlier results from the store (the spec's ``warm_start``).

Every trial of the named experiments (same task, same search space) becomes an evaluated point
of the new searcher: its configuration, its last reported result and every result before it, as
the searcher would have seen them. They reach the searcher through ``add_evaluated_point`` once
Tune has given it the space (:class:`WarmStart`, a Tune callback): a warm-started evolution breeds
from them, Optuna's sampler conditions on them, and Quick-Tune fine-tunes its surrogate on their
learning curves; they are never run again.

    warm_start: {experiments: [digits-monday, digits-tuesday]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune import Callback
from ray.tune.search import Searcher
from ray.tune.utils.util import unflatten_dict

from efficient_search.fidelity import FIDELITY_KEYS
from efficient_search.store import ParquetStore
from efficient_search.store.rows import RUNNING, is_missing, result_from_columns

#: (config, {metric: last value}, every reported result in order)
Point = tuple[dict[str, Any], dict[str, float], list[dict[str, Any]]]


def _by_path(description: Any) -> dict[str, Any]:
    return {".".join(map(str, a["path"])): a for a in (description or {}).get("axes", [])}


def _differences(old: Any, new: Any) -> list[str]:
    """What two space descriptions disagree on: the axes added, removed or changed (by name; their
    order does not matter to a warm start, which hands points over by name), else the constants."""
    if old is None or new is None or old == new:
        return []
    before, after = _by_path(old), _by_path(new)
    names = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    rest = {k: v for k, v in old.items() if k != "axes"} != {k: v for k, v in new.items() if k != "axes"}
    return names or (["the constants"] if rest else [])


def earlier_points(warm_start: Mapping[str, Any], default_store: str, task: str, metrics: Sequence[str],
                   space_description: Any, mode: str = "max") -> list[Point]:
    """(config, {metric: last value}, results) of every trial of the experiments ``warm_start`` names,
    from the worst to the best by the first metric (``mode`` its direction), so that an aging
    evolution's population, which keeps the last points it was given, starts from the best.

    Raises ``ValueError`` naming the experiment and the fix when one is missing, ran another task
    or searched another space (naming the axes that differ).
    """
    store = ParquetStore(str(warm_start.get("store") or default_store))
    points: list[Point] = []
    for name in warm_start["experiments"]:
        if name not in store.experiments():
            there = ", ".join(store.experiments()) or "none"
            raise ValueError(f"`warm_start.experiments` names {name!r}, which is not in the store "
                             f"{store.root!r} (experiments there: {there}). Fix: an experiment of that "
                             "store, or warm_start.store.")
        metadata = store.metadata(name)
        ran = metadata.get("spec", {}).get("task")
        if ran != task:
            raise ValueError(f"`warm_start.experiments` {name!r} ran task {ran!r}, not {task!r}: its results "
                             "say nothing about this search. Fix: name experiments of the same task.")
        recorded = metadata.get("space")
        differences = _differences(recorded, space_description)
        if differences:
            raise ValueError(f"`warm_start.experiments` {name!r} searched another space: "
                             f"{', '.join(differences)} differ. Fix: "
                             "warm-start from experiments with this search space, or search theirs.")
        rows = store.results(name)
        reported = rows[rows["status"] == RUNNING].sort_values(["trial_id", "iteration"], kind="stable")
        for _, trial in reported.groupby("trial_id", sort=False):
            records = trial.to_dict("records")  # Python scalars, as the space's axes expect
            row = records[-1]
            values = {m: float(row.get(f"metric.{m}", math.nan)) for m in metrics}
            if any(math.isnan(v) for v in values.values()):
                continue
            config = {c.removeprefix("config."): v for c, v in row.items()
                      if c.startswith("config.") and not is_missing(v)
                      and c.removeprefix("config.") not in FIDELITY_KEYS}
            results = [result_from_columns(r) for r in records]
            points.append((unflatten_dict(config, delimiter="."), values, results))
    sign = 1.0 if mode == "max" else -1.0
    return sorted(points, key=lambda point: sign * point[1][metrics[0]])


def check_warm_startable(searcher: Any, name: str) -> None:
    """Refuse a searcher that cannot take evaluated points (Ray's random/grid generator)."""
    method = getattr(type(searcher), "add_evaluated_point", None)
    if not isinstance(searcher, Searcher) or method is Searcher.add_evaluated_point:
        raise ValueError(f"`warm_start` needs a searcher that learns from earlier results, but searcher "
                         f"{name!r} cannot take evaluated points. Fix: searcher evolution, optuna "
                         "or quicktune.")


class WarmStart(Callback):
    """Hands the earlier points to the searcher once Tune has set its space (first setup only), and
    says so when ``announce`` names their experiments."""

    def __init__(self, searcher: Searcher, points: list[Point], announce: str | None = None) -> None:
        self.searcher, self.points, self.done, self.announce = searcher, points, False, announce

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        if self.done:  # a restored run: the searcher's saved state holds them already
            return
        for config, values, results in self.points:
            # Ours take a mapping of metric -> value (several objectives) and the results in order
            # (Quick-Tune's learning curves; evolution and Optuna read only the last values).
            self.searcher.add_evaluated_point(
                config, values, intermediate_values=results)  # type: ignore[arg-type]
        self.done = True
        if self.announce:
            print(f"efficient-search: warm start: {len(self.points)} earlier trial(s) of {self.announce} "
                  f"seed searcher {type(self.searcher).__name__}", flush=True)
