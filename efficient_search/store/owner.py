"""One live driver per experiment: the claim a driver holds on the experiment it writes.

Drivers may share a store root (one results volume or bucket for every job) and write different
experiments at once; two drivers writing the *same* experiment would trip over each other's merges
and compactions (a file deleted under the other's feet, rows written twice). So a driver claims its
experiment before its first write and gives the claim back when its run ends
(:meth:`ParquetStore.claim <efficient_search.store.ParquetStore.claim>`, used by
:func:`efficient_search.run` and :class:`~efficient_search.store.ParquetStoreCallback`).

The claim is ``experiment=<name>/_owner.json``: the driver's host, pid, process start time and a
heartbeat it rewrites every ``HEARTBEAT_S`` seconds. A recorded owner is live when

- it runs on this machine (same host name, boot and pid namespace) and its process still runs
  (same pid, same start time): a resume right after a crash or a SIGKILL is never blocked;
- it runs elsewhere and its heartbeat is younger than ``STALE_AFTER_S`` seconds: a driver on a
  node that died blocks a resume from another node for at most that long.

A live owner makes :meth:`claim` raise :class:`ExperimentInUseError`; a stopped one is taken over.
On local and NFS volumes the check-and-write runs under an ``flock`` of ``_owner.lock``; object
stores (``s3://``, ``gs://``) have no locks, so there a claim is written and read back after
``SETTLE_S`` seconds, which narrows (but cannot close) the window in which two drivers starting the
same experiment at the same moment both win.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import psutil
import pyarrow.fs as pafs

from efficient_search.durable import atomic_write

logger = logging.getLogger(__name__)

OWNER_FILE = "_owner.json"
LOCK_FILE = "_owner.lock"
#: Seconds between two heartbeats of a live owner.
HEARTBEAT_S = 10.0
#: An owner on another machine whose heartbeat is older than this counts as stopped.
STALE_AFTER_S = 60.0
#: Object stores: seconds between writing a claim and reading it back.
SETTLE_S = 1.0
OWNER_FORMAT = 1
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class ExperimentInUseError(ValueError):
    """Another live driver writes this experiment (or took it over from this one)."""

    def __init__(self, message: str, *, experiment: str, owner: Owner | None):
        super().__init__(message)
        self.experiment = experiment
        self.owner = owner


def machine_id() -> str:
    """Host name, boot id and pid namespace: two processes with the same id see each other's pids."""
    parts = [socket.gethostname()]
    for path, read in (("/proc/sys/kernel/random/boot_id", _read_text), ("/proc/self/ns/pid", os.readlink)):
        try:
            parts.append(read(path).strip())
        except OSError:
            parts.append("")
    return "|".join(parts)


def _read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read()


