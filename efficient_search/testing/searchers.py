"""The searcher contract suite (DESIGN.md): subclass it once per searcher.

::

    from efficient_search.testing.searchers import SearcherContract

    class TestMine(SearcherContract):
        @staticmethod
        def make(space, metric, mode, seed, points_to_evaluate=None) -> Searcher:
            return MySearcher(space, metric=metric, mode=mode, seed=seed,
                              points_to_evaluate=points_to_evaluate)

``make`` gets ``space=None`` when the space should come from ``set_search_properties``, and
``metric``/``mode`` as the class attributes say (a list each for several objectives).
``points_to_evaluate`` are nested configs shaped like the space. The real Tune checks need a
``ray_session`` fixture (a local Ray), as ``tests/conftest.py`` provides.

Checks, with the capability (class attribute) that switches each off:

* ``suggest`` without a space or without metric/mode raises Ray's own ``RuntimeError``
  (``needs_metric_and_space``); ``set_search_properties`` takes a space once and returns False
  when one is set (``refuses_second_space``).
* ``points_to_evaluate`` are suggested first and exactly; every suggestion lies in the space:
  ints are ints, floats within bounds, choices from the list, nested dicts and constants kept
  (as Tune sees the config; ``returns_full_configs``: the suggestion itself holds constants).
* Same seed, same suggestions, in this process and in a fresh one; another seed differs.
* NaN/+-inf results, ``error=True``, a missing metric or no result: no crash, never the best
  (``learns_from_results``; ``rejects_infinite`` for the infinities).
* Late results (twice for one trial, ``ignores_unknown_trials``: for unknown ids) change nothing.
* ``save`` -> a fresh instance ``restore``: pending trials complete there and the search goes on
  as it would have (``restores_state``); ``get_state`` is a JSON-able dict with a ``version``,
  and ``save`` writes JSON (``state_is_plain_data``).
* Works under Ray's ``ConcurrencyLimiter`` (``works_under_concurrency_limiter``) and
  ``Repeater`` (``works_under_repeater``).
* A real Tune run split by ``Tuner.restore`` suggests what an uninterrupted run does
  (``survives_tuner_restore``).

What the references in ``tests/test_searcher_contract.py`` skip, and why:

* Our ``OptunaSearcher`` (TPE, NSGA-II, random): ``returns_full_configs`` only (it returns the
  sampled values; Tune merges the constants back).
* Ray's ``OptunaSearch`` (TPE; with Optuna 5.1's NSGA-II its ``save`` fails, the sampler holds a
  thread lock): ``ignores_unknown_trials`` (``on_trial_complete`` for an unknown id
  raises ``KeyError``), ``rejects_infinite`` (Optuna accepts +-inf as values, so +inf can be
  the best), ``state_is_plain_data`` (it pickles its ``__dict__``; ``get_state`` is not
  implemented), ``returns_full_configs`` (it returns only the sampled values; Tune merges the
  constants back).
* Random search (Ray's ``BasicVariantGenerator``, a ``SearchAlgorithm``, seen through
  :class:`RandomSearchAdapter`): only points first, in-space configs and seeded determinism
  apply. It needs no metric, learns nothing from results, takes ``max_concurrent`` itself
  instead of a ``ConcurrencyLimiter``, is no ``Searcher`` for ``Repeater``, and saves itself
  with ``save_to_dir`` (pickle), not ``save``/``get_state``.
* Several objectives (``metric`` a list): ``works_under_repeater`` is off, because Ray's
  ``Repeater`` averages a single metric (``result[searcher.metric]``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune import Callback
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Repeater, Searcher
from ray.tune.search.sample import Categorical, Domain, Float, Integer, Quantized
from ray.tune.search.variant_generator import parse_spec_vars
from ray.tune.utils.util import merge_dicts

from efficient_search.validate import is_int

if TYPE_CHECKING:
    import pytest

SCORE = "score"
SIZE = "size"

SPACE: dict[str, Any] = {
    "a": tune.uniform(0, 1),
    "b": tune.loguniform(1e-4, 1e-1),
    "c": tune.randint(1, 9),
    "d": tune.choice([16, 32, 64]),
    "e": tune.choice(["x", "y"]),
    "nested": {"f": tune.qrandint(8, 64, 8)},
    "const": 7,
}

POINTS: list[dict[str, Any]] = [
    {"a": 0.25, "b": 0.001, "c": 3, "d": 32, "e": "y", "nested": {"f": 24}},
    {"a": 0.75, "b": 0.01, "c": 6, "d": 16, "e": "x", "nested": {"f": 56}},
]

TUNE_SAMPLES = 8
TUNE_INTERRUPT_AFTER = 3


def objective(config: Mapping[str, Any]) -> dict[str, float]:
    """A deterministic score (best near a=0.3, b=3e-3, c=7, d=64, e=y, f=40) and a size."""
    score = (-(config["a"] - 0.3) ** 2 - (math.log10(config["b"]) + 2.5) ** 2 / 4
             - abs(config["c"] - 7) / 8 + config["d"] / 64 + (0.1 if config["e"] == "y" else 0.0)
             - abs(config["nested"]["f"] - 40) / 64)
    size = config["c"] * config["d"] + config["nested"]["f"]
    return {SCORE: float(score), SIZE: float(size)}


def tune_view(config: Mapping[str, Any], space: Mapping[str, Any] = SPACE) -> dict[str, Any]:
    """The config a Tune trial gets: the suggestion merged into the param space."""
    return merge_dicts(copy.deepcopy(dict(space)), copy.deepcopy(dict(config)))


def _get(config: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        config = config[key]
    return config


def _leaf_paths(config: Any, prefix: tuple[Any, ...] = ()) -> set[tuple[Any, ...]]:
    if isinstance(config, Mapping):
        return set().union(*(_leaf_paths(v, (*prefix, k)) for k, v in config.items()))
    return {prefix}


def _domain_holds(domain: Domain, value: Any) -> bool:
    sampler = domain.get_sampler()
    q = sampler.q if isinstance(sampler, Quantized) else None
    if isinstance(domain, Categorical):
        return any(type(c) is type(value) and c == value for c in domain.categories)
    if isinstance(domain, Float):
        if not isinstance(value, float):
            return False
        on_grid = q is None or abs(value / q - round(value / q)) < 1e-6
        return bool(domain.lower <= value <= domain.upper and on_grid)
    if isinstance(domain, Integer):
        if not is_int(value):
            return False
        if q is None or q == 1:
            return bool(domain.lower <= value < domain.upper)
        return bool(domain.lower <= value <= domain.upper and value % q == 0)
    raise TypeError(f"no in-space check for {type(domain).__name__}")


def assert_in_space(config: Mapping[str, Any], space: Mapping[str, Any] = SPACE) -> None:
    """Every value valid for its domain, of the right type; constants and nesting kept."""
    view = tune_view(config, space)
    constants, domains, _ = parse_spec_vars(dict(space))
    assert _leaf_paths(view) == {p for p, _ in constants} | {p for p, _ in domains}, view
    for path, constant in constants:
        assert _get(view, path) == constant, (path, view)
    for path, domain in domains:
        value = _get(view, path)
        assert _domain_holds(domain, value), f"{'/'.join(map(str, path))}={value!r} is not in " \
                                             f"{domain.domain_str} ({type(domain).__name__})"


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types (1 and 1.0 differ), compared through JSON."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def contract_trainable(config: dict[str, Any]) -> None:
    """Reports the deterministic objective and when it ran (to order trials afterwards)."""
    tune.report({**objective(config), "started": time.time()})


class InterruptAfter(Callback):
    """Raises out of ``Tuner.fit`` once ``completed`` trials finished and another one runs.

    Only while ``marker`` exists (it is removed on raising), so that the copy of this callback
    that ``Tuner.restore`` unpickles lets the restored run go on.
    """

    def __init__(self, marker: str, completed: int):
        self.marker = marker
        self.completed = completed
        self.done = 0

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.done += 1

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        # Tune saved its state (trials + searcher) just before this: a trial is pending there.
        running = any(t.status == "RUNNING" for t in trials)
        if self.done >= self.completed and running and os.path.exists(self.marker):
            os.remove(self.marker)
            raise RuntimeError("interrupted on purpose")


class RandomSearchAdapter(Searcher):
    """Ray's random search (``BasicVariantGenerator``) behind the ``Searcher`` calls the suite makes."""

    def __init__(self, space: Mapping[str, Any] | None = None, *,
                 points_to_evaluate: list[dict[str, Any]] | None = None, seed: int | None = None):
        super().__init__()
        self._space = space
        self._points = copy.deepcopy(points_to_evaluate or [])
        self._seed = seed
        self._generator: BasicVariantGenerator | None = None

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        if self._space is not None:
            return False
        self._space = config
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._generator is None:
            self._generator = BasicVariantGenerator(points_to_evaluate=copy.deepcopy(self._points),
                                                    random_state=self._seed)
            self._generator.add_configurations({"random": {
                "run": contract_trainable, "config": self._space, "num_samples": 100_000}})
        trial = self._generator.next_trial()
        return None if trial is None else dict(trial.config)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        return None


