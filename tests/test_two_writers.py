"""Two drivers, one store: concurrent writers of different experiments lose, double or tear no row;
a second live driver on the same experiment is refused, a stopped one's claim is taken over.

Writers, readers and claim holders are real subprocesses using the real store API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

import efficient_search as es
from efficient_search.durable import atomic_write
from efficient_search.store import ExperimentInUseError, ParquetStore, ParquetStoreCallback
from efficient_search.store.owner import OWNER_FILE, ExperimentClaim, Owner

BATCHES = 120

# A driver: claims its experiment, appends batches of rows (a new metric now and then, so files
# are compacted) and after each batch reads the other driver's experiment, which must be a whole
# prefix of what that driver wrote. Prints a JSON summary.
WRITER = textwrap.dedent("""
    import json, random, sys
    from efficient_search.store import ParquetStore, make_row

    root, mine, other, batches, seed = sys.argv[1:4] + [int(a) for a in sys.argv[4:6]]
    rng = random.Random(seed)
    store = ParquetStore(root, max_small_files=3, small_file_rows=150)
    store.claim(mine)
    context = {"searcher": "random", "scheduler": "fifo", "seed": seed, "hardware": "test"}
    n, reads, seen = 0, 0, 0
    for _ in range(batches):
        batch = rng.randint(1, 25)
        extra = {f"m{rng.randint(0, 8)}": 1.0} if rng.random() < 0.1 else {}
        store.append(mine, [make_row(trial_id=f"{mine}-{n + i}", config={"lr": 0.1},
                                     result={"training_iteration": 1, "loss": 1.0, **extra},
                                     status="RUNNING", context=context) for i in range(batch)])
        n += batch
        if other in store.experiments():
            ids = sorted(int(t.rsplit("-", 1)[1]) for t in store.results(other)["trial_id"])
            assert ids == list(range(len(ids))), "the other experiment lost or doubled rows"
            assert len(ids) >= seen, "the other experiment shrank"
            seen, reads = len(ids), reads + 1
    store.release(mine)
    print(json.dumps({"rows": n, "reads_of_other": reads}))
""")

# Reads both experiments until the file ``stop`` exists; every read must be a whole prefix.
READER = textwrap.dedent("""
    import json, os, sys
    from efficient_search.store import ParquetStore

    root, stop = sys.argv[1], sys.argv[2]
    store = ParquetStore(root)
    seen, reads = {}, 0
    while not os.path.exists(stop):
        for name in ("alpha", "beta"):
            if name not in store.experiments():
                continue
            keys = store.keys(name)
            ids = sorted(int(t.rsplit("-", 1)[1]) for t in store.results(name)["trial_id"])
            assert ids == list(range(len(ids))), (name, "lost or doubled rows")
            assert len(ids) >= seen.get(name, 0), (name, "shrank")
            assert len(keys) <= len(ids), (name, "keys read before the rows are not among them")
            seen[name], reads = len(ids), reads + 1
    print(json.dumps({"reads": reads, "seen": seen}))
""")

HOLDER = textwrap.dedent("""
    import sys, time
    from efficient_search.store import ParquetStore

    ParquetStore(sys.argv[1]).claim(sys.argv[2])
    print("ready", flush=True)
    time.sleep(120)
