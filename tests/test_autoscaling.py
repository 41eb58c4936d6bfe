"""The autoscaling harness: config, figures, and real runs on local clusters of fake nodes.

Clusters run in subprocesses (a process joins one Ray cluster only, and the session's own Ray may
be up); each stops only its own processes, which the tests check.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import yaml

from efficient_search.cluster.config import (
    HEAD_TYPE,
    ClusterOptions,
    cluster_config,
    read_worker_types,
    validate,
)
from efficient_search.cluster.fidelity import FidelityRequest
from efficient_search.cluster.harness import prepare_spec
from efficient_search.cluster.local import LocalAutoscalingCluster
from efficient_search.cluster.metrics import (
    demand_episodes,
    integrate,
    node_events,
    scale_down_latencies,
    scale_up_latencies,
    summarise,
)
from efficient_search.spec import ExperimentSpec
from efficient_search.store import ParquetStore

REPO = Path(__file__).resolve().parents[1]


def cluster_processes() -> set[int]:
    """Pids of processes of any cluster this harness started (temp folders /tmp/es-as-*)."""
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        if "/tmp/es-as-" in " ".join(process.info.get("cmdline") or []):
            found.add(process.pid)
    return found


def run_python(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter. On a timeout the interpreter is killed before it can stop
    its cluster, so the cluster's processes it started are killed here: a leftover cluster would make
    every later Ray driver of the session find two Ray instances and hang."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    before = cluster_processes()
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        for pid in cluster_processes() - before:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        raise


# -- config ------------------------------------------------------------------------------------
def test_cluster_config_passes_rays_validation() -> None:
    config = cluster_config(ClusterOptions(max_workers=2, idle_timeout_s=3), "127.0.0.1:1234")
    validate(config)
    assert config["provider"]["type"] == "fake_multinode"
    assert config["provider"]["gcs_address"] == "127.0.0.1:1234"
    assert config["available_node_types"][HEAD_TYPE]["resources"] == {"CPU": 0}
    assert config["available_node_types"]["ray.worker.cpu"]["max_workers"] == 2
    assert config["max_workers"] == 2
    assert config["idle_timeout_minutes"] == pytest.approx(0.05)
    fixed = cluster_config(ClusterOptions(fixed=3), "127.0.0.1:1")
    assert fixed["available_node_types"]["ray.worker.cpu"]["min_workers"] == 3


def test_node_types_file(tmp_path: Path) -> None:
    path = tmp_path / "types.yaml"
    path.write_text(yaml.safe_dump({"available_node_types": {
        "ray.head.default": {"resources": {}, "node_config": {}},
        "two": {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 1}}}))
    types = read_worker_types(path)
    assert list(types) == ["two"]
    options = ClusterOptions.with_node_types_file(path, max_workers=2)
    validate(cluster_config(options, "127.0.0.1:1"))


@pytest.mark.parametrize(("options", "field"), [
    ({"min_workers": 3, "max_workers": 1}, "min_workers"),
    ({"idle_timeout_s": 0}, "idle_timeout_s"),
    ({"fixed": -1}, "fixed"),
    ({"worker_types": {"w": {"resources": {"CPU": 0.5}, "node_config": {}}}}, "resources.CPU"),
    ({"worker_types": {}}, "worker_types"),
])
def test_bad_cluster_options_name_the_field(options: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        ClusterOptions(**options)


def test_missing_node_types_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_worker_types(tmp_path / "nope.yaml")


# -- fidelity-aware requests ---------------------------------------------------------------------
def test_fidelity_request_scales_with_the_config() -> None:
    request = FidelityRequest.parse("trainable_layers=6", cpus=1.0, min_cpus=0.25)
    assert request.cpus_for({"trainable_layers": 1}) == 0.25  # the floor
    assert request.cpus_for({"trainable_layers": 3}) == 0.5
    assert request.cpus_for({"trainable_layers": 6}) == 1.0
    assert request.cpus_for({}) == 1.0  # no fidelity value: the full request
    with pytest.raises(ValueError, match="KEY=MAX"):
        FidelityRequest.parse("trainable_layers")
    with pytest.raises(ValueError, match="min_cpus"):
        FidelityRequest(key="epochs", max_value=4, cpus=0.5, min_cpus=1.0)


def test_prepare_spec_checks_and_sets_concurrency() -> None:
    options = ClusterOptions(max_workers=3)
    cluster = LocalAutoscalingCluster(options)  # not started: its config only
    spec = ExperimentSpec(name="x", searcher="evolution",
                          resources={"num_workers": 0, "cpus_per_worker": 1})
    prepared = prepare_spec(spec, options, cluster, None)
    assert prepared.max_concurrent_trials == 3  # three 1-CPU nodes hold three trials
    too_big = ExperimentSpec(name="x", resources={"num_workers": 0, "cpus_per_worker": 2})
    with pytest.raises(ValueError, match="largest node has 1"):
        prepare_spec(too_big, options, cluster, None)
    train = ExperimentSpec(name="x", resources={"num_workers": 1, "cpus_per_worker": 0.5})
    with pytest.raises(ValueError, match="num_workers"):
        prepare_spec(train, options, cluster, FidelityRequest(key="epochs", max_value=4))


# -- figures -------------------------------------------------------------------------------------
def _sample(t: float, workers: list[str], busy: float, pending: int = 0) -> dict:
    return {"t": t, "workers": len(workers), "worker_ids": workers, "cpus": float(len(workers)),
            "busy_cpus": busy, "pending_trials": pending, "pending_min_cpus": 1.0 if pending else 0.0,
            "running_trials": int(busy)}


def test_figures_of_a_known_timeline() -> None:
    # Two trials queue at t=0 on an empty cluster; node a joins at 3, b at 5; b's trial ends at
    # 10 and b leaves at 16; a's trial ends at 20 and a leaves at 26.
    samples = [
        _sample(0, [], 0, pending=2), _sample(3, ["a"], 1, pending=1), _sample(5, ["a", "b"], 2),
        _sample(10, ["a", "b"], 1), _sample(16, ["a"], 1), _sample(20, ["a"], 0), _sample(26, [], 0),
    ]
    assert demand_episodes(samples) == [(0, 5)]
    assert scale_up_latencies(samples) == [3]
    assert [e["kind"] for e in node_events(samples)] == ["up", "up", "down", "down"]
    assert scale_down_latencies(samples) == [6, 6]
    assert integrate(samples, "cpus", 0, 26) == 3 * 0 + 2 * 1 + 11 * 2 + 10 * 1
    intervals = [{"trial_id": "t1", "status": "PENDING", "start": 0, "end": 3, "cpus": 1},
                 {"trial_id": "t1", "status": "RUNNING", "start": 3, "end": 20, "cpus": 1},
                 {"trial_id": "t2", "status": "PENDING", "start": 0, "end": 5, "cpus": 1},
                 {"trial_id": "t2", "status": "RUNNING", "start": 5, "end": 10, "cpus": 1}]
    summary = summarise(samples, intervals, start=0, end=20, tail_end=26, first_start=3)
    assert summary["resource_s"] == 34 and summary["busy_resource_s"] == 2 + 10 + 6 + 4
    assert summary["utilisation"] == pytest.approx(22 / 34)
    assert summary["time_to_first_trial_s"] == 3 and summary["pending_s_p50"] == 4
    assert summary["trial_cpu_s"] == 22 and summary["scale_tail_s"] == 6
    assert summary["nodes_added"] == 2 and summary["nodes_removed"] == 2
    with pytest.raises(ValueError, match="No cluster readings"):
        summarise([], [], start=0, end=1, tail_end=1, first_start=None)


# -- real clusters -------------------------------------------------------------------------------
SPEC = {
    "name": "as-test", "task": "digits", "task_options": {"epochs": 2},
    "search_space": {"depth": 1, "width": 8, "batch_size": 64, "lr": {"loguniform": [0.01, 0.3]}},
    "searcher": "random", "num_samples": 3, "max_concurrent_trials": 2,
    "resources": {"num_workers": 0, "cpus_per_worker": 1}, "max_failures": 1, "verbose": 0,
}


def test_autoscale_command_scales_up_and_back_down(tmp_path: Path) -> None:
    """The command on a real autoscaling cluster: nodes join for the queued trials, every trial
    finishes, the idle nodes are given back, the figures and the plot land in the store."""
    before = cluster_processes()
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "store": str(tmp_path / "store")}))
    code = ("import sys; from efficient_search.cluster.cli import standalone; "
            f"sys.exit(standalone([{str(spec)!r}, '--max-workers', '2', '--idle-timeout', '3', "
            "'--prewarm', '1']))")
    done = run_python(code, timeout=420)  # 2-3 min on an idle 2-core machine
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert cluster_processes() - before == set()  # nothing of the cluster is left running

    store = ParquetStore(tmp_path / "store")
    trials = store.results("as-test")
    assert set(trials[trials["status"] == "TERMINATED"]["trial_id"]) == set(trials["trial_id"])
    assert trials["trial_id"].nunique() == 3
    rows = store.results("as-test-cluster")
    summary = rows[rows["config.kind"] == "summary"].iloc[0]
    assert 1 <= summary["metric.max_workers_seen"] <= 2
    assert summary["metric.nodes_added"] >= 1
    assert summary["metric.nodes_removed"] == summary["metric.nodes_added"]  # back to 0 workers
    assert 0 < summary["metric.time_to_first_trial_s"] < summary["metric.makespan_s"]
    assert 0 < summary["metric.utilisation"] <= 1
    assert summary["metric.scale_down_s_p50"] >= 3 - 0.5  # not before the idle timeout
    per_trial = rows[rows["config.kind"] == "trial"]
    assert len(per_trial) == 3 and (per_trial["metric.running_s"] > 0).all()
    assert (rows[rows["config.kind"] == "node"]["config.event"] == "up").sum() >= 1
    assert store.metadata("as-test-cluster")["mode"] == "autoscale"
    assert (tmp_path / "store" / "_plots" / "as-test-cluster.png").stat().st_size > 0


KILL_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import ray
    from ray.tune import Callback
    import efficient_search as es
    from efficient_search.cluster import ClusterOptions, LocalAutoscalingCluster
    from efficient_search.cluster.local import connect
    from efficient_search.ray_compat import actor_node_id

    class KillTrialNode(Callback):
        '''After a trial's first epoch, SIGKILL the raylet of the node it runs on.'''
        def __init__(self, cluster):
            self.cluster, self.killed, self.recovered = cluster, [], []
        def on_trial_recover(self, iteration, trials, trial, **info):
            self.recovered.append(trial.trial_id)
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.killed or result.get("fidelity/epoch", 0) < 1:
                return
            node_id = actor_node_id(trial.temporary_state.ray_actor)
            self.killed.append({"trial_id": trial.trial_id, "node_id": node_id,
                                "pids": self.cluster.kill_node(node_id),
                                "epoch": result["fidelity/epoch"]})

    spec = json.loads(sys.argv[1])
    cluster = LocalAutoscalingCluster(ClusterOptions(min_workers=2, max_workers=2, idle_timeout_s=60))
    cluster.start()
    try:
        connect(cluster, log_to_driver=False)
        cluster.wait_for_workers(2)
        killer = KillTrialNode(cluster)
        es.run(spec, callbacks=[killer])
        # The trial's actor dies with the raylet at once; the GCS marks the node dead only after its
        # health checks time out, which an idle machine's quick run can outpace: wait for it.
        dead, deadline = {k["node_id"] for k in killer.killed}, time.monotonic() + 90
        while True:
            alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
            if not dead & set(alive) or time.monotonic() > deadline:
                break
            time.sleep(1)
        print("KILLED " + json.dumps({"killed": killer.killed, "recovered": killer.recovered,
                                      "alive": alive}))
    finally:
        ray.shutdown()
        cluster.shutdown()
""")