class SearcherContract:
    """Subclass and define ``make``; switch off what the searcher does not promise."""

    metric: str | list[str] = SCORE
    mode: str | list[str] = "max"

    needs_metric_and_space = True
    refuses_second_space = True
    returns_full_configs = True
    learns_from_results = True
    rejects_infinite = True
    ignores_unknown_trials = True
    restores_state = True
    state_is_plain_data = True
    works_under_concurrency_limiter = True
    works_under_repeater = True
    survives_tuner_restore = True

    @staticmethod
    def make(space: Mapping[str, Any] | None, metric: str | list[str] | None,
             mode: str | list[str] | None, seed: int,
             points_to_evaluate: list[dict[str, Any]] | None = None) -> Searcher:
        raise NotImplementedError

    @staticmethod
    def best_configs(searcher: Searcher) -> list[dict[str, Any]] | None:
        """The configs the searcher counts as best (its Pareto front); None if it cannot say."""
        return None

    # -- helpers ----------------------------------------------------------------------------

    def searcher(self, seed: int = 0, space: Mapping[str, Any] | None = SPACE,
                 points: list[dict[str, Any]] | None = None) -> Searcher:
        return self.make(space, self.metric, self.mode, seed, points)

    def drive(self, seed: int, n: int = 12, lag: int = 2, searcher: Searcher | None = None,
              late: Callable[[Searcher, str], None] | None = None,
              prefix: str = "t") -> list[dict[str, Any]]:
        """Suggest ``n`` configs, completing each ``lag`` suggestions later; the configs."""
        searcher = searcher or self.searcher(seed)
        configs: list[dict[str, Any]] = []
        pending: deque[tuple[str, dict[str, Any]]] = deque()
        for i in range(n):
            config = searcher.suggest(f"{prefix}{i}")
            assert config is not None
            configs.append(config)
            pending.append((f"{prefix}{i}", config))
            if len(pending) > lag:
                trial_id, done = pending.popleft()
                searcher.on_trial_complete(trial_id, objective(done))
                if late:
                    late(searcher, trial_id)
        return configs

    def _skip_unless(self, capability: str) -> None:
        if not getattr(self, capability):
            import pytest  # a dev dependency: imported where a contract test runs

            pytest.skip(f"{type(self).__name__} declares {capability} = False")

    # -- metric, mode and space ------------------------------------------------------------

    def test_suggest_without_a_space_raises_rays_error(self) -> None:
        import pytest

        self._skip_unless("needs_metric_and_space")
        searcher = self.searcher(space=None)
        with pytest.raises(RuntimeError, match="no search space has been defined"):
            searcher.suggest("t0")

    def test_suggest_without_metric_or_mode_raises_rays_error(self) -> None:
        import pytest

        self._skip_unless("needs_metric_and_space")
        searcher = self.make(SPACE, None, None, 0)
        with pytest.raises(RuntimeError, match="parameters have not been set"):
            searcher.suggest("t0")

    def test_set_search_properties_takes_a_space_only_once(self) -> None:
        self._skip_unless("refuses_second_space")
        other = {"z": tune.uniform(5, 6)}
        searcher = self.searcher(space=None)
        assert searcher.set_search_properties(None, None, copy.deepcopy(SPACE)) is True
        assert_in_space(searcher.suggest("t0"))  # type: ignore[arg-type]
        assert searcher.set_search_properties(None, None, other) is False
        assert_in_space(searcher.suggest("t1"))  # type: ignore[arg-type]
        assert self.searcher().set_search_properties(None, None, other) is False

    # -- what is suggested -----------------------------------------------------------------

    def test_points_to_evaluate_come_first_and_exactly(self) -> None:
        searcher = self.searcher(seed=1, points=copy.deepcopy(POINTS))
        for i, point in enumerate(POINTS):
            config = searcher.suggest(f"t{i}")
            assert config is not None
            assert _same(tune_view(config), tune_view(point)), (config, point)
        assert_in_space(searcher.suggest("after"))  # type: ignore[arg-type]

    def test_suggestions_lie_in_the_space(self) -> None:
        for config in self.drive(seed=2, n=30, lag=3):
            assert_in_space(config)
            if self.returns_full_configs:
                assert _same(config, tune_view(config)), config

    def test_same_seed_gives_the_same_suggestions(self) -> None:
        first, again, other = self.drive(seed=7), self.drive(seed=7), self.drive(seed=8)
        assert _same(first, again)
        assert not _same(first, other)

    def test_same_seed_gives_the_same_suggestions_in_a_fresh_process(self) -> None:
        module = sys.modules[type(self).__module__]
        folder = os.path.dirname(os.path.abspath(str(module.__file__)))
        code = (f"import json, sys; sys.path.insert(0, {folder!r}); import {module.__name__} as m; "
                f"print('DRIVE:' + json.dumps(m.{type(self).__qualname__}().drive(seed=7)))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("DRIVE:")]
        assert lines, done.stderr[-3000:]
        assert json.loads(lines[-1][len("DRIVE:"):]) == self.drive(seed=7)

    # -- results ---------------------------------------------------------------------------

    def _metrics(self) -> list[str]:
        return list(self.metric) if isinstance(self.metric, list) else [self.metric]

    def test_failed_results_are_handled_and_never_best(self) -> None:
        self._skip_unless("learns_from_results")
        nan, inf = math.nan, math.inf
        failures: list[tuple[dict[str, Any] | None, bool]] = [
            ({m: nan for m in self._metrics()}, False),
            ({"unrelated": 1.0}, False),
            (None, True),
            (None, False),
        ]
        if self.rejects_infinite:
            failures += [({m: inf for m in self._metrics()}, False),
                         ({m: -inf for m in self._metrics()}, False)]
        searcher = self.searcher(seed=3)
        failed: list[dict[str, Any]] = []
        for i, (result, error) in enumerate(failures):
            failed.append(searcher.suggest(f"bad{i}"))  # type: ignore[arg-type]
            searcher.on_trial_complete(f"bad{i}", result, error=error)
        for config in self.drive(seed=3, n=12, searcher=searcher, prefix="good"):
            assert_in_space(config)
        best = self.best_configs(searcher)
        if best is not None:
            assert best, "valid results were reported, so something is best"
            for config in best:
                assert not any(_same(tune_view(config), tune_view(f)) for f in failed), config

    def test_late_results_are_ignored(self) -> None:
        self._skip_unless("learns_from_results")

        def late(searcher: Searcher, trial_id: str) -> None:
            great = {m: 1e6 if self.mode_of(m) == "max" else -1e6 for m in self._metrics()}
            searcher.on_trial_complete(trial_id, great)  # a second completion
            if self.ignores_unknown_trials:
                searcher.on_trial_complete(f"unknown-{trial_id}", great)

        assert _same(self.drive(seed=5, n=14), self.drive(seed=5, n=14, late=late))

    def mode_of(self, metric: str) -> str:
        if isinstance(self.metric, list):
            return dict(zip(self.metric, self.mode, strict=True))[metric]
        return str(self.mode)

    # -- state -----------------------------------------------------------------------------

    def _half_run(self, seed: int) -> tuple[Searcher, list[tuple[str, dict[str, Any]]]]:
        """Six suggestions, three completed: (searcher, the three pending trials)."""
        searcher = self.searcher(seed)
        suggested = [(f"t{i}", searcher.suggest(f"t{i}")) for i in range(6)]
        for trial_id, config in suggested[:3]:
            searcher.on_trial_complete(trial_id, objective(config))  # type: ignore[arg-type]
        return searcher, suggested[3:]  # type: ignore[return-value]

    def _finish(self, searcher: Searcher, pending: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        for trial_id, config in pending:
            searcher.on_trial_complete(trial_id, objective(config))
        return self.drive(seed=0, n=6, searcher=searcher, prefix="next")

    def test_save_then_restore_keeps_pending_trials(self, tmp_path: Path) -> None:
        self._skip_unless("restores_state")
        searcher, pending = self._half_run(seed=11)
        path = str(tmp_path / "searcher-state")
        searcher.save(path)
        fresh = self.searcher(seed=11)
        fresh.restore(path)
        assert _same(self._finish(fresh, pending), self._finish(searcher, pending))

    def test_state_is_plain_json_data(self, tmp_path: Path) -> None:
        self._skip_unless("state_is_plain_data")
        searcher, pending = self._half_run(seed=12)
        state = searcher.get_state()
        assert isinstance(state, dict) and "version" in state
        text = json.dumps(state, allow_nan=False)
        fresh = self.searcher(seed=12)
        fresh.set_state(json.loads(text))
        searcher.save(str(tmp_path / "state"))
        with open(tmp_path / "state") as file:
            assert json.load(file) == json.loads(text)
        assert _same(self._finish(fresh, pending), self._finish(searcher, pending))

    # -- Ray's wrappers --------------------------------------------------------------------

    def test_works_under_concurrency_limiter(self) -> None:
        self._skip_unless("works_under_concurrency_limiter")
        limiter = ConcurrencyLimiter(self.searcher(seed=4), max_concurrent=2)
        first, second = limiter.suggest("t0"), limiter.suggest("t1")
        assert first is not None and second is not None
        assert limiter.suggest("t2") is None
        limiter.on_trial_complete("t0", objective(first))
        third = limiter.suggest("t2")
        assert third is not None
        limiter.on_trial_complete("t1", objective(second))
        limiter.on_trial_complete("t2", objective(third))
        for config in [third, *self.drive(seed=4, n=8, lag=1, searcher=limiter, prefix="u")]:
            assert_in_space(config)

    def test_works_under_repeater(self) -> None:
        self._skip_unless("works_under_repeater")
        repeater = Repeater(self.searcher(seed=6), repeat=2)
        for group in range(4):
            configs = [repeater.suggest(f"t{group}-{i}") or {} for i in range(2)]
            assert [c.pop("__trial_index__") for c in configs] == [0, 1]
            assert _same(configs[0], configs[1])
            assert_in_space(configs[0])
            for i, config in enumerate(configs):
                repeater.on_trial_complete(f"t{group}-{i}", objective(config))

    # -- a real Tune run -------------------------------------------------------------------

    def _tune(self, path: Path, callbacks: list[Callback]) -> Any:
        searcher = ConcurrencyLimiter(self.searcher(seed=13, space=None), max_concurrent=1)
        tuner = tune.Tuner(
            contract_trainable,
            param_space=copy.deepcopy(SPACE),
            # One actor for all trials: each new trial process would import this package again.
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=TUNE_SAMPLES,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name="contract", storage_path=str(path), callbacks=callbacks,
                                      verbose=0),
        )
        return tuner.fit()

    @staticmethod
    def _in_order(results: Any) -> list[dict[str, Any]]:
        assert results.num_errors == 0 and len(results) == TUNE_SAMPLES
        ordered = sorted(results, key=lambda r: r.metrics["started"])
        return [r.config for r in ordered]

    def test_tuner_restore_suggests_what_an_uninterrupted_run_would(
            self, ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import pytest

        self._skip_unless("survives_tuner_restore")
        monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")  # save Tune's state at every step
        straight = self._in_order(self._tune(tmp_path / "straight", []))
        marker = tmp_path / "interrupt"
        marker.touch()
        with pytest.raises(RuntimeError, match="interrupted on purpose"):
            self._tune(tmp_path / "split", [InterruptAfter(str(marker), TUNE_INTERRUPT_AFTER)])
        restored = tune.Tuner.restore(str(tmp_path / "split" / "contract"), contract_trainable,
                                      resume_unfinished=True).fit()
        split = self._in_order(restored)
        for config in split:
            assert_in_space(config)
        assert _same(split, straight)
