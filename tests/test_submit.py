"""Job submission against a real local Ray head started with `ray start --head`."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from efficient_search.cli import main
from efficient_search.store import ParquetStore
from efficient_search.submit import auth_headers, submit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def ray_head(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Ray head on 127.0.0.1 with token authentication on; yields the dashboard address."""
    from ray.job_submission import JobSubmissionClient

    # A token of this test's own, given to the head and to the submitting client alike.
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    bin_dir = os.path.dirname(sys.executable)
    temp_dir = tempfile.mkdtemp(prefix="es-head-", dir="/tmp")
    dashboard = free_port()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "RAY_AUTH_MODE": "token"}
    command = [
        os.path.join(bin_dir, "ray"), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        f"--port={free_port()}", f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
        "--num-cpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]
    head = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                JobSubmissionClient(address, headers=auth_headers()).list_jobs()
                break
            except Exception:
                if time.monotonic() > deadline or head.poll() is not None:
                    raise
                time.sleep(1)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # `--block` stops every process it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_submit_runs_the_spec_as_a_ray_job_and_fills_the_store(ray_head, tmp_path) -> None:
    work = tmp_path / "job"
    work.mkdir()
    store = tmp_path / "store"
    (work / "spec.yaml").write_text(yaml.safe_dump({
        "name": "submitted",
        "task_options": {"epochs": 2},
        "search_space": {"depth": {"grid": [1, 2]}, "width": 8, "lr": 0.1},
        "resources": {"num_workers": 0},
        "num_samples": 1,
        "store": str(store),  # absolute: the job runs in an unpacked copy of --working-dir
    }))
    assert main(["submit", str(work / "spec.yaml"), "--address", ray_head,
                 "--working-dir", str(work)]) == 0
    rows = ParquetStore(store).results("submitted")
    assert rows["trial_id"].nunique() == 2
    assert (rows["status"] == "RUNNING").sum() == 4
    assert sorted(rows.loc[rows["status"] == "TERMINATED", "config.depth"]) == [1, 2]


def test_submit_checks_the_spec_before_contacting_the_cluster(tmp_path) -> None:
    (tmp_path / "spec.yaml").write_text("name: x\nnum_sampels: 2\n")
    with pytest.raises(ValueError, match="Did you mean `num_samples`"):
        submit(tmp_path / "spec.yaml", address="http://127.0.0.1:1", working_dir=str(tmp_path))
    other = Path(tempfile.mkdtemp())
    (other / "s.yaml").write_text("name: x\n")
    with pytest.raises(ValueError, match="outside `working_dir`"):
        submit(other / "s.yaml", address="http://127.0.0.1:1", working_dir=str(tmp_path))
