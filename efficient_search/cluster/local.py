"""A local autoscaling Ray cluster: the real autoscaler, with worker "nodes" as local raylets.

:class:`LocalAutoscalingCluster` is Ray's ``ray.cluster_utils.AutoscalingCluster`` made safe to
run beside other Ray instances on the same machine: Ray's class runs ``ray stop --force`` (which
kills every Ray process of the machine) on start and shutdown, reads a config file missing from
the wheel, and uses Ray's default ports. This one starts the head on free ports with its own
temp folder, listens on 127.0.0.1 only, and stops only the processes of its own temp folder.

Example::

    with LocalAutoscalingCluster(ClusterOptions(max_workers=2)) as cluster:
        ray.init(address=cluster.address)
        ...
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import Any

import psutil
from ray.cluster_utils import AutoscalingCluster

from efficient_search.cluster.config import (
    DEFAULT_OBJECT_STORE_BYTES,
    ClusterOptions,
    cluster_config,
    worker_types,
)

LOOPBACK = "127.0.0.1"
#: Seconds to wait for the head to come up and for fixed-size workers to join.
START_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def ray_executable() -> str:
    """The ``ray`` command of this Python environment."""
    candidate = os.path.join(os.path.dirname(sys.executable), "ray")
    return candidate if os.path.exists(candidate) else "ray"


class LocalAutoscalingCluster(AutoscalingCluster):
    """An autoscaling cluster of fake nodes that never touches other Ray instances."""

    def __init__(self, options: ClusterOptions | None = None, *,
                 head_object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES):
        self.options = options or ClusterOptions()
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.temp_dir = ""
        self._head_object_store_bytes = head_object_store_bytes
        types = worker_types(self.options)
        self._config = cluster_config(self.options, self.address)
        # AutoscalingCluster's own fields, for code that reads them.
        self._head_resources = {"CPU": self.options.head_cpus}
        self._autoscaler_v2 = False
        self.worker_types = types

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, _system_config: dict[str, Any] | None = None,
              override_env: dict[str, str] | None = None) -> None:
        """Start the head (with the autoscaler); worker nodes follow as the autoscaler decides."""
        self.temp_dir = tempfile.mkdtemp(prefix="es-as-", dir="/tmp")
        config_path = os.path.join(self.temp_dir, "autoscaler.json")
        with open(config_path, "w") as handle:
            json.dump(self._config, handle)
        command = [
            ray_executable(), "start", "--head",
            f"--port={self.port}",
            f"--node-ip-address={LOOPBACK}",
            f"--temp-dir={self.temp_dir}",
            f"--autoscaling-config={config_path}",
            f"--num-cpus={self.options.head_cpus}",
            "--num-gpus=0",
            f"--object-store-memory={self._head_object_store_bytes}",
            "--include-dashboard=false",
            f"--dashboard-host={LOOPBACK}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            "--disable-usage-stats",
        ]
        if _system_config is not None:
            command.append(f"--system-config={json.dumps(_system_config, separators=(',', ':'))}")
        env = {**os.environ, "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1",
               # Every node (the autoscaler starts the workers) takes 127.0.0.1 as its address.
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
               **(override_env or {})}
        env.pop("RAY_ADDRESS", None)
        try:
            subprocess.run(command, env=env, check=True, capture_output=True, text=True,
                           timeout=START_TIMEOUT_S)
        except subprocess.CalledProcessError as exc:
            self.shutdown()
            raise RuntimeError(f"`ray start --head` failed ({exc.returncode}):\n"
                               f"{exc.stderr[-3000:]}") from exc
        except BaseException:
            self.shutdown()
            raise

    def shutdown(self) -> None:
        """Stop every process of this cluster (head, autoscaler, worker nodes, their workers)."""
        if not self.temp_dir:
            return
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            processes = self.processes()
            if not processes:
                break
            for process in processes:
                try:
                    process.send_signal(sig)
                except psutil.Error:
                    pass
            psutil.wait_procs(processes, timeout=wait_s)
        left = self.processes()
        if left:
            raise RuntimeError(f"Processes of the cluster in {self.temp_dir} survived SIGKILL: "
                               f"{[p.pid for p in left]}.")
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalAutoscalingCluster:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.shutdown()

    # -- inspection ------------------------------------------------------------------------------
    def processes(self) -> list[psutil.Process]:
        """Processes of this cluster: those whose command line names its temp folder or GCS port
        (workers of every node name the session folder; the GCS client processes its port)."""
        if not self.temp_dir:
            return []
        marks = (self.temp_dir, f"{LOOPBACK}:{self.port}")
        found = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            if process.pid == os.getpid():
                continue
            cmdline = " ".join(process.info.get("cmdline") or [])
            if any(mark in cmdline for mark in marks):
                found.append(process)
        return found

    def raylets(self) -> list[psutil.Process]:
        """The raylet process of every node of this cluster (head included)."""
        return [p for p in self.processes() if _name(p) == "raylet"]

    def kill_node(self, node_id: str) -> list[int]:
        """SIGKILL the raylet of node ``node_id`` and the workers it started, as if the machine
        vanished (its agents follow the raylet by themselves); returns the pids killed."""
        for raylet in self.raylets():
            try:
                if f"--node_id={node_id}" not in raylet.cmdline():
                    continue
                victims = [*raylet.children(recursive=True), raylet]
            except psutil.Error:
                continue
            for process in victims:
                try:
                    process.kill()
                except psutil.Error:
                    pass
            return [int(p.pid) for p in victims]
        raise ValueError(f"No raylet of node {node_id!r} runs in the cluster of {self.temp_dir}.")

    def wait_for_workers(self, count: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until ``count`` worker nodes are alive (needs ``ray.init`` to this cluster)."""
        import ray

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive = [n for n in ray.nodes() if n["Alive"]]
            if len(alive) - 1 >= count:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{count} worker node(s) did not join within {timeout_s:.0f} s.")


def _name(process: psutil.Process) -> str:
    try:
        return str(process.name())
    except psutil.Error:
        return ""


def connect(cluster: LocalAutoscalingCluster, **init_options: Any) -> None:
    """Connect this process to ``cluster`` (an explicit address: never another local Ray)."""
    import ray

    from efficient_search.local_ray import loopback_node_ip
    from efficient_search.ray_compat import enable_token_auth_if_token_available

    # `ray start` turns token authentication on when a token exists (and RAY_AUTH_MODE is
    # unset); the same rule here makes this process present it.
    enable_token_auth_if_token_available()
    with loopback_node_ip(LOOPBACK):
        ray.init(address=cluster.address, _node_ip_address=LOOPBACK, **init_options)
