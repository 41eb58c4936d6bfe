"""Durable atomic writes: a file (or folder) is either its old or its new complete content.

Every writer of the project that replaces a file goes through :func:`atomic_write` (or
:func:`atomic_path` when a library insists on writing to a path itself, or :func:`atomic_folder`
for a folder built in one go). The new content goes to a temp file in the same folder, which is
flushed and fsynced, renamed over the target with ``os.replace`` and followed by an fsync of the
folder, so that neither a killed process nor a power loss leaves a torn file or loses a rename
that already returned. A failed write removes its temp file; a killed one leaves it behind under
a name no reader takes for data: hidden (leading ``.``) and ending in ``.tmp``
(:func:`is_temp_name`).

Example::

    from efficient_search.durable import atomic_write

    atomic_write("state.json", json.dumps(state))                 # text or bytes
    atomic_write("table.parquet", lambda f: pq.write_table(table, f))   # a function of the file
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow.fs as pafs

TEMP_SUFFIX = ".tmp"
#: fsync on a folder is refused by some filesystems (a few FUSE and network mounts): nothing to do.
_FOLDER_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES}

Content = bytes | bytearray | memoryview | str | Callable[[IO[bytes]], object]


def temp_name(name: str) -> str:
    """The hidden temp name a write of ``name`` uses: ``.<name>.<random>.tmp``."""
    return f".{name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one :func:`temp_name` makes (left behind by a killed writer)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make the entries of ``folder`` (a rename into it, a new file) survive a power loss."""
    try:
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as error:
        if error.errno in _FOLDER_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in _FOLDER_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(handle)


def _fsync_file(path: str | os.PathLike[str]) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _check_content(content: object) -> None:
    if not (isinstance(content, (bytes, bytearray, memoryview, str)) or callable(content)):
        raise TypeError(
            f"`content` must be bytes, str or a function writing to a binary file, but got "
            f"{type(content).__name__}. Fix: pass e.g. json.dumps(state) or "
            "lambda f: pq.write_table(table, f)."
        )


def _write_content(stream: IO[bytes], content: Content, encoding: str) -> None:
    if isinstance(content, str):
        stream.write(content.encode(encoding))
    elif isinstance(content, (bytes, bytearray, memoryview)):
        stream.write(content)
    else:
        content(stream)


def atomic_write(path: str | os.PathLike[str], content: Content, *, encoding: str = "utf-8",
                 filesystem: pafs.FileSystem | None = None) -> str:
    """Replace ``path`` with ``content`` (bytes, text, or a function given the open binary file)
    durably and atomically; returns the path.

    ``filesystem`` is a pyarrow filesystem for stores on object storage (``s3://``, ``gs://``):
    there the temp object is moved into place (an object appears whole once written; there is
    nothing to fsync). A local filesystem, or none, takes the local path.
    """
    _check_content(content)
    if filesystem is not None and not _is_local(filesystem):
        return _atomic_write_remote(os.fspath(path), content, encoding, filesystem)
    with atomic_path(path) as temp:
        # O_EXCL: the temp name is ours alone; 0o666 & umask: readable like any other file
        # (tempfile.mkstemp would make it private to this user, bad on a shared results volume).
        handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(handle, "wb") as stream:
            _write_content(stream, content, encoding)
            stream.flush()
            os.fsync(stream.fileno())
    return os.fspath(path)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temp path next to ``path`` for a library that writes files by name itself (e.g.
    ``safetensors.torch.save_file``); on a clean exit it is fsynced and renamed over ``path``, and
    the folder fsynced. On an error the temp file is removed and ``path`` keeps its old content.

    Example::

        with atomic_path("weights.safetensors") as temp:
            save_file(tensors, temp)
    """
    target = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(target)
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, temp_name(name))
    try:
        yield temp
        if not os.path.isfile(temp):
            raise FileNotFoundError(f"nothing was written to the temp file {temp!r} for {target!r}")
        _fsync_file(temp)
        os.replace(temp, target)
    except BaseException:
        _remove(temp)
        raise
    fsync_folder(folder)


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temp folder next to ``path``; on a clean exit every file in it is fsynced and
    the folder renamed to ``path`` (which must not exist, or be an empty folder). On an error the
    temp folder is removed.

    Example::

        with atomic_folder("cache/model") as temp:
            model.save_pretrained(temp)
    """
    target = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    temp = os.path.join(parent, temp_name(name))
    os.mkdir(temp)
    try:
        yield Path(temp)
        for folder, _, files in os.walk(temp):
            for file in files:
                _fsync_file(os.path.join(folder, file))
            fsync_folder(folder)
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_folder(parent)


def _is_local(filesystem: Any) -> bool:
    import pyarrow.fs as pafs

    return isinstance(filesystem, pafs.LocalFileSystem)


def _atomic_write_remote(path: str, content: Content, encoding: str,
                         filesystem: pafs.FileSystem) -> str:
    folder, _, name = path.rpartition("/")
    filesystem.create_dir(folder, recursive=True)
    temp = f"{folder}/{temp_name(name)}"
    try:
        with filesystem.open_output_stream(temp) as stream:
            _write_content(stream, content, encoding)
        filesystem.move(temp, path)
    except BaseException:
        try:
            filesystem.delete_file(temp)
        except OSError:
            pass
        raise
    return path
