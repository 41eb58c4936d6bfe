"""Test set-up: offline hubs, one local Ray per test session in its own temp folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# Ray's startup banner and metrics exporters are noise in test logs.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# Ray workers inherit this process's environment: let them import functions defined in tests.
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (TESTS_DIR, os.environ.get("PYTHONPATH", "")) if p
)

# Trials' checkpoint folders wait in one folder per test session, deleted at its end: task loops
# driven directly by tests (RecordingSession) never delete theirs.
CHECKPOINT_TMP = tempfile.mkdtemp(prefix="es-test-checkpoints-")
os.environ.setdefault("ES_CHECKPOINT_TMP", CHECKPOINT_TMP)

RAY_CPUS = 4


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(CHECKPOINT_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray for the whole session (short temp path: Ray's sockets limit its length)."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="es-ray-", dir="/tmp")
    ray.init(address="local", num_cpus=RAY_CPUS, _temp_dir=temp_dir,
             log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