@pytest.mark.slow
def test_losing_a_node_mid_trial_keeps_the_experiment(tmp_path: Path) -> None:
    """A worker node's raylet dies while a trial runs there: with max_failures 1 Tune restarts the
    trial from its checkpoint on the other node, and the experiment finishes whole."""
    before = cluster_processes()
    spec = {**SPEC, "name": "as-kill", "task_options": {"epochs": 6}, "num_samples": 2,
            "max_concurrent_trials": 1, "search_space": {**SPEC["search_space"], "width": 32},
            "store": str(tmp_path / "store")}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, json.dumps(spec)], capture_output=True,
                          text=True, timeout=400, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert cluster_processes() - before == set()
    line = next(x for x in done.stdout.splitlines() if x.startswith("KILLED "))
    report = json.loads(line[len("KILLED "):])
    assert len(report["killed"]) == 1
    killed = report["killed"][0]
    assert len(killed["pids"]) >= 2 and not any(psutil.pid_exists(p) for p in killed["pids"])
    assert killed["node_id"] not in report["alive"]  # the cluster lost the node
    assert report["recovered"] == [killed["trial_id"]]  # Tune saw the trial fail and retried it

    rows = ParquetStore(tmp_path / "store").results("as-kill")
    final = rows[rows["status"] == "TERMINATED"]
    assert set(final["trial_id"]) == set(rows["trial_id"]) and len(final) == 2
    assert (final["fidelity.epoch"] == 6).all()  # every trial, the interrupted one too, finished
    assert rows[rows["status"] == "ERROR"].empty


