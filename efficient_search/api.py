"""``efficient_search.run``: one spec in, a Ray Tune search out, every result in the store."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune.search import Searcher

from efficient_search.console import LiveView, quiet_console
from efficient_search.local_ray import start_ray
from efficient_search.ray_compat import (
    grow_saved_search,
    restored_callbacks,
    restored_scheduler,
)
from efficient_search.registry import make_scheduler, make_searcher, owns_space, takes_objectives
from efficient_search.search_spaces import resolve_search_space
from efficient_search.spec import ExperimentSpec, Resources
from efficient_search.store import ParquetStore, ParquetStoreCallback
from efficient_search.store.paths import inside_root
from efficient_search.tasks import Task, get_task
from efficient_search.tune_state import drop_pending_pauses
from efficient_search.warm_start import WarmStart, check_warm_startable, earlier_points

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run leaves: Ray's result grid and the store rows."""

    spec: ExperimentSpec
    store: ParquetStore
    metric: str
    mode: str
    grid: Any
    """Ray Tune's ``ResultGrid``."""

    def results(self) -> pd.DataFrame:
        """Every store row of this experiment."""
        return self.store.results(self.spec.name)

    def trials(self) -> pd.DataFrame:
        """One row per trial, best first."""
        return self.store.trials(self.spec.name, self.metric, self.mode)

    def best(self) -> pd.Series:
        """The best trial's summary row (by the first metric when there are several; see
        :func:`efficient_search.report.pareto_front` for the trade-offs)."""
        return self.trials().iloc[0]


def as_spec(spec: ExperimentSpec | Mapping[str, Any] | str | os.PathLike[str]) -> ExperimentSpec:
    """Accept a spec object, a plain mapping, or the path of a YAML/JSON file."""
    if isinstance(spec, ExperimentSpec):
        return spec
    if isinstance(spec, Mapping):
        return ExperimentSpec.from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return ExperimentSpec.from_file(spec)
    raise TypeError(
        f"`spec` must be an ExperimentSpec, a mapping or a spec file path, but got "
        f"{type(spec).__name__}."
    )


def objective(spec: ExperimentSpec, task: Task) -> tuple[str | list[str], str | list[str]]:
    """The (metric, mode) of a spec, checked against what the task reports.

    Several objectives come back as equally long lists (modes default to the task's).
    """
    metrics = spec.metric if isinstance(spec.metric, list) else [spec.metric or task.default_metric]
    for metric in metrics:
        if metric not in task.metrics:
            raise ValueError(
                f"`metric` {metric!r} is never reported by task {task.name!r}. "
                f"Fix: use one of {', '.join(task.metrics)}."
            )
    if not isinstance(spec.metric, list):
        mode = spec.mode if isinstance(spec.mode, str) else task.metrics[metrics[0]]
        return metrics[0], mode
    modes = spec.mode if isinstance(spec.mode, list) else [spec.mode or task.metrics[m] for m in metrics]
    return metrics, modes


def describe_hardware(resources: Resources) -> str:
    """Where and how trials train, for the store's ``hardware`` column."""
    if resources.num_workers == 0:
        return f"{platform.machine()} in-process cpu={resources.cpus_per_worker:g}"
    return (
        f"{platform.machine()} {resources.strategy} workers={resources.num_workers} "
        f"cpu_per_worker={resources.cpus_per_worker:g} gpu_per_worker={resources.gpus_per_worker:g}"
    )


def _name(obj: Any) -> str:
    return obj if isinstance(obj, str) else type(obj).__name__


@dataclass
class RunPlan:
    """What :func:`run` checks and builds from a spec before Ray starts (see :func:`plan_run`)."""

    spec: ExperimentSpec
    task: Task
    options: dict[str, Any]
    """The task's resolved options."""
    metric: str | list[str]
    mode: str | list[str]
    space: Any
    """The resolved search space: a Ray Tune dict or a space object."""
    searcher: Any
    scheduler: Any
    store: ParquetStore
    storage_path: str
    space_description: Any
    warm_points: list[Any] = dataclasses.field(default_factory=list)
    """Earlier (config, results) the searcher starts from (``warm_start``)."""


