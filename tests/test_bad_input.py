"""Bad input, counted: malformed specs fail before Ray starts, with an error naming the field.

Every mutation below changes one field of a valid spec (``BASES``) to something invalid; hypothesis
draws the bad values. Each must make :func:`efficient_search.api.plan_run` (what ``run`` calls
before Ray starts) raise a ``ValueError``/``TypeError`` raised by our own code (not a Ray, torch or
Optuna frame) whose message names the field. ``FAMILIES`` is the one list of what is covered:
README's table counts its entries (``python tests/test_bad_input.py`` prints the counts).
"""

from __future__ import annotations

import copy
import math
import string
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
OURS = [REPO / "efficient_search", REPO / "schedulers", REPO / "search_spaces"]
DROP = object()  # a mutation value that removes the key

BASE: dict[str, Any] = {"name": "bad-input", "num_samples": 1, "resources": {"num_workers": 0}}
LAYER_FREEZING = {"scheduler": "layer_freezing",
                  "scheduler_options": {"max_trainable_layers": 6, "epochs": 4}}
BASES: dict[str, dict[str, Any]] = {
    "base": BASE,
    **{f"searcher={s}": {**BASE, "searcher": s} for s in ("random", "evolution", "optuna", "quicktune")},
    **{f"scheduler={s}": {**BASE, "scheduler": s}
       for s in ("fifo", "asha", "hyperband", "median", "freeze_thaw")},
    "scheduler=layer_freezing": {**BASE, **LAYER_FREEZING},
    "nsga2": {**BASE, "searcher": "optuna", "searcher_options": {"sampler": "nsga2"}},
    "quicktune+freeze_thaw": {**BASE, "searcher": "quicktune", "scheduler": "freeze_thaw"},
    "deepspeed": {**BASE, "resources": {"num_workers": 1, "strategy": "deepspeed"}},
    "two-objectives": {**BASE, "searcher": "evolution", "metric": ["val_accuracy", "val_loss"]},
}

# -- bad values ------------------------------------------------------------------------------------
text = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=10)
floats_not_int = st.floats().filter(lambda x: not float(x).is_integer())
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
containers = st.one_of(st.lists(st.integers(), max_size=2),
                       st.dictionaries(text, st.integers(), min_size=1, max_size=2))
not_int = st.one_of(text, st.booleans(), floats_not_int, st.none(), containers)
not_number = st.one_of(text, st.booleans(), st.none(), containers)
not_mapping = st.one_of(text, st.integers(), st.booleans(), st.none(), st.lists(st.integers(), max_size=2))


def below(low: int) -> st.SearchStrategy[int]:
    """Integers < ``low``."""
    return st.integers(max_value=low - 1)


def real_below(low: float) -> st.SearchStrategy[float]:
    """Finite floats < ``low``, NaN and the infinities."""
    return st.one_of(st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False),
                     non_finite)


def real_at_most(low: float) -> st.SearchStrategy[float]:
    """Numbers <= ``low`` (ints too), NaN and the infinities."""
    return st.one_of(st.integers(max_value=int(low)), real_below(low), st.just(low))


def unknown(known: Callable[[], Any]) -> st.SearchStrategy[str]:
    """Names that ``known()`` does not hold."""
    return text.filter(lambda name: name not in known())