@pytest.mark.slow
def test_fidelity_aware_requests_and_a_fixed_cluster(tmp_path: Path) -> None:
    """Layer freezing with fidelity-aware requests on a fixed cluster of 2 nodes: trials at the
    lowest rung (1 of 6 layers) ask for the 0.25-CPU floor, so more of them share a node."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        **SPEC, "name": "as-fid", "num_samples": 4, "max_concurrent_trials": 4,
        "search_space": {**SPEC["search_space"], "depth": 4, "width": 16},
        "scheduler": "layer_freezing",
        "scheduler_options": {"max_trainable_layers": 6, "epochs": 1, "reduction_factor": 2,
                              "promotion": "restart"},
        "store": str(tmp_path / "store")}))
    code = ("import sys; from efficient_search.cluster.cli import standalone; "
            f"sys.exit(standalone([{str(spec)!r}, '--fixed', '2', "
            "'--fidelity-resources', 'trainable_layers=6']))")
    done = run_python(code, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = ParquetStore(tmp_path / "store")
    trials = store.results("as-fid")
    assert trials[trials["status"] == "TERMINATED"]["trial_id"].nunique() == 4
    rows = store.results("as-fid-cluster")
    per_trial = rows[rows["config.kind"] == "trial"]
    assert (per_trial["metric.cpus"] < 1).any()  # low-fidelity trials asked for less
    samples = rows[rows["config.kind"] == "sample"]
    assert (samples["metric.workers"] == 2).all()  # fixed: never scaled
    assert samples["metric.running_trials"].max() > 2  # more trials than 1-CPU nodes at once
    summary = rows[rows["config.kind"] == "summary"].iloc[0]
    assert summary["metric.nodes_added"] == 0 and math.isnan(summary["metric.scale_up_s_p50"])
    assert store.metadata("as-fid-cluster")["mode"] == "fixed"
