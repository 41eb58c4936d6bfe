"""The experiment spec: what to search, how, where to store it. Loadable from YAML or JSON.

Example (YAML)::

    name: digits-demo
    task: digits
    search_space: {lr: {loguniform: [0.001, 0.1]}, depth: {randint: [1, 4]}}
    searcher: random
    scheduler: asha
    metric: val_accuracy
    mode: max
    num_samples: 4
    resources: {num_workers: 2, cpus_per_worker: 1}
    store: results
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efficient_search.store.parquet import validate_experiment_name
from efficient_search.validate import check_choice, check_int, check_mapping, check_number, type_error

STRATEGIES = ("ddp", "deepspeed")


def _check_objectives(metric: Any, mode: Any) -> None:
    """``metric``/``mode``: a name and min/max, or equally long lists of them."""
    metrics = metric if isinstance(metric, list) else [metric]
    if metric is not None and (not metrics or not all(isinstance(m, str) and m for m in metrics)):
        raise type_error("metric", metric, "a string or a list of strings",
                         "val_accuracy (or [val_perplexity, params])")
    if isinstance(metric, list) and len(metric) < 2:
        raise ValueError(f"`metric` {metric!r} lists one objective. Fix: metric: {metric[0]!r}."
                         if metric else "`metric` is an empty list. Fix: name an objective.")
    if isinstance(metric, list) and len(set(metric)) != len(metric):
        raise ValueError(f"`metric` lists an objective twice: {metric!r}. Fix: name each once.")
    modes = mode if isinstance(mode, list) else [mode]
    if mode is not None and not all(m in ("min", "max") for m in modes) or mode == []:
        raise ValueError(f"`mode` must be 'min' or 'max', but got {mode!r} (a list gives one per "
                         "metric). Fix: mode: max.")
    if isinstance(mode, list) and not isinstance(metric, list):
        raise ValueError(f"`mode` is a list {mode!r} but `metric` is {metric!r}. Fix: give `metric` as "
                         "a list of the same length, or one mode.")
    if isinstance(metric, list) and isinstance(mode, str):
        raise ValueError(f"`mode` {mode!r} is one mode for the objectives {metric!r}. Fix: one per "
                         f"metric, e.g. mode: {[mode] * len(metric)} (or leave mode out for the "
                         "task's defaults).")
    if isinstance(metric, list) and isinstance(mode, list) and len(mode) != len(metric):
        raise ValueError(f"`mode` {mode!r} needs one entry per metric in {metric!r}. Fix: e.g. "
                         f"mode: {['min'] * len(metric)}.")


def _unknown_fields(cls: type, data: Mapping[str, Any], owner: str) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"Did you mean `{owner}{close[0]}`? " if close else ""
            raise ValueError(
                f"Unknown spec field `{owner}{key}` (value {data[key]!r}). {hint}"
                f"Valid fields: {', '.join(known)}."
            )


@dataclass
class Resources:
    """Resources of one trial."""

    num_workers: int = 2
    """Ray Train workers per trial; 0 runs the training loop inside the trial process."""
    cpus_per_worker: float = 1.0
    """CPUs reserved for each worker."""
    gpus_per_worker: float = 0.0
    """GPUs reserved for each worker (0 trains on CPU with gloo)."""
    strategy: str = "ddp"
    """How workers share the model: ``ddp`` (PyTorch DDP) or ``deepspeed`` (ZeRO)."""
    deepspeed_config: dict[str, Any] | None = None
    """DeepSpeed config merged over the defaults (ZeRO stage 1, fp32) when strategy is deepspeed."""

    def __post_init__(self) -> None:
        check_int("resources.num_workers", self.num_workers, min=0, example="2")
        check_number("resources.cpus_per_worker", self.cpus_per_worker, min=0, example="1")
        check_number("resources.gpus_per_worker", self.gpus_per_worker, min=0, example="0")
        check_choice("resources.strategy", self.strategy, STRATEGIES, fix="strategy: ddp.")
        if self.deepspeed_config is not None:
            check_mapping("resources.deepspeed_config", self.deepspeed_config)
        fp16 = (self.deepspeed_config or {}).get("fp16", {})
        if self.gpus_per_worker == 0 and isinstance(fp16, Mapping) and fp16.get("enabled"):
            raise ValueError(
                "`resources.deepspeed_config.fp16.enabled` is true, but the workers have no GPU "
                "and DeepSpeed on CPU has no fp16. Fix: use bf16: {enabled: true}, or set "
                "gpus_per_worker."
            )
        if self.strategy == "deepspeed" and self.num_workers == 0:
            raise ValueError(
                "`resources.strategy` 'deepspeed' needs Ray Train workers, but "
                "`resources.num_workers` is 0. Fix: set num_workers >= 1 or strategy: ddp."
            )
        if self.strategy == "deepspeed" and self.deepspeed_config:
            from efficient_search.train.strategy import check_deepspeed_config

            check_deepspeed_config(self.deepspeed_config)

    @property
    def zero_stage(self) -> int:
        """The DeepSpeed ZeRO stage the workers run (0 without DeepSpeed)."""
        from efficient_search.train.strategy import zero_stage

        return zero_stage(self.deepspeed_config) if self.strategy == "deepspeed" else 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resources:
        check_mapping("resources", data)
        _unknown_fields(cls, data, "resources.")
        return cls(**data)


@dataclass
class ExperimentSpec:
    """One search experiment. Every field but ``name`` has a default."""

    name: str
    """Experiment name: the store partition and Ray's run folder. No path separators."""
    task: str = "digits"
    """Registered task name (see ``efficient_search.tasks.TASKS``)."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """Options of the task's training loop, e.g. ``{epochs: 4}``."""
    search_space: Any = None
    """Search-space dict (YAML form or Ray Tune domains), a registered space name, or None for
    the task's default."""
    searcher: Any = "random"
    """Registered searcher name or a Ray ``Searcher``/``SearchAlgorithm`` object."""
    searcher_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the named searcher."""
    scheduler: Any = "fifo"
    """Registered scheduler name or a Ray ``TrialScheduler`` object."""
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the named scheduler."""
    metric: str | list[str] | None = None
    """The objective, as the trial reports it; None takes the task's default. A list names
    several objectives (e.g. ``[val_perplexity, params]``) for a multi-objective searcher."""
    mode: str | list[str] | None = None
    """``min`` or ``max`` (one per metric for a list); None takes the task's default."""
    num_samples: int = 4
    """Number of trials."""
    max_concurrent_trials: int | None = None
    """Trials running at once (None: as many as resources allow)."""
    resources: Resources = field(default_factory=Resources)
    """Resources of each trial."""
    time_budget_s: float | None = None
    """Stop the whole search after this many seconds."""
    store: str = "results"
    """Parquet store root: a local path or a pyarrow filesystem URI."""
    storage_path: str | None = None
    """Where Ray keeps trial checkpoints and experiment state (None: ``<store>/_ray``)."""
    seed: int = 0
    """Seed of the searcher and of every trial's training."""
    resume: bool = False
    """Continue the experiment of the same name found under ``storage_path`` if there is one."""
    max_failures: int = 0
    """How often a failed trial is retried from its last checkpoint (a lost node, a killed
    process); its Ray Train worker group gets as many retries of its own."""
    verbose: int = 1
    """What a run prints: 0 nothing, 1 efficient-search's live view (Ray's worker output goes to
    ``<experiment folder>/logs/workers.log``, errors and warnings still shown), 2 and 3 Ray
    Tune's own status tables and every worker line."""
    warm_start: dict[str, Any] | None = None
    """Seed a new search with earlier results of the same task and space:
    ``{experiments: [name, ...], store: <root>}`` (store defaults to this spec's). Each earlier
    trial's last result reaches the searcher as an evaluated point (evolution, optuna)."""
    reuse_actors: bool = False
    """Run later trials in the processes of finished ones, keeping what a process caches (a loaded
    super-network, its importance ranking): for many short trials of one task, e.g. a
    ``subnetwork`` search. Trials must keep no state outside their checkpoints."""

    def __post_init__(self) -> None:
        if isinstance(self.resources, Mapping):
            self.resources = Resources.from_dict(self.resources)
        elif not isinstance(self.resources, Resources):
            raise type_error("resources", self.resources, "a mapping", "{num_workers: 2}")
        validate_experiment_name(self.name, "name")
        for name, example in (("task", "digits"), ("store", "./results")):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise type_error(name, value, "a non-empty string", example)
        for name in ("task_options", "searcher_options", "scheduler_options"):
            check_mapping(name, getattr(self, name))
        _check_objectives(self.metric, self.mode)
        check_int("num_samples", self.num_samples, min=1, example="8")
        check_int("max_concurrent_trials", self.max_concurrent_trials, min=1, optional=True, example="2")
        check_number("time_budget_s", self.time_budget_s, min=0, optional=True, example="600")
        check_int("seed", self.seed, min=0, example="0")
        check_int("max_failures", self.max_failures, min=0, example="2")
        if self.storage_path is not None and not isinstance(self.storage_path, str):
            raise type_error("storage_path", self.storage_path, "a string", "/tmp/ray")
        check_int("verbose", self.verbose, min=0, max=3, expected="0, 1, 2 or 3")
        _check_warm_start(self.warm_start)
        for name in ("resume", "reuse_actors"):
            if not isinstance(getattr(self, name), bool):
                raise type_error(name, getattr(self, name), "true or false", "true")
        for name in ("searcher", "scheduler"):
            value = getattr(self, name)
            if not isinstance(value, str) and isinstance(value, (int, float, Mapping, list)):
                raise type_error(name, value, "a registered name or a Ray object", "random")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentSpec:
        """Build a spec from plain data, rejecting unknown fields with a suggestion."""
        check_mapping("spec", data)
        _unknown_fields(cls, data, "")
        if "name" not in data:
            raise ValueError("The spec has no `name`. Fix: add e.g. name: digits-demo.")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ExperimentSpec:
        """Load a spec from a ``.yaml``/``.yml`` or ``.json`` file."""
        return cls.from_dict(read_spec_file(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (objects such as a Ray searcher become their class name)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["resources"] = dataclasses.asdict(self.resources)
        for name in ("searcher", "scheduler", "search_space"):
            value = getattr(self, name)
            if not isinstance(value, (str, type(None))) and not _is_plain(value):
                data[name] = f"<{type(value).__name__}>"
        return data


def _check_warm_start(value: Any) -> None:
    if value is None:
        return
    example = "{experiments: [digits-earlier]}"
    check_mapping("warm_start", value)
    unknown = sorted(set(value) - {"experiments", "store"})
    if unknown:
        raise ValueError(f"`warm_start` has unknown keys {unknown}; it takes experiments and store. "
                         f"Fix: e.g. warm_start: {example}.")
    experiments = value.get("experiments")
    if not isinstance(experiments, list) or not experiments or \
            not all(isinstance(name, str) and name for name in experiments):
        raise type_error("warm_start.experiments", experiments, "a non-empty list of experiment names",
                         "[digits-earlier]")
    if value.get("store") is not None and not isinstance(value["store"], str):
        raise type_error("warm_start.store", value["store"], "a store root (string)", "./results")


def _is_plain(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def read_spec_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML or JSON spec file into a dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Spec file {str(path)!r} does not exist. Fix: pass the path of a .yaml file.")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        raise ValueError(
            f"Spec file {str(path)!r} must end in .yaml, .yml or .json, not {path.suffix!r}."
        )
    if not isinstance(data, dict):
        raise ValueError(f"Spec file {str(path)!r} must hold a mapping of fields, got {data!r}.")
    return data
