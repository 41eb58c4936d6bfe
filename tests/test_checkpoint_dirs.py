"""Checkpoint folders a killed or stopped trial process leaves behind are deleted later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from efficient_search.train import session as session_module
from efficient_search.train.session import CHECKPOINT_PREFIX, new_checkpoint_dir, remove_orphan_checkpoints


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _folder(parent: Path, pid: int, age_s: float, host: str | None = None) -> Path:
    folder = parent / f"{CHECKPOINT_PREFIX}{pid}.{host or session_module._host()}-abc"
    folder.mkdir()
    (folder / "state.pt").write_bytes(b"x")
    old = os.stat(folder).st_mtime - age_s
    os.utime(folder, (old, old))
    return folder


def test_only_old_folders_of_exited_processes_are_deleted(tmp_path: Path) -> None:
    dead = _dead_pid()
    orphan = _folder(tmp_path, dead, age_s=7200)
    fresh = tmp_path / f"{CHECKPOINT_PREFIX}{dead}.{session_module._host()}-new"
    fresh.mkdir()  # just made: its process may have exited before reporting it only seconds ago
    elsewhere = _folder(tmp_path, dead, age_s=7200, host="othermachine")  # a shared folder: not our pid
    live = _folder(tmp_path, os.getpid(), age_s=7200)
    foreign = tmp_path / "es-ckpt-legacyname"
    foreign.mkdir()
    other = tmp_path / "unrelated"
    other.mkdir()
    huge = _folder(tmp_path, 10**20, age_s=7200)  # no such process id: a name, not one of ours
    link = tmp_path / f"{CHECKPOINT_PREFIX}{dead}.{session_module._host()}-link"
    link.symlink_to(other)
    assert remove_orphan_checkpoints(str(tmp_path)) == [str(orphan)]
    assert not orphan.exists()
    assert all(p.exists() for p in (fresh, elsewhere, live, foreign, other, huge, link))
    assert remove_orphan_checkpoints(str(tmp_path / "missing")) == []  # best-effort: no error


def test_the_first_folder_of_a_process_sweeps_the_parent(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ES_CHECKPOINT_TMP", str(tmp_path))
    monkeypatch.setattr(session_module, "_swept", set())
    orphan = _folder(tmp_path, _dead_pid(), age_s=7200)
    made = new_checkpoint_dir()
    assert not orphan.exists()
    assert Path(made).parent == tmp_path
    assert Path(made).name.startswith(f"{CHECKPOINT_PREFIX}{os.getpid()}.{session_module._host()}-")
    second = _folder(tmp_path, _dead_pid(), age_s=7200)
    new_checkpoint_dir()  # once per process: a long trial does not rescan per epoch
    assert second.exists()