def plan_run(spec: ExperimentSpec | Mapping[str, Any] | str | os.PathLike[str],
             **overrides: Any) -> RunPlan:
    """Check a spec and build its searcher, scheduler and store handle without starting Ray.

    :func:`run` calls this first, so every error of a spec (a ``ValueError``/``TypeError`` naming
    the field) surfaces here before Ray starts or anything is written.

    Example::

        plan = plan_run({"name": "digits-demo", "scheduler": "asha"})
        plan.scheduler  # a RestorableASHA
    """
    spec = as_spec(spec)
    if overrides:
        spec = ExperimentSpec.from_dict(
            {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)} | overrides
        )
    task = get_task(spec.task)
    options = task.resolve_options(spec.task_options)
    if options.get("precision") == "fp16" and spec.resources.gpus_per_worker == 0:
        raise ValueError(
            "`task_options.precision` fp16 needs GPU workers, but `resources.gpus_per_worker` is 0 (CPU "
            "training has no fp16). Fix: precision: bf16 or fp32, or set gpus_per_worker."
        )
    if spec.resources.zero_stage == 3 and not task.zero3:
        raise ValueError(
            f"`resources.deepspeed_config.zero_optimization.stage` 3 is not supported by task {task.name!r}: "
            "its partitioned weights would make empty checkpoints. Fix: use stage 1 or 2, or a task that "
            "checkpoints through DeepSpeed (pretrain)."
        )
    metric, mode = objective(spec, task)
    if isinstance(metric, list) and not takes_objectives(spec.searcher):
        raise ValueError(
            f"`metric` {metric!r} names several objectives, but searcher {_name(spec.searcher)!r} "
            "optimises one. Fix: use a multi-objective searcher (evolution, optuna, or a Searcher "
            "created with this list of metrics) or one metric."
        )
    space = resolve_search_space(spec.search_space, options, task.default_space)
    searcher = make_searcher(spec.searcher, seed=spec.seed, options=spec.searcher_options,
                             max_concurrent=spec.max_concurrent_trials, space=space,
                             metric=metric, mode=mode)
    if isinstance(metric, list) and getattr(searcher, "metric", None) != metric:
        raise ValueError(
            f"The searcher optimises {getattr(searcher, 'metric', None)!r}, but `metric` is {metric!r}. "
            "Fix: create the searcher with metric and mode as these lists."
        )
    scheduler = make_scheduler(spec.scheduler, seed=spec.seed, options=spec.scheduler_options,
                               searcher=searcher)
    store = ParquetStore(spec.store)
    store.check_writable()
    storage_path = spec.storage_path or _default_storage(spec.store)
    if not spec.resume and store.keys(spec.name):
        raise ValueError(
            f"Experiment `name` {spec.name!r} already has results in the store {store.root!r}. "
            "Fix: pass resume: true (--resume) to continue it, or choose a new name."
        )
    space_description = describe_space(space)
    if spec.resume:
        check_same_space(store, spec.name, space_description)
    warm_points = []
    if spec.warm_start is not None:
        check_warm_startable(searcher, _name(spec.searcher))
        warm_points = earlier_points(spec.warm_start, spec.store, spec.task,
                                     metric if isinstance(metric, list) else [metric], space_description,
                                     mode=mode[0] if isinstance(mode, list) else mode)
    return RunPlan(spec=spec, task=task, options=options, metric=metric, mode=mode, space=space,
                   searcher=searcher, scheduler=scheduler, store=store, storage_path=storage_path,
                   space_description=space_description, warm_points=warm_points)


def run(spec: ExperimentSpec | Mapping[str, Any] | str | os.PathLike[str], *,
        callbacks: Sequence[Any] = (), **overrides: Any) -> RunResult:
    """Run the search a spec describes and return its results.

    Everything is checked before a trial starts (:func:`plan_run`). ``overrides`` replace spec
    fields, e.g. ``run("examples/digits.yaml", num_samples=2)``. ``callbacks`` are extra Ray Tune
    callbacks (e.g. the autoscaling harness's trial timeline).

    Example::

        import efficient_search as es
        result = es.run({"name": "digits-demo", "num_samples": 4})
        print(result.trials())
    """
    plan = plan_run(spec, **overrides)
    # One live driver per experiment (see efficient_search.store.owner): claimed before Ray starts,
    # given back however the run ends; a crashed driver's claim lapses by itself.
    plan.store.claim(plan.spec.name)
    try:
        return _fit(plan, callbacks)
    finally:
        plan.store.release(plan.spec.name)