""")


def env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def python(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], timeout: float = 120) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def hold(root: Path, experiment: str) -> subprocess.Popen[str]:
    """A live driver holding ``experiment`` in another process."""
    process = python(HOLDER, root, experiment)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_two_drivers_and_a_reader_share_one_store(tmp_path: Path) -> None:
    root, stop = tmp_path / "store", tmp_path / "stop"
    reader = python(READER, root, stop)
    writers = {name: python(WRITER, root, name, other, BATCHES, seed)
               for name, other, seed in (("alpha", "beta", 1), ("beta", "alpha", 2))}
    written = {name: finish(process) for name, process in writers.items()}
    stop.touch()
    read = finish(reader)
    store = ParquetStore(root)
    for name, summary in written.items():
        ids = sorted(int(t.rsplit("-", 1)[1]) for t in store.results(name)["trial_id"])
        assert ids == list(range(summary["rows"])), name  # none lost, none doubled
        # Not even the raw files hold a row twice (the store drops duplicates when reading).
        assert ds.dataset(root / f"experiment={name}", format="parquet").count_rows() == summary["rows"]
        assert store.owner(name) is None  # released at the end
    # Each writer and the reader really read while the other experiment was being written.
    assert all(summary["reads_of_other"] > BATCHES // 2 for summary in written.values()), written
    assert read["reads"] > 10 and read["seen"] == {n: s["rows"] for n, s in written.items()}, read


def test_a_second_live_driver_is_refused_and_a_killed_ones_claim_is_taken_over(tmp_path: Path) -> None:
    root = tmp_path / "store"
    holder = hold(root, "exp")
    store = ParquetStore(root)
    store.claim("other")  # a different experiment of the same store is free
    with pytest.raises(ExperimentInUseError) as caught:
        store.claim("exp")
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    for part in ("'exp'", f"pid {holder.pid}", "host", "still running", "Fix: choose another",
                 "resume this one after that driver stops"):
        assert part in message, (part, message)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    claim = store.claim("exp")  # a crashed driver never blocks a resume
    assert store.owner("exp") == claim.owner and claim.owner.pid == os.getpid()
    store.release("exp")
    store.release("other")
    assert store.owner("exp") is None and not (root / "experiment=exp").exists()


def write_owner(root: Path, experiment: str, *, heartbeat_age_s: float) -> None:
    """The claim of a driver on another machine whose last heartbeat was ``heartbeat_age_s`` ago."""
    folder = root / f"experiment={experiment}"
    folder.mkdir(parents=True, exist_ok=True)
    owner = Owner(host="ray-head-7f9c", machine="ray-head-7f9c||", pid=1, started=time.time() - 3600,
                  heartbeat=time.time() - heartbeat_age_s, token="elsewhere")
    atomic_write(folder / OWNER_FILE, owner.to_bytes())  # as a driver writes it: never half a file


def test_a_driver_on_another_machine_blocks_until_its_heartbeat_goes_stale(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = ParquetStore(root)
    write_owner(root, "exp", heartbeat_age_s=5)
    with pytest.raises(ExperimentInUseError, match=r"host 'ray-head-7f9c', pid 1.*heartbeat was 5 s ago"):
        store.claim("exp")
    write_owner(root, "exp", heartbeat_age_s=120)
    claim = store.claim("exp")
    assert store.claim("exp") is claim  # re-entrant within one process
    assert store.owner("exp") == claim.owner
    store.release("exp")


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def lost(claim: ExperimentClaim) -> bool:
    try:
        claim.check()
    except ExperimentInUseError:
        return True
    return False


def test_a_driver_whose_claim_was_taken_over_stops_writing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = ParquetStore(root)
    claim = store.claim("exp", heartbeat_s=0.05, stale_after_s=0.5)
    callback = ParquetStoreCallback(store, experiment="exp", flush_interval_s=0)
    callback.setup()  # the claim this process already holds
    callback.add("t1", {"lr": 0.1}, {"training_iteration": 1, "loss": 1.0}, "RUNNING")
    assert callback.flush() == 1
    before = claim.owner.heartbeat
    eventually(lambda: store.owner("exp").heartbeat > before)  # the heartbeat runs
    write_owner(root, "exp", heartbeat_age_s=0)  # another driver took over
    eventually(lambda: lost(claim))  # its next heartbeat notices
    callback.add("t1", {"lr": 0.1}, {"training_iteration": 2, "loss": 0.5}, "RUNNING")
    with pytest.raises(ExperimentInUseError, match="took the experiment over"):
        callback.flush()
    assert len(store.results("exp")) == 1
    store.release("exp")
    assert store.owner("exp").token == "elsewhere"  # the other driver's claim stays


def test_run_refuses_an_experiment_a_live_driver_writes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    holder = hold(root, "digits-busy")
    try:
        started = time.monotonic()
        with pytest.raises(ExperimentInUseError, match=r"'digits-busy'.*pid \d+.*Fix: choose another"):
            es.run({"name": "digits-busy", "task": "digits", "num_samples": 1, "store": str(root),
                    "resources": {"num_workers": 0, "cpus_per_worker": 1}, "verbose": 0})
        assert time.monotonic() - started < 30  # refused before Ray starts
    finally:
        holder.kill()
        holder.wait()


def test_claims_work_on_stores_without_file_locks(tmp_path: Path) -> None:
    """Object stores (s3://, gs://) have no locks: a claim is written, then read back."""
    store = ParquetStore("store", filesystem=pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()))
    write_owner(tmp_path / "store", "exp", heartbeat_age_s=1)
    with pytest.raises(ExperimentInUseError, match="heartbeat was 1 s ago"):
        store.claim("exp")
    write_owner(tmp_path / "store", "exp", heartbeat_age_s=600)
    claim = store.claim("exp")
    assert store.owner("exp") == claim.owner
    store.release("exp")
    assert store.owner("exp") is None


@pytest.mark.parametrize(("field", "value", "error", "rule"), [
    ("heartbeat_s", 0, ValueError, "a positive number"),
    ("stale_after_s", -1.0, ValueError, "a positive number"),
    ("heartbeat_s", True, TypeError, "a number"),
    ("stale_after_s", 10, ValueError, "exceed two heartbeats")])
def test_bad_claim_timings_are_clear_errors(tmp_path: Path, field: str, value: object, error: type,
                                            rule: str) -> None:
    with pytest.raises(error, match=f"`{field}` must (be )?{rule}.*Fix: "):
        ParquetStore(tmp_path).claim("exp", **{field: value})  # type: ignore[arg-type]
