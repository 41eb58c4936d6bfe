"""Every private Ray name efficient-search relies on, behind one door.

Ray's schedulers keep their state in private attributes, its restore path in private files, and
a few useful switches in ``ray._private``. Each use goes through a small named function here, and
``tests/test_ray_compat.py`` checks against the installed Ray that every name still exists and
means what we assume. Ray versions outside :data:`RAY_SUPPORTED` are refused at import
(:func:`check_ray_version`; ``EFFICIENT_SEARCH_SKIP_RAY_CHECK=1`` skips it): a newer Ray may have
moved any of them.

Importing this module does not import Ray (``import efficient_search`` stays cheap).

Example::

    for bracket in asha_brackets(scheduler):
        print([milestone for milestone, _ in asha_rungs(bracket)])
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from ray.actor import ActorHandle
    from ray.train._internal.storage import StorageContext
    from ray.tune import Tuner
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import (
        AsyncHyperBandScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
        TrialScheduler,
    )
    from ray.tune.schedulers.async_hyperband import _Bracket as AshaBracket
    from ray.tune.schedulers.hyperband import _Bracket as HyperBandBracket

# -- the supported Ray versions ------------------------------------------------------------------
RAY_MIN = (2, 60)
RAY_BELOW = (2, 61)
RAY_SUPPORTED = f">={RAY_MIN[0]}.{RAY_MIN[1]},<{RAY_BELOW[0]}.{RAY_BELOW[1]}"
SKIP_CHECK_ENV = "EFFICIENT_SEARCH_SKIP_RAY_CHECK"


def check_ray_version(version: str | None = None) -> None:
    """Refuse a Ray outside :data:`RAY_SUPPORTED` (``version`` defaults to the installed one's),
    unless ``EFFICIENT_SEARCH_SKIP_RAY_CHECK=1``."""
    if os.environ.get(SKIP_CHECK_ENV) == "1":
        return
    if version is None:
        try:
            version = importlib.metadata.version("ray")
        except importlib.metadata.PackageNotFoundError:
            raise ImportError(f"efficient-search needs ray[default,tune,train]{RAY_SUPPORTED}, but Ray "
                              "is not installed. Fix: pip install the efficient-search package "
                              "(or `pip install 'ray[default,tune,train]" + RAY_SUPPORTED + "'`).") from None
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None or not RAY_MIN <= (int(match[1]), int(match[2])) < RAY_BELOW:
        raise ImportError(
            f"efficient-search supports Ray {RAY_SUPPORTED}, but got Ray {version}: it relies on "
            "Ray internals checked only in that range. Fix: pip install "
            f"'ray[default,tune,train]{RAY_SUPPORTED}', or set {SKIP_CHECK_ENV}=1 to try this Ray "
            "anyway (then run tests/test_ray_compat.py)."
        )


# -- scheduler attributes Ray's AsyncHyperBand, HyperBand and MedianStoppingRule share ------------
def scheduler_mode(scheduler: TrialScheduler) -> str | None:
    """The scheduler's ``mode`` ("min"/"max"; Ray has a public ``metric`` but no ``mode``)."""
    return scheduler._mode  # type: ignore[attr-defined]


def scheduler_time_attr(scheduler: TrialScheduler) -> str:
    """The result key the scheduler reads progress from (``time_attr``)."""
    return scheduler._time_attr  # type: ignore[attr-defined]


def has_objective(scheduler: AsyncHyperBandScheduler | HyperBandScheduler) -> bool:
    """Whether metric and mode are set (otherwise Ray's ``on_trial_add`` raises its error)."""
    return bool(scheduler._metric and scheduler._metric_op)


def stopped_count(scheduler: AsyncHyperBandScheduler | HyperBandScheduler) -> int:
    """How many trials the scheduler has stopped."""
    return int(scheduler._num_stopped)


def set_stopped_count(scheduler: AsyncHyperBandScheduler | HyperBandScheduler, count: int) -> None:
    scheduler._num_stopped = count


def trial_brackets(scheduler: AsyncHyperBandScheduler | HyperBandScheduler) -> dict[Any, Any]:
    """Ray's own (mutable) map of each trial's bracket: ``{trial_id: bracket}`` for
    AsyncHyperBand, ``{Trial: (bracket, band index)}`` for HyperBand."""
    return scheduler._trial_info  # type: ignore[no-any-return]


# -- AsyncHyperBandScheduler (ASHA) ---------------------------------------------------------------
def asha_brackets(scheduler: AsyncHyperBandScheduler) -> list[AshaBracket]:
    """The scheduler's brackets, in Ray's order."""
    return scheduler._brackets  # type: ignore[no-any-return]


def asha_rungs(bracket: AshaBracket) -> list[tuple[float, dict[str, float]]]:
    """A bracket's rungs, highest milestone first: ``(milestone, {trial_id: signed score})``
    (the score is the metric times +1 for "max", -1 for "min")."""
    return bracket._rungs  # type: ignore[no-any-return]


def set_asha_rungs(bracket: AshaBracket, rungs: list[tuple[float, dict[str, float]]]) -> None:
    bracket._rungs = rungs


# -- HyperBandScheduler ---------------------------------------------------------------------------
def hyperband_bands(scheduler: HyperBandScheduler) -> list[list[HyperBandBracket | None]]:
    """Bands of brackets (a band's ``s``-th bracket has ``s`` halvings; None where Ray skipped
    a too-small one)."""
    return scheduler._hyperbands  # type: ignore[no-any-return]


def set_hyperband_bands(scheduler: HyperBandScheduler,
                        bands: list[list[HyperBandBracket | None]]) -> None:
    scheduler._hyperbands = bands


def hyperband_position(scheduler: HyperBandScheduler) -> tuple[int, HyperBandBracket | None]:
    """The band being filled and the bracket new trials join (None before the first)."""
    state: dict[str, Any] = scheduler._state
    return int(state["band_idx"]), state["bracket"]


def set_hyperband_position(scheduler: HyperBandScheduler, band: int,
                           bracket: HyperBandBracket | None) -> None:
    state: dict[str, Any] = {"band_idx": band, "bracket": bracket}
    scheduler._state = state


def new_hyperband_bracket(scheduler: HyperBandScheduler, halvings: int) -> HyperBandBracket:
    """A fresh bracket with ``halvings`` halvings, as the scheduler makes them."""
    return scheduler._create_bracket(halvings)


def process_hyperband_bracket(scheduler: HyperBandScheduler, tune_controller: Any,
                              bracket: HyperBandBracket) -> str:
    """Ray's halving step for ``bracket`` (what HyperBand does when its last trial reaches the
    milestone); returns the decision for the trial that triggered it."""
    return scheduler._process_bracket(tune_controller, bracket)  # type: ignore[no-any-return]


def bracket_live_trials(bracket: HyperBandBracket) -> dict[Any, dict[str, Any] | None]:
    """Ray's (mutable) map of the bracket's live trials to their last result (None before one)."""
    return bracket._live_trials  # type: ignore[no-any-return]


def set_bracket_live_trials(bracket: HyperBandBracket, live: dict[Any, dict[str, Any] | None]) -> None:
    bracket._live_trials = live


def bracket_all_trials(bracket: HyperBandBracket) -> list[Any]:
    """Every trial ever added to the bracket, in order."""
    return bracket._all_trials  # type: ignore[no-any-return]


def set_bracket_all_trials(bracket: HyperBandBracket, trials: list[Any]) -> None:
    bracket._all_trials = trials


def bracket_milestone(bracket: HyperBandBracket) -> float:
    """The progress every live trial must reach before the bracket is halved."""
    return bracket._cumul_r  # type: ignore[no-any-return]


def bracket_result_time(bracket: HyperBandBracket, result: dict[str, Any] | None) -> float:
    """A result's progress as the bracket counts it (0 for no result)."""
    return bracket._get_result_time(result)  # type: ignore[arg-type,no-any-return]


PROGRESS_FIELDS = ("n", "r", "cumul_r", "halves", "completed_progress")


def bracket_progress(bracket: HyperBandBracket) -> dict[str, Any]:
    """Size ``n``, rung length ``r``, milestone ``cumul_r``, halvings left ``halves`` and the
    work done ``completed_progress``: what halving changes."""
    return {field: getattr(bracket, f"_{field}") for field in PROGRESS_FIELDS}


def set_bracket_progress(bracket: HyperBandBracket, progress: dict[str, Any]) -> None:
    for field in PROGRESS_FIELDS:
        setattr(bracket, f"_{field}", progress[field])


# -- MedianStoppingRule ---------------------------------------------------------------------------
def median_results(scheduler: MedianStoppingRule) -> dict[Trial, list[dict[str, Any]]]:
    """Ray's (mutable) map of each trial to the results it reported."""
    return scheduler._results  # type: ignore[no-any-return]


def median_stopped(scheduler: MedianStoppingRule) -> set[Trial]:
    """Ray's (mutable) set of the trials the rule stopped."""
    return scheduler._stopped_trials  # type: ignore[no-any-return]


def median_last_pause(scheduler: MedianStoppingRule) -> dict[Trial, float]:
    """Ray's (mutable) map of each trial to the time it last yielded (default ``-inf``)."""
    return scheduler._last_pause  # type: ignore[no-any-return]


# -- Tune's experiment folder and Tuner -----------------------------------------------------------
# TuneController.save_to_dir writes experiment_state-<session>.json holding
# {"trial_data": ..., "runner_data": TuneController.__getstate__(), "stats": ...}; restore reads
# the newest by name. runner_data keeps the controller's pending decisions per trial id.
EXPERIMENT_STATE_GLOB = "experiment_state-*.json"
RUNNER_DATA_KEY = "runner_data"
PENDING_DECISION_KEYS = ("_cached_trial_decisions", "_queued_trial_decisions")
PAUSE_DECISION = "PAUSE"


# The search algorithm's own snapshot beside it, cloudpickled by ray.tune.utils.util._atomic_save
# and restored newest-by-name: SearchGenerator (wrapping every Searcher) keeps {"counter",
# "total_samples", "finished", "experiment", ...}; BasicVariantGenerator (random/grid) its
# __dict__, whose _iterators (one per experiment) count num_samples / num_samples_left.
SEARCH_GENERATOR_STATE_GLOB = "search_gen_state-*.json"
BASIC_VARIANT_STATE_GLOB = "basic-variant-state-*.json"


def grow_saved_search(experiment_path: str | os.PathLike[str], num_samples: int) -> int | None:
    """Let the search algorithm saved under a local experiment folder create trials up to
    ``num_samples`` samples in all; returns how many samples that adds (0: it already had as
    many), or None when the folder holds no search state (remote storage, nothing saved).

    The state is read and written with Ray's own loader and saver: the file ``Tuner.restore``
    unpickles anyway, nothing else."""
    import glob

    from ray.tune.utils.util import _atomic_save, _load_newest_checkpoint

    folder = os.fspath(experiment_path)
    for pattern in (SEARCH_GENERATOR_STATE_GLOB, BASIC_VARIANT_STATE_GLOB):
        files = sorted(glob.glob(os.path.join(folder, pattern)))
        if not files:
            continue
        state = _load_newest_checkpoint(folder, pattern)  # the newest by name, as restore picks it
        if not isinstance(state, dict):
            return None
        if pattern == SEARCH_GENERATOR_STATE_GLOB:
            added = num_samples - int(state["total_samples"])
            if added > 0:
                state["total_samples"], state["finished"] = num_samples, False
                state["experiment"].spec["num_samples"] = num_samples
        else:
            iterator = state["_iterators"][-1]
            added = num_samples - int(iterator.num_samples)
            if added > 0:
                per_sample = state["_total_samples"] // max(int(iterator.num_samples), 1)  # grid points
                iterator.num_samples = num_samples
                iterator.num_samples_left += added
                state["_total_samples"] += added * per_sample
                state["_finished"] = False
        if added > 0:
            name = os.path.basename(files[-1])
            _atomic_save(state, folder, file_name=name, tmp_file_name=f"tmp-{name}")
        return max(added, 0)
    return None


def restored_scheduler(tuner: Tuner) -> TrialScheduler | None:
    """The scheduler a ``Tuner.restore``-d tuner will run with (the one Tune pickled when the
    experiment started), or None when it cannot be seen (Ray Client)."""
    local = getattr(tuner, "_local_tuner", None)
    config = getattr(local, "_tune_config", None)
    return getattr(config, "scheduler", None)


def restored_callbacks(tuner: Tuner) -> list[Any]:
    """The callbacks a ``Tuner.restore``-d tuner will run with (those Tune pickled when the
    experiment started); empty when they cannot be seen (Ray Client)."""
    local = getattr(tuner, "_local_tuner", None)
    config = getattr(local, "_run_config", None)
    return list(getattr(config, "callbacks", None) or [])


# Ray's driver prints the lines its workers write through a dispatcher of named handlers;
# ray.init(log_to_driver=True) installs the console one under this name.
WORKER_LOG_HANDLER = "ray_print_logs"


@contextlib.contextmanager
def worker_lines_to(handler: Any) -> Iterator[None]:
    """Inside, the lines Ray forwards from its workers (dicts with ``lines``, ``is_err``, ``pid``,
    ``actor_name``...) go to ``handler`` instead of the console."""
    from ray._private.worker import global_worker_stdstream_dispatcher as dispatcher

    saved = [pair for pair in dispatcher.handlers if pair[0] == WORKER_LOG_HANDLER]
    dispatcher.remove_handler(WORKER_LOG_HANDLER)
    dispatcher.add_handler("efficient_search_worker_lines", handler)
    try:
        yield
    finally:
        dispatcher.remove_handler("efficient_search_worker_lines")
        for name, previous in saved:
            dispatcher.add_handler(name, previous)


def storage_context(*, storage_path: str, experiment_dir_name: str) -> StorageContext:
    """Ray Train's storage description of an experiment folder (what a ``Trial`` needs)."""
    from ray.train._internal.storage import StorageContext

    return StorageContext(storage_path=storage_path, experiment_dir_name=experiment_dir_name)


def trial_dataframe(trial: Trial) -> pd.DataFrame:
    """A trial's reported results as ``ExperimentAnalysis`` reads them (``result.json``, else
    ``progress.csv`` in the trial folder)."""
    from ray.tune import ExperimentAnalysis

    return ExperimentAnalysis._fetch_trial_dataframe(None, trial)  # type: ignore[arg-type]


# -- ray core and the autoscaler ------------------------------------------------------------------
@contextlib.contextmanager
def ray_cluster_mode_off() -> Iterator[None]:
    """Turn Ray's multi-node address look-up off for a while (``ENABLE_RAY_CLUSTER``, what
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` sets at import): the node address is then loopback."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def enable_token_auth_if_token_available() -> bool:
    """Make this process present Ray's auth token when one exists and ``RAY_AUTH_MODE`` is unset
    (the rule ``ray start`` follows); returns whether token auth is on."""
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    return bool(maybe_enable_token_auth_if_token_available(warn_if_disabled=False))


def actor_node_id(actor: ActorHandle) -> str:
    """The id of the node an actor runs on (hex)."""
    import ray

    return str(ray._private.state.actors(actor._actor_id.hex())["Address"]["NodeID"])


def prepare_cluster_config(config: dict[str, Any]) -> dict[str, Any]:
    """A cluster-launcher config merged with Ray's defaults, as ``ray up`` prepares it."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(config)  # type: ignore[no-any-return]


def validate_cluster_config(config: dict[str, Any]) -> None:
    """Check a config against Ray's cluster-config JSON schema (``jsonschema.ValidationError``)."""
    from ray.autoscaler._private.util import validate_config

    validate_config(config)


def derive_kuberay_autoscaling_config(ray_cluster: dict[str, Any]) -> dict[str, Any]:
    """The autoscaler config KubeRay's autoscaler derives from a RayCluster resource."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    return _derive_autoscaling_config_from_ray_cr(ray_cluster)  # type: ignore[no-any-return]


# -- Ray's searcher peers -------------------------------------------------------------------------
def optuna_search_study(searcher: Any) -> Any:
    """The ``optuna.Study`` inside Ray's ``OptunaSearch``."""
    return searcher._ot_study