def _fit(plan: RunPlan, callbacks: Sequence[Any]) -> RunResult:
    """The Ray half of :func:`run`: start Ray, build or restore the Tuner, fit it."""
    spec, task, options, metric, mode = plan.spec, plan.task, plan.options, plan.metric, plan.mode
    searcher, scheduler, store = plan.searcher, plan.scheduler, plan.store
    storage_path, space_description = plan.storage_path, plan.space_description
    # A searcher that took the space itself gets none from Tune (Tune would refuse a second one).
    param_space = {} if owns_space(searcher) else getattr(plan.space, "param_space", plan.space)
    primary = metric[0] if isinstance(metric, list) else metric
    primary_mode = mode[0] if isinstance(mode, list) else mode
    warm_from = (", ".join(spec.warm_start["experiments"])
                 if spec.warm_start is not None and spec.verbose >= 1 else None)

    import ray
    from ray import tune

    from efficient_search.trial import KEEP_CHECKPOINTS, cpus_per_trial, make_trainable

    if not ray.is_initialized():
        start_ray(cpus_per_trial(spec.resources))
    # Keeping two checkpoints per trial makes Tune snapshot the experiment after every other
    # checkpoint, on purpose (a resume loses little); its warning about that is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = make_trainable(task=task, options=options, resources=spec.resources,
                               seed=spec.seed, storage_path=storage_path, experiment=spec.name,
                               max_failures=spec.max_failures)
    callback = ParquetStoreCallback(
        store,
        experiment=spec.name,
        searcher=_name(spec.searcher),
        scheduler=_name(spec.scheduler),
        seed=spec.seed,
        hardware=describe_hardware(spec.resources),
        metadata={"spec": spec.to_dict(), "metric": primary, "mode": primary_mode,
                  "space": space_description,
                  **({"objectives": metric, "modes": mode} if isinstance(metric, list) else {})},
    )
    experiment_path = inside_root(storage_path, spec.name, field="name")
    can_restore = tune.Tuner.can_restore(experiment_path)
    log_file = worker_log_file(experiment_path, spec.name)
    view = LiveView(spec.name, primary, primary_mode, spec.num_samples, logs=log_file) \
        if spec.verbose == 1 else None
    if spec.resume and not can_restore:
        if store.keys(spec.name):
            raise ValueError(
                f"Experiment {spec.name!r} has results in the store {store.root!r}, but Ray's saved "
                f"state of it is not at {experiment_path!r}, so it cannot be resumed. Fix: pass the "
                "`storage_path` it ran with, or choose a new name."
            )
        print(f"efficient-search: nothing to resume at {experiment_path}; starting "
              f"{spec.name!r} afresh.", flush=True)
    if spec.resume and can_restore:
        drop_pending_pauses(experiment_path)  # stale PAUSEs would strand restored trials
        grown = grow(store, spec, experiment_path)
        tuner = tune.Tuner.restore(experiment_path, trainable, param_space=param_space,
                                   resume_errored=False, restart_errored=False)
        # Tune goes on with the scheduler it pickled when the experiment started, not ours.
        restored = restored_scheduler(tuner)
        for restored_callback in restored_callbacks(tuner):  # and with the callbacks it pickled
            if isinstance(restored_callback, ParquetStoreCallback) and grown:
                restored_callback.update_spec(num_samples=spec.num_samples)
            if isinstance(restored_callback, LiveView):
                restored_callback.num_samples = spec.num_samples
            if isinstance(restored_callback, WarmStart):  # the restored searcher holds its points
                restored_callback.done = True
        check_resumable(scheduler if restored is None else restored, store, spec)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                # Several objectives live in the searcher; Tune would hand it (and overwrite
                # them with) the first one only.
                metric=None if isinstance(metric, list) else primary,
                mode=None if isinstance(mode, list) else primary_mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=spec.num_samples,
                max_concurrent_trials=(spec.max_concurrent_trials
                                       if isinstance(searcher, Searcher) else None),
                time_budget_s=spec.time_budget_s,
                reuse_actors=spec.reuse_actors,
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=storage_path,
                callbacks=[callback, *_state_callbacks(scheduler), *callbacks, *([view] if view else []),
                           *([WarmStart(searcher, plan.warm_points, announce=warm_from)]
                             if plan.warm_points else [])],
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                verbose=spec.verbose if spec.verbose >= 2 else 0,  # 1: our LiveView instead
            ),
        )
    with quiet_console(log_file) if spec.verbose <= 1 else contextlib.nullcontext():
        grid = tuner.fit()
    return RunResult(spec=spec, store=store, metric=f"metric.{primary}", mode=primary_mode, grid=grid)


def worker_log_file(experiment_path: str, name: str) -> str:
    """Where a quiet run writes Ray's worker output: beside Ray's experiment folder, or under
    ./logs when that folder is on object storage."""
    if "://" in experiment_path:
        return os.path.join("logs", name, "workers.log")
    return os.path.join(experiment_path, "logs", "workers.log")