@dataclass(frozen=True)
class Owner:
    """Who holds a claim, as recorded in ``_owner.json``."""

    host: str
    machine: str
    """:func:`machine_id` of the owner's process."""
    pid: int
    started: float
    """The owner process's start time (seconds since the epoch), to tell a reused pid apart."""
    heartbeat: float
    """When the owner last confirmed its claim (seconds since the epoch, the owner's clock)."""
    token: str
    """Unique per claim: tells this claim from a later one of the same process."""

    @classmethod
    def this_process(cls, token: str) -> Owner:
        return cls(host=socket.gethostname(), machine=machine_id(), pid=os.getpid(),
                   started=psutil.Process().create_time(), heartbeat=time.time(), token=token)

    @classmethod
    def parse(cls, data: bytes) -> Owner | None:
        """The owner in a file's bytes; None for a file this version cannot read."""
        try:
            raw = json.loads(data.decode())
            return cls(host=str(raw["host"]), machine=str(raw["machine"]), pid=int(raw["pid"]),
                       started=float(raw["started"]), heartbeat=float(raw["heartbeat"]),
                       token=str(raw["token"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None

    def to_bytes(self) -> bytes:
        return json.dumps({"format": OWNER_FORMAT, **asdict(self)}, indent=2).encode()

    def live_because(self, *, stale_after_s: float) -> str | None:
        """Why this owner counts as live (for the error message), or None when it has stopped."""
        if self.machine == machine_id():
            try:
                process = psutil.Process(self.pid)
                same = abs(process.create_time() - self.started) < 1.0
                if same and process.status() != psutil.STATUS_ZOMBIE:
                    return "its process is still running on this machine"
            except psutil.NoSuchProcess:
                pass
            except psutil.AccessDenied:
                return "its process is still running on this machine"
            return None
        age = time.time() - self.heartbeat
        if age < stale_after_s:
            return (f"its last heartbeat was {max(age, 0.0):.0f} s ago (a driver on another machine "
                    f"counts as stopped {stale_after_s:.0f} s after its last one)")
        return None

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"host {self.host!r}, pid {self.pid}, started {started}"


class ExperimentClaim:
    """This process's claim on one experiment; made by :func:`claim`, never directly.

    A thread renews the heartbeat while the claim is held. :meth:`check` raises
    :class:`ExperimentInUseError` once another driver has taken the experiment over (after this
    process went silent for longer than ``stale_after_s``).
    """

    def __init__(self, filesystem: pafs.FileSystem, folder: str, *, experiment: str, store_root: str,
                 heartbeat_s: float, stale_after_s: float):
        self.experiment = experiment
        self.store_root = store_root
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self._fs = filesystem
        self._folder = folder
        self._local = isinstance(filesystem, pafs.LocalFileSystem)
        self._owner = Owner.this_process(uuid.uuid4().hex)
        self._lost_to: Owner | None = None
        self._lost = False
        self._stop = threading.Event()
        self._mutex = threading.Lock()  # NFS emulates flock with POSIX locks, which a process shares
        self._thread: threading.Thread | None = None

    @property
    def owner(self) -> Owner:
        return self._owner

    # -- the owner file -------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return f"{self._folder}/{name}"

    def _read(self) -> Owner | None:
        return read_owner(self._fs, self._folder)

    def _write(self, owner: Owner) -> None:
        atomic_write(self._path(OWNER_FILE), owner.to_bytes(), filesystem=self._fs)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            if not self._local:
                yield
                return
            os.makedirs(self._folder, exist_ok=True)
            handle = os.open(self._path(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                except OSError as error:
                    if error.errno not in _NO_LOCKS:
                        raise
                    logger.warning("The store %r does not support file locks; claims of experiment "
                                   "%r are checked without one.", self.store_root, self.experiment)
                yield
            finally:
                os.close(handle)  # releases the lock

    # -- claiming -------------------------------------------------------------------------
    def acquire(self) -> None:
        """Record this process as the owner; :class:`ExperimentInUseError` if another is live."""
        with self._locked():
            current = self._read()
            if current is not None and current.token != self._owner.token:
                reason = current.live_because(stale_after_s=self.stale_after_s)
                if reason is not None:
                    raise self._in_use(current, reason)
                print(f"efficient-search: {self.experiment}: taking over from a stopped driver "
                      f"({current.describe()}).", flush=True)
            self._owner = replace(self._owner, heartbeat=time.time())
            self._write(self._owner)
        if not self._local:
            time.sleep(SETTLE_S)
            current = self._read()
            if current is None or current.token != self._owner.token:
                raise self._in_use(current, "it claimed the experiment at the same moment")
        self._thread = threading.Thread(target=self._beat_until_released, daemon=True,
                                        name=f"efficient-search-claim-{self.experiment}")
        self._thread.start()

    def _in_use(self, other: Owner | None, reason: str) -> ExperimentInUseError:
        who = other.describe() if other is not None else "unknown"
        return ExperimentInUseError(
            f"Experiment {self.experiment!r} in the store {self.store_root!r} is being written by "
            f"another driver ({who}): {reason}. Two drivers writing one experiment would double "
            "and drop rows. Fix: choose another experiment `name`, or resume this one after that "
            "driver stops.",
            experiment=self.experiment, owner=other)

    def _beat_until_released(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self._locked():
                    current = self._read()
                    if current is not None and current.token != self._owner.token:
                        self._lost, self._lost_to = True, current
                        return
                    # None: someone removed the file (or the folder); nobody else holds it.
                    self._owner = replace(self._owner, heartbeat=time.time())
                    self._write(self._owner)
            except (OSError, ValueError) as error:  # a hiccup of the volume: try again next beat
                logger.warning("Heartbeat of experiment %r failed: %s", self.experiment, error)

    def check(self) -> None:
        """Raise :class:`ExperimentInUseError` if another driver has taken the experiment over."""
        if self._lost:
            raise self._in_use(self._lost_to, "it took the experiment over while this driver went "
                                              f"silent for more than {self.stale_after_s:.0f} s")

    def release(self) -> None:
        """Remove the claim (if it is still this process's) and stop the heartbeat."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._locked():
            current = self._read()
            if current is not None and current.token == self._owner.token:
                self._fs.delete_file(self._path(OWNER_FILE))
            if self._local:
                self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        """A run that failed before its first write leaves no empty experiment folder behind."""
        try:
            if os.listdir(self._folder) == [LOCK_FILE]:
                os.remove(self._path(LOCK_FILE))
                os.rmdir(self._folder)
        except OSError:
            pass


_CLAIMS: dict[str, ExperimentClaim] = {}
_CLAIMS_LOCK = threading.Lock()


def claim(filesystem: pafs.FileSystem, folder: str, *, experiment: str, store_root: str,
          heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S) -> ExperimentClaim:
    """This process's claim on the experiment stored in ``folder``, made now unless already held."""
    for name, value in (("heartbeat_s", heartbeat_s), ("stale_after_s", stale_after_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"`{name}` must be a number of seconds, but got {value!r} "
                            f"({type(value).__name__}). Fix: e.g. {name}=30.")
        if not 0 < value < float("inf"):
            raise ValueError(f"`{name}` must be a positive number of seconds, but got {value!r}. "
                             f"Fix: e.g. {name}=30.")
    if stale_after_s <= 2 * heartbeat_s:
        raise ValueError(f"`stale_after_s` must exceed two heartbeats (2 x {heartbeat_s}), but got "
                         f"{stale_after_s}. Fix: e.g. stale_after_s={6 * heartbeat_s:g}.")
    with _CLAIMS_LOCK:
        held = _CLAIMS.get(folder)
        if held is not None:
            return held
        new = ExperimentClaim(filesystem, folder, experiment=experiment, store_root=store_root,
                              heartbeat_s=heartbeat_s, stale_after_s=stale_after_s)
        new.acquire()
        _CLAIMS[folder] = new
        return new


def release(folder: str) -> None:
    """Give up this process's claim on the experiment stored in ``folder``; nothing if none."""
    with _CLAIMS_LOCK:
        held = _CLAIMS.pop(folder, None)
    if held is not None:
        held.release()


def read_owner(filesystem: pafs.FileSystem, folder: str) -> Owner | None:
    """The recorded owner of the experiment stored in ``folder`` (None when unclaimed)."""
    path = f"{folder}/{OWNER_FILE}"
    try:
        with filesystem.open_input_stream(path) as stream:
            data = stream.read()
    except FileNotFoundError:
        return None
    owner = Owner.parse(data)
    if owner is None:
        logger.warning("Unreadable owner file %s: treated as no owner.", path)
    return owner
