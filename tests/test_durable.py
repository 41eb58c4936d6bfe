"""Durable atomic writes: writers SIGKILLed mid-write leave the old or the new file, never a torn one.

The crash tests run a real writer in a subprocess (the helper itself, and the Parquet store) and
kill it at random moments, many times; after each kill the target is read back and checked.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from efficient_search.durable import atomic_folder, atomic_path, atomic_write, is_temp_name
from efficient_search.store import ParquetStore

KILLS = 50
STORE_KILLS = 10

# Overwrites ``path`` forever with self-checking payloads of varying size ("<seq> <size> <sha256>\n"
# then the body), written in chunks so that a write takes a while; prints each seq once written.
WRITER = textwrap.dedent("""
    import hashlib, random, sys
    from efficient_search.durable import atomic_write

    path, seq, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    print("ready", flush=True)
    while True:
        seq += 1
        size = rng.choice([0, 100, 1 << 16, 1 << 20, 3 << 20, 6 << 20])
        body = (seq.to_bytes(8, "little") * (size // 8 + 1))[:size]
        head = f"{seq} {size} {hashlib.sha256(body).hexdigest()}\\n".encode()

        def write(stream, head=head, body=body):
            stream.write(head)
            for start in range(0, len(body), 1 << 16):
                stream.write(body[start:start + (1 << 16)])

        atomic_write(path, write)
        print(seq, flush=True)
""")

# Appends batches of rows to one experiment through the real store (small merge thresholds, a new
# metric column now and then so the schema grows and files are compacted); prints
# "begin <rows after>" before each append and "done <rows after>" once it returned.
STORE_WRITER = textwrap.dedent("""
    import random, sys
    from efficient_search.store import ParquetStore, make_row

    root, start, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    store = ParquetStore(root, max_small_files=3, small_file_rows=200)
    context = {"searcher": "random", "scheduler": "fifo", "seed": seed, "hardware": "test"}
    n = start
    print("ready", flush=True)
    while True:
        batch = rng.randint(1, 40)
        extra = {f"m{rng.randint(0, 30)}": 1.0} if rng.random() < 0.2 else {}
        rows = [make_row(trial_id=f"t{n + i}", config={"lr": 0.1 * i},
                         result={"training_iteration": 1, "loss": float(n + i), **extra},
                         status="RUNNING", context=context) for i in range(batch)]
        print("begin", n + batch, flush=True)
        store.append("crash", rows)
        n += batch
        print("done", n, flush=True)
""")


def env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def read_payload(path: Path) -> int:
    """The seq of a complete payload; AssertionError for a torn or mixed one."""
    data = path.read_bytes()
    head, _, body = data.partition(b"\n")
    fields = head.decode(errors="replace").split()
    assert len(fields) == 3, f"torn file: header {head[:80]!r}"
    seq, size, digest = fields
    assert len(body) == int(size), f"torn file: {len(body)} of {size} bytes"
    assert hashlib.sha256(body).hexdigest() == digest, "mixed or corrupt content"
    return int(seq)


def start(script: str, *args: object) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env(),
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def kill(process: subprocess.Popen[str]) -> list[str]:
    process.send_signal(signal.SIGKILL)
    out, _ = process.communicate()
    assert process.returncode == -signal.SIGKILL, process.returncode
    return out.split("\n")


def test_atomic_write_takes_bytes_text_and_functions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.txt"
    atomic_write(target, "one")
    assert target.read_text() == "one"
    atomic_write(target, b"two")
    assert target.read_text() == "two"
    atomic_write(target, lambda f: f.write(b"three"))
    assert target.read_text() == "three"
    assert os.listdir(target.parent) == ["f.txt"]
    assert oct(target.stat().st_mode & 0o077) == oct(0o666 & ~_umask() & 0o077)  # not private
    with pytest.raises(TypeError, match="`content` must be bytes, str or a function"):
        atomic_write(target, 3)  # type: ignore[arg-type]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write(target, b"old")

    def failing(stream: object) -> None:
        stream.write(b"half")  # type: ignore[attr-defined]
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, failing)
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(target) as temp:
        Path(temp).write_bytes(b"half")
        raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_folder(target) as temp:
        (temp / "config.json").write_text("{}")
        raise RuntimeError("build failed")
    assert os.listdir(tmp_path) == []
    with atomic_folder(target) as temp:
        (temp / "config.json").write_text("{}")
        (temp / "weights").mkdir()
        (temp / "weights" / "a.bin").write_bytes(b"w")
    assert (target / "weights" / "a.bin").read_bytes() == b"w" and os.listdir(tmp_path) == ["model"]


def test_a_writer_killed_at_random_points_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    rng = random.Random(0)
    target = tmp_path / "data.bin"
    atomic_write(target, b"0 0 " + hashlib.sha256(b"").hexdigest().encode() + b"\n")
    seq, torn_temps, reads = 0, 0, 0
    for attempt in range(KILLS):
        process = start(WRITER, target, seq, attempt)
        deadline = time.monotonic() + rng.uniform(0.0, 0.2)
        while time.monotonic() < deadline:  # a reader racing the writer sees whole files only
            read_payload(target)
            reads += 1
        printed = [int(line) for line in kill(process) if line.strip()]
        done = printed[-1] if printed else seq
        now = read_payload(target)
        # The write the kill interrupted either landed whole (renamed before the kill) or not at all.
        assert now in (done, done + 1), (attempt, seq, done, now)
        seq = now
        names = os.listdir(tmp_path)
        assert all(n == target.name or is_temp_name(n) for n in names), names
        torn_temps += len(names) - 1
        for name in names:
            if name != target.name:
                os.remove(tmp_path / name)  # a leftover of this kill: counted, then cleared
    assert seq > KILLS, f"the writers made too little progress ({seq} writes)"
    # Proof the kills landed inside writes (each such kill leaves its temp file), not between them.
    assert torn_temps >= KILLS // 4, torn_temps
    assert reads > KILLS


def test_a_store_writer_killed_at_random_points_leaves_a_readable_store(tmp_path: Path) -> None:
    rng = random.Random(1)
    root = tmp_path / "store"
    rows, mid_append = 0, 0
    for attempt in range(STORE_KILLS):
        process = start(STORE_WRITER, root, rows, attempt)
        time.sleep(rng.uniform(0.05, 0.8))
        lines = [line.split() for line in kill(process) if line.strip()]
        done = max([int(n) for word, n in lines if word == "done"], default=rows)
        begun = max([int(n) for word, n in lines if word == "begin"], default=rows)
        mid_append += begun > done
        store = ParquetStore(root)
        frame = store.results("crash")
        ids = sorted(int(t[1:]) for t in frame["trial_id"])
        # Rows of the interrupted append are all there or all missing; none doubled or lost.
        assert ids in (list(range(done)), list(range(begun))), (attempt, done, begun, len(ids))
        assert len(store.keys("crash")) == len(ids)
        rows = len(ids)
        folder = root / "experiment=crash"
        for name in os.listdir(folder):
            if name.endswith(".parquet"):
                pq.read_table(folder / name)  # every data file is whole
            else:
                assert is_temp_name(name) or name.startswith("_"), name
    assert rows > 0 and mid_append >= 2, (rows, mid_append)