def grow(store: ParquetStore, spec: ExperimentSpec, experiment_path: str) -> int:
    """Let a resumed experiment run up to ``spec.num_samples`` samples in all (Ray restores the
    number it started with); the searcher and scheduler keep their state. Returns the samples added."""
    recorded = store.metadata(spec.name).get("spec", {}).get("num_samples")
    if recorded is None or spec.num_samples <= int(recorded):
        return 0
    added = grow_saved_search(experiment_path, spec.num_samples)
    if added is None:
        raise ValueError(
            f"Experiment {spec.name!r} ran {recorded} samples and `num_samples` asks for {spec.num_samples}, "
            f"but Ray's saved search state is not in a local folder at {experiment_path!r}, so it cannot "
            f"grow. Fix: resume with num_samples: {recorded}, or run the new trials as a new experiment."
        )
    if added:
        print(f"efficient-search: {spec.name!r} grows from {recorded} to {spec.num_samples} samples.",
              flush=True)
    return added


def resume(store: str | os.PathLike[str], experiment: str, **overrides: Any) -> RunResult:
    """Continue an interrupted experiment with the spec its store recorded.

    Ray's saved experiment state brings back the trials, the searcher and the scheduler; the store
    is made to agree with it (see :meth:`ParquetStoreCallback.reconcile`). ``overrides`` replace
    spec fields, e.g. ``max_failures=2``.

    Example::

        es.resume("results", "digits-demo")
    """
    root = os.fspath(store)
    recorded = ParquetStore(root).metadata(experiment).get("spec")
    if not isinstance(recorded, Mapping):
        raise ValueError(
            f"`experiment` {experiment!r} has no recorded spec in the store {root!r}. Fix: check the "
            "store root and the name (`efficient-search report` lists what is there), or resume "
            "from its spec file with `efficient-search run SPEC --resume`."
        )
    for name in ("searcher", "scheduler", "search_space"):
        value = recorded.get(name)
        if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
            raise ValueError(
                f"Experiment {experiment!r} ran with a Python object as `{name}` ({value}), which a "
                "spec cannot hold. Fix: resume from Python with es.run(spec, resume=True) and the "
                "same object."
            )
    data = {**recorded, "store": root, "resume": True, **overrides}
    return run(data)


def describe_space(space: Any) -> Any:
    """The axes of a search space as plain JSON (None for what has none, e.g. grid searches)."""
    from efficient_search.searchers.space import as_search_space

    try:
        description = as_search_space(space).describe()
    except (TypeError, ValueError):
        return None
    return json.loads(json.dumps(description, sort_keys=True, default=str))


def check_same_space(store: ParquetStore, experiment: str, description: Any) -> None:
    """Resuming under a changed search space would mix two searches under one name: refuse."""
    recorded = store.metadata(experiment).get("space")
    if recorded is not None and description is not None and recorded != description:
        raise ValueError(
            f"Experiment {experiment!r} ran with another search space than this spec gives (its "
            "`search_space` or the `task_options` it is derived from changed). Fix: resume with the "
            "spec it ran with, or choose a new name."
        )


def check_resumable(scheduler: Any, store: ParquetStore, spec: ExperimentSpec) -> None:
    """Refuse to resume an unfinished search whose scheduler would wait forever.

    Ray saves no scheduler state; Ray's own synchronous HyperBand (passed as an object) then never
    resumes the trials it had paused. Our schedulers (``state_callback``) come back whole; other
    schedulers of Ray's passed as objects resume with empty statistics.
    """
    from ray.tune.schedulers import HyperBandScheduler

    if not isinstance(scheduler, HyperBandScheduler) or callable(getattr(scheduler, "state_callback", None)):
        return
    from efficient_search.store.rows import ERROR, TERMINATED

    ended: dict[str, bool] = {}
    for trial_id, _, status in store.keys(spec.name):
        ended[trial_id] = ended.get(trial_id, False) or status in (TERMINATED, ERROR)
    if len(ended) < spec.num_samples or not all(ended.values()):
        raise ValueError(
            f"Experiment {spec.name!r} ran with scheduler {_name(spec.scheduler)!r} (Ray's "
            "HyperBandScheduler), which cannot be resumed: Ray does not save its brackets, and the "
            "trials it paused would wait forever. Fix: rerun it under a new name, or use scheduler "
            "'hyperband' (efficient_search.schedulers.RestorableHyperBand), which resumes with its "
            "brackets."
        )


def _state_callbacks(scheduler: Any) -> list[Any]:
    """Ray does not save scheduler state on restore; schedulers that can, ride on a callback."""
    make = getattr(scheduler, "state_callback", None)
    return [make()] if callable(make) else []


def _default_storage(store_root: str) -> str:
    if "://" in store_root:
        return store_root.rstrip("/") + "/_ray"
    return str(Path(store_root).expanduser().resolve() / "_ray")