def typo(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    """A valid name with one letter dropped (close enough for a "did you mean")."""
    return st.sampled_from(names).flatmap(
        lambda n: st.integers(0, len(n) - 1).map(lambda i: n[:i] + n[i + 1:]))


@dataclass(frozen=True)
class Mutation:
    """Bad ``values`` at the dotted ``path`` of ``BASES[base]``; the error must name ``names``
    (default: the last part of ``path``). ``key``: the value is a key added under ``path``,
    and the error must name it."""

    path: str
    values: st.SearchStrategy[Any]
    base: str = "base"
    names: str | None = None
    key: bool = False

    def spec(self, value: Any, store: str) -> tuple[dict[str, Any], str]:
        """The mutated spec and the text its error must hold."""
        spec = copy.deepcopy(BASES[self.base]) | {"store": store}
        *parents, leaf = self.path.split(".") if self.path else [""]
        where = spec
        for part in parents:
            where = where.setdefault(part, {})
        if self.key:
            (where.setdefault(leaf, {}) if leaf else where)[value] = 1
            return spec, value
        if value is DROP:
            where.pop(leaf)
        else:
            where[leaf] = value
        return spec, self.names or leaf


def m(path: str, values: st.SearchStrategy[Any], base: str = "base", names: str | None = None) -> Mutation:
    return Mutation(path, values, base, names)


def options(kind: str, name: str, **bad: st.SearchStrategy[Any]) -> list[Mutation]:
    """One mutation per bad option of searcher/scheduler ``name`` (base ``kind=name``)."""
    base = name if name in BASES else f"{kind}={name}"
    return [m(f"{kind}_options.{option}", values, base) for option, values in bad.items()]


def space(path: str, values: st.SearchStrategy[Any], names: str | None = None) -> Mutation:
    """A YAML search space whose parameter ``lr`` (or ``path``) holds ``values``."""
    return m(f"search_space.{path}", values, names=names or f"search_space.{path.split('.')[0]}")


def domain(kind: str, argument: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return argument.map(lambda a: {kind: a})


def pairs(low: st.SearchStrategy[Any], high: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.tuples(low, high).map(list)


def _spec_fields(section: str = "") -> set[str]:
    from efficient_search.spec import ExperimentSpec, Resources

    return set((Resources if section == "resources" else ExperimentSpec).__dataclass_fields__)


def _tasks() -> set[str]:
    from efficient_search.tasks import TASKS

    return set(TASKS)


def _spaces() -> set[str]:
    from efficient_search.search_spaces import SPACES

    return set(SPACES)


def _registered(kind: str) -> set[str]:
    from efficient_search import registry

    return set(registry.SEARCHERS if kind == "searcher" else registry.SCHEDULERS)


def _factory_options(kind: str, name: str) -> set[str]:
    import inspect

    from efficient_search import registry

    table = registry.SEARCHERS if kind == "searcher" else registry.SCHEDULERS
    return set(inspect.signature(table[name]).parameters) - {"seed"}


FLOAT_DOMAINS = ("uniform", "loguniform")
INT_DOMAINS = ("randint", "lograndint")
ordered_floats = st.floats(-1e6, 1e6)
ordered_ints = st.integers(-10**6, 10**6)

#: The families of bad input, each a list of mutations (README counts them).
FAMILIES: dict[str, list[Mutation]] = {
    "wrong types of spec fields": [
        m("name", st.one_of(st.integers(), st.none(), st.booleans(), containers)),
        m("task", st.one_of(st.integers(), st.none(), st.just(""), containers)),
        m("task_options", not_mapping),
        m("searcher_options", not_mapping),
        m("scheduler_options", not_mapping),
        m("search_space", st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(text, max_size=2))),
        m("searcher", st.one_of(st.integers(), st.floats(), st.none(), containers)),
        m("scheduler", st.one_of(st.integers(), st.floats(), st.none(), containers)),
        m("metric", st.one_of(st.integers(), st.booleans(), st.just(""), st.just([]),
                              st.dictionaries(text, text, min_size=1, max_size=2))),
        m("mode", st.one_of(st.integers(), st.booleans(), st.just([]),
                            st.dictionaries(text, text, min_size=1, max_size=2))),
        m("num_samples", not_int),
        m("max_concurrent_trials", not_int.filter(lambda v: v is not None)),
        m("time_budget_s", not_number.filter(lambda v: v is not None)),
        m("seed", not_int),
        m("max_failures", not_int),
        m("verbose", not_int),
        m("resume", st.one_of(st.integers(), text, st.none(), st.floats())),
        m("store", st.one_of(st.integers(), st.just(""), st.none(), containers)),
        m("storage_path", st.one_of(st.integers(), st.booleans(), containers)),
        m("resources", not_mapping),
        m("resources.num_workers", not_int),
        m("resources.cpus_per_worker", not_number),
        m("resources.gpus_per_worker", not_number),
        m("resources.strategy", st.one_of(st.integers(), st.none(), containers)),
        m("resources.deepspeed_config", not_mapping.filter(lambda v: v is not None), "deepspeed"),
    ],
    "out-of-range numbers": [
        m("num_samples", below(1)),
        m("max_concurrent_trials", below(1)),
        m("time_budget_s", real_below(0)),
        m("seed", below(0)),
        m("max_failures", below(0)),
        m("verbose", st.integers().filter(lambda v: v not in (0, 1, 2, 3))),
        m("resources.num_workers", below(0)),
        m("resources.cpus_per_worker", real_below(0)),
        m("resources.gpus_per_worker", real_below(0)),
        m("task_options.epochs", below(1)),
        m("task_options.val_fraction", st.one_of(real_at_most(0), st.floats(min_value=1), non_finite)),
        m("task_options.data_seed", below(0)),
    ],
    "unknown keys": [
        Mutation("", unknown(_spec_fields), key=True),
        Mutation("resources", unknown(lambda: _spec_fields("resources")), key=True),
        Mutation("task_options", unknown(lambda: ("epochs", "val_fraction", "data_seed")), key=True),
        *[Mutation("searcher_options", unknown(partial(_factory_options, "searcher", s)),
                   f"searcher={s}", key=True) for s in ("random", "evolution", "optuna", "quicktune")],
        *[Mutation("scheduler_options", unknown(partial(_factory_options, "scheduler", s)),
                   f"scheduler={s}", key=True)
          for s in ("fifo", "asha", "hyperband", "median", "layer_freezing", "freeze_thaw")],
    ],
    "unknown names": [
        m("name", st.sampled_from(["", "a/b", "../x", ".hidden", "_x", "-x", "a b", "a..b", "x" * 201])),
        m("task", st.one_of(typo(("digits", "shakespeare", "pretrain")), unknown(_tasks))),
        m("searcher", st.one_of(typo(("random", "evolution", "optuna", "quicktune")),
                                unknown(lambda: _registered("searcher")))),
        m("scheduler", st.one_of(typo(("asha", "hyperband", "median", "layer_freezing")),
                                 unknown(lambda: _registered("scheduler")))),
        m("search_space", unknown(_spaces)),
        m("resources.strategy", text.filter(lambda s: s not in ("ddp", "deepspeed"))),
        m("mode", text.filter(lambda s: s not in ("min", "max"))),
        m("metric", text.filter(lambda s: s not in ("val_accuracy", "val_loss", "train_loss"))),
        m("searcher_options.sampler", st.one_of(text.filter(lambda s: s not in ("tpe", "nsga2", "random")),
                                                st.integers(), containers), "searcher=optuna"),
        m("scheduler_options.promotion", st.one_of(text.filter(lambda s: s not in ("continue", "restart")),
                                                   st.integers()), "scheduler=layer_freezing"),
    ],
    "searcher options": [
        *options("searcher", "random", max_concurrent=st.one_of(below(0), not_int.filter(
            lambda v: v is not None))),
        *options("searcher", "evolution",
                 population_size=st.one_of(below(2), not_int),
                 sample_size=st.one_of(below(1), st.integers(min_value=21), not_int.filter(
                     lambda v: v is not None)),
                 max_cost=st.floats(allow_nan=False), min_cost=st.floats(allow_nan=False),
                 bins=st.lists(st.floats(0, 1), min_size=1, max_size=3),
                 keep_bin=st.just(True),
                 points_to_evaluate=st.one_of(st.integers(), text, st.lists(st.integers(), min_size=1,
                                                                            max_size=2)),
                 space=st.one_of(st.integers(), text, st.lists(st.integers(), max_size=2)),
                 metric=text, mode=st.sampled_from(["min", "max"])),
        *options("searcher", "optuna", population_size=st.integers(1, 10)),
        *options("searcher", "nsga2", population_size=st.one_of(below(2), not_int.filter(
            lambda v: v is not None))),
        *options("searcher", "quicktune",
                 alpha=st.one_of(real_below(0), not_number.filter(lambda v: v is not None)),
                 pool_size=st.one_of(below(1), not_int),
                 initial_random=st.one_of(below(0), not_int),
                 online_steps=st.one_of(below(1), not_int),
                 max_t=st.one_of(below(1), not_int.filter(lambda v: v is not None)),
                 time_attr=st.one_of(st.integers(), st.just(""), containers),
                 cost_attr=st.one_of(st.integers(), st.just(""), st.none(), containers),
                 surrogate=st.one_of(st.integers(), st.booleans(), containers),
                 meta_features=st.one_of(st.integers(), text, st.lists(st.integers(), min_size=1,
                                                                       max_size=2)),
                 meta_train_options=st.dictionaries(text, st.integers(), min_size=1, max_size=2),
                 points_to_evaluate=st.one_of(st.integers(), text, st.lists(st.integers(), min_size=1,
                                                                            max_size=2)),
                 metric=text),
    ],
    "scheduler options": [
        *options("scheduler", "asha",
                 max_t=st.one_of(real_at_most(0), not_number),
                 grace_period=st.one_of(real_at_most(0), st.integers(min_value=5), not_number),
                 reduction_factor=st.one_of(real_at_most(1), not_number),
                 brackets=st.one_of(below(1), not_int),
                 time_attr=st.one_of(st.integers(), st.just(""), st.none(), containers)),
        *options("scheduler", "hyperband",
                 max_t=st.one_of(real_at_most(0), not_number),
                 reduction_factor=st.one_of(real_at_most(1), not_number),
                 time_attr=st.one_of(st.integers(), st.just(""), st.none(), containers)),
        *options("scheduler", "median",
                 grace_period=st.one_of(real_below(0), not_number),
                 min_samples_required=st.one_of(below(1), not_int),
                 time_attr=st.one_of(st.integers(), st.just(""), st.none(), containers)),
        *options("scheduler", "layer_freezing",
                 max_trainable_layers=st.one_of(below(1), not_int, st.just(DROP)),
                 epochs=st.one_of(below(1), not_int, st.just(DROP)),
                 min_trainable_layers=st.one_of(below(1), st.integers(min_value=7), not_int),
                 reduction_factor=st.one_of(real_at_most(1), not_number),
                 min_epochs=st.one_of(below(1), st.integers(min_value=5), not_int.filter(
                     lambda v: v is not None)),
                 time_attr=st.one_of(st.integers(), st.just(""), st.none(), containers)),
        *options("scheduler", "freeze_thaw",
                 max_t=st.one_of(below(1), not_int),
                 budget_step=st.one_of(below(1), not_int),
                 patience=st.one_of(below(1), not_int.filter(lambda v: v is not None)),
                 cost_budget_s=st.one_of(real_at_most(0), not_number.filter(lambda v: v is not None)),
                 alpha=st.one_of(real_below(0), not_number),
                 time_attr=st.one_of(st.integers(), st.just(""), containers),
                 cost_attr=st.one_of(st.integers(), st.just(""), st.none(), containers),
                 surrogate=st.one_of(st.integers(), st.booleans(), containers),
                 meta_features=st.one_of(st.integers(), text, st.lists(st.integers(), min_size=1,
                                                                       max_size=2))),
        *options("scheduler", "quicktune+freeze_thaw", surrogate=text, meta_features=st.just({"a": 1.0})),
        m("scheduler_options.searcher", text, "scheduler=freeze_thaw"),
    ],
    "search spaces": [
        space("lr", st.sampled_from(FLOAT_DOMAINS).flatmap(lambda d: domain(d, pairs(
            ordered_floats, ordered_floats).filter(lambda p: p[0] >= p[1])))),
        space("lr", st.sampled_from(INT_DOMAINS).flatmap(lambda d: domain(d, pairs(
            ordered_ints, ordered_ints).filter(lambda p: p[0] >= p[1])))),
        space("lr", st.sampled_from(FLOAT_DOMAINS).flatmap(lambda d: domain(d, st.one_of(
            pairs(non_finite, st.floats(1, 10)), pairs(st.floats(1e-3, 1), non_finite))))),
        space("lr", st.sampled_from(FLOAT_DOMAINS + INT_DOMAINS).flatmap(lambda d: domain(d, st.one_of(
            pairs(not_number, st.integers(1, 9)), pairs(st.integers(1, 9), not_number))))),
        space("lr", st.sampled_from(INT_DOMAINS).flatmap(lambda d: domain(d, pairs(
            floats_not_int, st.integers(1, 9))))),
        space("lr", st.sampled_from(FLOAT_DOMAINS + INT_DOMAINS).flatmap(lambda d: domain(d, st.one_of(
            st.lists(st.integers(1, 9), max_size=1), st.lists(st.integers(1, 9), min_size=3, max_size=4),
            st.integers(), text, st.dictionaries(text, st.integers(), max_size=2))))),
        space("lr", st.sampled_from(("loguniform", "lograndint")).flatmap(lambda d: domain(d, pairs(
            st.integers(-10, 0), st.integers(1, 10))))),
        space("lr", st.sampled_from(("choice", "grid")).flatmap(lambda d: domain(d, st.one_of(
            st.just([]), st.just(()), st.integers(), text,
            st.dictionaries(text, st.integers(), max_size=2))))),
        space("lr", st.one_of(typo(("uniform", "loguniform", "randint", "lograndint", "choice")),
                              st.sampled_from(["quniform", "qloguniform", "qrandint", "qlograndint", "randn",
                                               "qrandn", "normal", "lognormal", "categorical", "int",
                                               "float", "sample_from", "log_uniform"]))
              .map(lambda name: {name: [1, 2]})),
        space("lr", st.sampled_from(FLOAT_DOMAINS).map(lambda d: {d: [0.1, 1.0], "choice": [1, 2]})),
        m("search_space", st.sampled_from(FLOAT_DOMAINS + INT_DOMAINS + ("choice", "grid")).map(
            lambda d: {d: [1, 2]}), names="search_space"),
        space("lr", st.sampled_from(FLOAT_DOMAINS).map(lambda d: [{d: [0.1, 1.0]}])),
        space("lr", st.sampled_from(FLOAT_DOMAINS).map(lambda d: {d: {"low": 0.1, "high": 1.0}})),
        space("head.width", st.sampled_from(INT_DOMAINS).map(lambda d: {d: [9, 2]}),
              names="search_space.head.width"),
    ],
    "objectives": [
        m("metric", st.lists(st.sampled_from(["val_accuracy", "val_loss", "train_loss"]), min_size=2,
                             max_size=3, unique=True)),
        m("metric", st.sampled_from(["val_accuracy", "val_loss"]).map(lambda x: [x, x])),
        m("metric", st.sampled_from(["val_accuracy", "val_loss"]).map(lambda x: [x])),
        m("mode", st.one_of(st.lists(st.sampled_from(["min", "max"]), min_size=1, max_size=4).filter(
            lambda x: len(x) != 2), st.sampled_from(["min", "max"]), st.lists(text, min_size=2, max_size=2)),
          "two-objectives"),
        m("mode", st.lists(st.sampled_from(["min", "max"]), min_size=1, max_size=3)),
        m("metric", text.map(lambda x: [x, "val_loss"]), "searcher=evolution"),
    ],
    "resources and DeepSpeed": [
        m("resources.num_workers", st.just(0), "deepspeed"),
        m("resources.deepspeed_config", st.just({"fp16": {"enabled": True}}), "deepspeed", names="fp16"),
        m("resources.deepspeed_config", st.just({"zero_optimization": {"stage": 3}}), "deepspeed",
          names="stage"),
        m("resources.deepspeed_config", typo(("zero_optimization", "gradient_clipping")).map(
            lambda k: {k: {}}), "deepspeed", names="deepspeed_config"),
        m("resources.deepspeed_config", st.sampled_from(
            ["train_batch_size", "train_micro_batch_size_per_gpu"]).map(lambda k: {k: 8}), "deepspeed",
          names="deepspeed_config"),
    ],
}

MUTATIONS = [pytest.param(family, mutation, id=f"{family}/{mutation.base}/{mutation.path or '<key>'}/{i}")
             for family, mutations in FAMILIES.items() for i, mutation in enumerate(mutations)]


@pytest.fixture(scope="module")
def store() -> Any:
    with tempfile.TemporaryDirectory(prefix="es-bad-input-") as folder:
        yield str(Path(folder) / "store")


def raised_by_us(error: BaseException) -> str:
    """The file of the frame that raised ``error`` (it must be ours)."""
    frames = traceback.extract_tb(error.__traceback__)
    return frames[-1].filename if frames else "?"


def check_rejected(spec: Mapping[str, Any], names: str) -> None:
    from efficient_search.api import plan_run

    try:
        plan_run(spec)
    except (ValueError, TypeError) as error:
        where = Path(raised_by_us(error)).resolve()
        assert any(where.is_relative_to(folder) for folder in OURS), (
            f"{type(error).__name__} raised from {where}, not from our validation:\n"
            + "".join(traceback.format_exception(error))[-3000:])
        assert str(names) in str(error), f"the error does not name {names!r}: {error}"
        return
    except Exception as error:  # noqa: BLE001 (any other error is the failure this test finds)
        pytest.fail(f"{type(error).__name__} instead of a ValueError/TypeError naming {names!r}:\n"
                    + "".join(traceback.format_exception(error))[-3000:])
    pytest.fail(f"accepted: {dict(spec)!r}")


@pytest.mark.parametrize("base", list(BASES))
def test_every_base_spec_is_valid(base: str, store: str) -> None:
    from efficient_search.api import plan_run

    plan_run({**BASES[base], "store": store})


@pytest.mark.parametrize(("family", "mutation"), MUTATIONS)
@settings(max_examples=20, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_bad_input_is_rejected_naming_the_field(family: str, mutation: Mutation, store: str,
                                                data: st.DataObject) -> None:
    value = data.draw(mutation.values, label=mutation.path or "key")
    spec, names = mutation.spec(value, store)
    check_rejected(spec, names)


@pytest.mark.parametrize(("fields", "names"), [
    ({"scheduler": "asha", "scheduler_options": {"max_t": 0}}, "`scheduler_options.max_t`"),
    ({"search_space": {"lr": {"loguniform": [1e-3, math.inf]}}}, "`search_space.lr`"),
])
def test_run_itself_rejects_bad_input_before_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 fields: dict[str, Any], names: str) -> None:
    import efficient_search as es
    from efficient_search import api, trial

    def reached(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("run went past validation")

    monkeypatch.setattr(api, "start_ray", reached)
    monkeypatch.setattr(trial, "make_trainable", reached)
    store = tmp_path / "store"
    with pytest.raises((ValueError, TypeError), match=names):
        es.run({**BASE, "store": str(store), **fields})
    assert not store.exists(), "validation must happen before anything is written"


def counts() -> dict[str, int]:
    """Mutations per family, as README lists them."""
    return {family: len(mutations) for family, mutations in FAMILIES.items()}


if __name__ == "__main__":
    for family, count in counts().items():
        print(f"{family}: {count}")
    print(f"total: {sum(counts().values())}")
