"""The autoscaler config of a local autoscaling cluster: the shipped base plus the user's choices.

Worker node types use the cluster launcher's ``available_node_types`` form::

    ray.worker.cpu:
      resources: {CPU: 1, object_store_memory: 150000000}
      node_config: {}
      min_workers: 0
      max_workers: 3
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources as package_files
from typing import Any

import yaml

from efficient_search.validate import check_int, check_number

HEAD_TYPE = "ray.head.default"
BASE_CONFIG = "fake_cluster.yaml"
#: Object store of every node unless its type says otherwise (small: the nodes share one machine).
DEFAULT_OBJECT_STORE_BYTES = 150_000_000


def base_config() -> dict[str, Any]:
    """The shipped base config (``fake_cluster.yaml`` of this package)."""
    text = package_files.files("efficient_search.cluster").joinpath(BASE_CONFIG).read_text()
    return dict(yaml.safe_load(text))


def default_worker_types() -> dict[str, Any]:
    """The worker node types of the base config."""
    types = base_config()["available_node_types"]
    return {name: spec for name, spec in types.items() if name != HEAD_TYPE}


@dataclass
class ClusterOptions:
    """How the local cluster is shaped and how it scales."""

    worker_types: dict[str, Any] = field(default_factory=default_worker_types)
    """Worker node types (``available_node_types`` form, head excluded)."""
    head_cpus: int = 0
    """CPUs of the head node; 0 makes every trial run on a worker node."""
    min_workers: int | None = None
    """Overrides ``min_workers`` of every worker type (None keeps the types' own)."""
    max_workers: int | None = None
    """Overrides ``max_workers`` of every worker type (None keeps the types' own)."""
    idle_timeout_s: float = 6.0
    """Seconds a worker node stays idle before the autoscaler removes it."""
    upscaling_speed: float = 1.0
    """How many nodes the autoscaler may add at once, relative to the current count."""
    fixed: int | None = None
    """A fixed-size cluster of this many nodes of the first worker type (no autoscaling)."""

    def __post_init__(self) -> None:
        check_worker_types(self.worker_types)
        for name in ("head_cpus", "min_workers", "max_workers", "fixed"):
            value = getattr(self, name)
            if value is None and name != "head_cpus":
                continue
            check_int(name, value, min=0, fix=f"e.g. --{name.replace('_', '-')} 2.")
        if (self.min_workers is not None and self.max_workers is not None
                and self.min_workers > self.max_workers):
            raise ValueError(f"`min_workers` {self.min_workers} exceeds `max_workers` "
                             f"{self.max_workers}. Fix: --min-workers <= --max-workers.")
        if self.fixed == 0 and self.head_cpus == 0:
            raise ValueError("`fixed` 0 with `head_cpus` 0 leaves no CPU for any trial. Fix: "
                             "--fixed 1 or more, or --head-cpus 1.")
        for name in ("idle_timeout_s", "upscaling_speed"):
            value = getattr(self, name)
            check_number(name, value, above=0, fix=f"e.g. --{name.replace('_', '-')} 6.")

    @classmethod
    def with_node_types_file(cls, path: str | os.PathLike[str] | None,
                             **options: Any) -> ClusterOptions:
        """Options whose worker types come from a YAML file (None: the shipped default)."""
        if path is None:
            return cls(**options)
        return cls(worker_types=read_worker_types(path), **options)


def read_worker_types(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Worker node types from a YAML file: either the mapping itself or a cluster config that
    holds it under ``available_node_types`` (its head type is ignored)."""
    if not os.path.isfile(path):
        raise ValueError(f"Node-type file {os.fspath(path)!r} does not exist. Fix: pass a YAML file "
                         "of worker node types (see efficient_search/cluster/fake_cluster.yaml).")
    with open(path) as handle:
        data = yaml.safe_load(handle)
    if isinstance(data, Mapping) and "available_node_types" in data:
        data = data["available_node_types"]
    if not isinstance(data, Mapping):
        raise ValueError(f"Node-type file {os.fspath(path)!r} must hold a mapping of node types, "
                         f"got {data!r}.")
    return {name: spec for name, spec in data.items() if name != HEAD_TYPE}


def check_worker_types(types: Any) -> None:
    """Refuse worker node types the fake provider could not start, naming the field."""
    if not isinstance(types, Mapping) or not types:
        raise ValueError(f"`worker_types` must be a non-empty mapping of node types, but got "
                         f"{types!r}. Fix: e.g. {{ray.worker.cpu: {{resources: {{CPU: 1}}, "
                         "node_config: {}, max_workers: 2}}.")
    for name, spec in types.items():
        where = f"`available_node_types.{name}"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}` must be a mapping, but got {spec!r}.")
        resources = spec.get("resources")
        if not isinstance(resources, Mapping) or not resources:
            raise ValueError(f"{where}.resources` must be a mapping such as {{CPU: 1}}, but got "
                             f"{resources!r}.")
        for key, value in resources.items():
            check_int(f"available_node_types.{name}.resources.{key}", value, min=0,
                      expected="an integer >= 0 (the autoscaler packs whole units)")
        for bound in ("min_workers", "max_workers"):
            check_int(f"available_node_types.{name}.{bound}", spec.get(bound, 0), min=0)
        if spec.get("min_workers", 0) > spec.get("max_workers", 0):
            raise ValueError(f"{where}.min_workers` {spec.get('min_workers')} exceeds its "
                             f"max_workers {spec.get('max_workers', 0)}.")


def worker_types(options: ClusterOptions) -> dict[str, Any]:
    """The worker node types with the options' bounds applied (and a fixed size, if asked)."""
    types = copy.deepcopy(options.worker_types)
    for spec in types.values():
        spec.setdefault("node_config", {})
        spec["resources"].setdefault("object_store_memory", DEFAULT_OBJECT_STORE_BYTES)
        if options.min_workers is not None:
            spec["min_workers"] = options.min_workers
        if options.max_workers is not None:
            spec["max_workers"] = options.max_workers
        spec["max_workers"] = max(spec.get("max_workers", 0), spec.get("min_workers", 0))
    if options.fixed is not None:
        first = next(iter(types))
        types = {first: {**types[first], "min_workers": options.fixed, "max_workers": options.fixed}}
    return types


def cluster_config(options: ClusterOptions, gcs_address: str) -> dict[str, Any]:
    """The full autoscaler config for a cluster whose GCS listens at ``gcs_address``."""
    config = base_config()
    types = worker_types(options)
    config["available_node_types"] = {
        **types,
        HEAD_TYPE: {"resources": {"CPU": options.head_cpus}, "node_config": {}, "max_workers": 0},
    }
    config["max_workers"] = sum(spec["max_workers"] for spec in types.values())
    config["idle_timeout_minutes"] = options.idle_timeout_s / 60.0
    config["upscaling_speed"] = options.upscaling_speed
    # Worker nodes join this GCS (the provider's default is port 6379 of the machine's address).
    config["provider"]["gcs_address"] = gcs_address
    return config


def validate(config: Mapping[str, Any]) -> None:
    """Check ``config`` against Ray's cluster-config schema (raises ``ValueError``)."""
    import jsonschema

    from efficient_search.ray_compat import validate_cluster_config

    try:
        validate_cluster_config(dict(config))
    except (jsonschema.ValidationError, ValueError) as exc:
        raise ValueError(f"The autoscaler config is invalid: {exc}") from exc
