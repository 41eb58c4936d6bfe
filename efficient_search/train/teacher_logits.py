"""Offline teacher logits: the frozen teacher's top-k logits per position, computed once, read lazily.

Distilling from a stored top-k costs the student no teacher forward pass. The teacher runs once over
the packed blocks (``seq_len + 1`` token ids each) and one safetensors file keeps, per block and
position, the k largest logits (``values``) and their vocabulary ids (``indices``), with metadata that
ties it to the data (a fingerprint of the ids) and the teacher (its vocabulary size):

    path = precompute_teacher_topk(teacher, splits["train"]["input_ids"], "topk.safetensors", k=64)
    topk = TeacherTopK.open(path)
    topk.check(blocks_fingerprint(splits["train"]["input_ids"]), seq_len=512, vocab_size=49152)
    values, ids = topk.batch(block_ids)                        # (B, seq_len, k) float32 / int64
    loss = topk_distillation_loss(student(x[:, :-1]).logits, values, ids, x[:, 1:])
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from efficient_search.durable import atomic_path
from efficient_search.tasks.supernets import build_once, cache_root

FORMAT = "efficient-search/teacher-topk"
VERSION = 1
FILE_NAME = "teacher_topk.safetensors"
FINGERPRINT_CHARS = 16


def _rows(blocks: Any, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of ``blocks`` as a CPU int64 tensor (a tensor, a datasets column, a list)."""
    rows = blocks[start:stop]
    if isinstance(rows, Mapping):  # a torch-formatted datasets.Dataset gives {"input_ids": ...}
        rows = rows["input_ids"]
    if isinstance(rows, Sequence) and rows and isinstance(rows[0], torch.Tensor):
        rows = torch.stack(list(rows))
    rows = torch.as_tensor(rows)
    if rows.dtype.is_floating_point or rows.dtype == torch.bool or rows.dim() != 2:
        raise TypeError(f"`blocks` must give rows of integer token ids, (N, seq_len + 1), but rows "
                        f"{start}:{stop} are {rows.dtype} of shape {tuple(rows.shape)}. Fix: pass e.g. "
                        "the packed split's `input_ids` column.")
    return rows.to(device="cpu", dtype=torch.int64)


def _chunks(blocks: Any, size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, rows) for consecutive chunks of ``size`` rows."""
    for start in range(0, len(blocks), size):
        yield start, _rows(blocks, start, min(start + size, len(blocks)))


def _block_width(blocks: Any) -> int:
    if len(blocks) == 0:
        raise ValueError("`blocks` is empty. Fix: pass at least one block of seq_len + 1 token ids.")
    width = _rows(blocks, 0, 1).shape[1]
    if width < 2:
        raise ValueError(f"Blocks hold {width} token id, but need seq_len + 1 >= 2 (inputs and targets).")
    return width


def blocks_fingerprint(blocks: Any) -> str:
    """A short sha256 of the blocks' shape and int64 token ids: equal ids give equal fingerprints."""
    width = _block_width(blocks)
    digest = hashlib.sha256(f"{len(blocks)}x{width}".encode())
    for _, rows in _chunks(blocks, 1024):
        digest.update(rows.contiguous().numpy().tobytes())
    return digest.hexdigest()[:FINGERPRINT_CHARS]


@torch.no_grad()
def precompute_teacher_topk(teacher: torch.nn.Module, blocks: Any, path: str | os.PathLike[str], *, k: int,
                            batch_size: int = 8, dtype: torch.dtype = torch.float16,
                            progress: bool = True) -> Path:
    """Write the teacher's top-k logits on ``blocks[:, :-1]`` to one safetensors file at ``path``.

    ``blocks``: an int tensor ``(N, seq_len + 1)`` or anything indexable by row slices that gives
    such rows (a packed split's ``input_ids``). The file holds ``values`` ``(N, seq_len, k)`` in
    ``dtype`` and ``indices`` ``(N, seq_len, k)`` int32, sorted by decreasing logit, and is replaced
    atomically. Both tensors are assembled in memory first: ``N * seq_len * k * 6`` bytes in float16.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be an integer >= 1, but got {k!r}. Fix: e.g. k=64.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, but got {batch_size!r}.")
    if not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating-point dtype, but got {dtype}. Fix: torch.float16.")
    n_blocks, seq_len = len(blocks), _block_width(blocks) - 1
    device = next(teacher.parameters()).device
    was_training = teacher.training
    teacher.eval()
    values = torch.empty((n_blocks, seq_len, k), dtype=dtype)
    indices = torch.empty((n_blocks, seq_len, k), dtype=torch.int32)
    digest = hashlib.sha256(f"{n_blocks}x{seq_len + 1}".encode())
    vocab_size = 0
    n_batches = -(-n_blocks // batch_size)
    every = max(1, n_batches // 10)
    started = time.perf_counter()
    try:
        for batch, (start, rows) in enumerate(_chunks(blocks, batch_size)):
            if rows.shape[1] != seq_len + 1:
                raise ValueError(f"Block {start} holds {rows.shape[1]} token ids, but the first holds "
                                 f"{seq_len + 1}: all blocks must be seq_len + 1 long.")
            digest.update(rows.contiguous().numpy().tobytes())
            output = teacher(rows[:, :-1].to(device))
            logits = getattr(output, "logits", output)                  # (B, seq_len, vocab)
            vocab_size = logits.shape[-1]
            if k > vocab_size:
                raise ValueError(f"`k` {k} is above the teacher's vocabulary of {vocab_size}. Fix: "
                                 f"k <= {vocab_size}.")
            top = torch.topk(logits, k, dim=-1)                          # sorted, largest first
            values[start:start + len(rows)] = top.values.to("cpu", dtype)
            indices[start:start + len(rows)] = top.indices.to("cpu", torch.int32)
            if progress and ((batch + 1) % every == 0 or batch + 1 == n_batches):
                print(f"efficient-search: teacher top-{k} logits {start + len(rows)}/{n_blocks} blocks "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        teacher.train(was_training)
    metadata = {"format": FORMAT, "version": str(VERSION), "k": str(k), "seq_len": str(seq_len),
                "n_blocks": str(n_blocks), "vocab_size": str(vocab_size),
                "fingerprint": digest.hexdigest()[:FINGERPRINT_CHARS]}
    return _save_atomically({"values": values, "indices": indices}, metadata, Path(path))


def _save_atomically(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> Path:
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


class TeacherTopK:
    """A lazily read top-k teacher file: each :meth:`batch` reads only the rows it needs.

    Picklable for data-loader or Ray workers: only the path travels, each process reopens the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle: Any = None
        metadata = self._file().metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a teacher top-k file (metadata format "
                             f"{metadata.get('format')!r}, expected {FORMAT!r}). Fix: write it with "
                             "precompute_teacher_topk.")
        if metadata.get("version") != str(VERSION):
            raise ValueError(f"{self.path} has teacher top-k format version {metadata.get('version')!r}, "
                             f"this code reads {VERSION}. Fix: recompute it with precompute_teacher_topk.")
        self.k = int(metadata["k"])
        self.seq_len = int(metadata["seq_len"])
        self.n_blocks = int(metadata["n_blocks"])
        self.vocab_size = int(metadata["vocab_size"])
        self.fingerprint = metadata["fingerprint"]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TeacherTopK:
        """The file at ``path``, written by :func:`precompute_teacher_topk`."""
        if not Path(path).is_file():
            raise ValueError(f"No teacher top-k file at {path}. Fix: write it with precompute_teacher_topk.")
        return cls(path)

    def _file(self) -> Any:
        if self._handle is None:
            self._handle = safe_open(str(self.path), framework="pt")
        return self._handle

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None}

    def __len__(self) -> int:
        return self.n_blocks

    def __repr__(self) -> str:
        return (f"TeacherTopK({str(self.path)!r}, n_blocks={self.n_blocks}, seq_len={self.seq_len}, "
                f"k={self.k}, vocab_size={self.vocab_size})")

    def batch(self, block_indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(values float32, indices int64), each ``(len(block_indices), seq_len, k)``, in that order."""
        ids = torch.as_tensor(block_indices).reshape(-1)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise TypeError(f"`block_indices` must be integer block numbers, but have dtype {ids.dtype}.")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.n_blocks):
            raise ValueError(f"`block_indices` span [{int(ids.min())}, {int(ids.max())}], but {self.path} "
                             f"holds blocks 0..{self.n_blocks - 1}. Fix: index the blocks it holds.")
        handle = self._file()
        values, indices = handle.get_slice("values"), handle.get_slice("indices")
        rows = [int(i) for i in ids]
        if not rows:
            return (torch.empty((0, self.seq_len, self.k)),
                    torch.empty((0, self.seq_len, self.k), dtype=torch.int64))
        return (torch.cat([values[i:i + 1] for i in rows]).float(),
                torch.cat([indices[i:i + 1] for i in rows]).long())

    def check(self, blocks: str | int, *, seq_len: int | None = None, vocab_size: int | None = None) -> None:
        """Raise ValueError unless this file fits the data and model.

        ``blocks``: the data's :func:`blocks_fingerprint` (str), or only its number of blocks (int).
        """
        fix = "Fix: recompute the teacher's top-k for this data and teacher (precompute_teacher_topk)."
        if isinstance(blocks, str) and blocks != self.fingerprint:
            raise ValueError(f"{self.path} was computed on blocks with fingerprint {self.fingerprint}, "
                             f"but these blocks have {blocks}: another data set. {fix}")
        if isinstance(blocks, int) and blocks != self.n_blocks:
            raise ValueError(f"{self.path} holds {self.n_blocks} blocks, but the data has {blocks}. {fix}")
        if seq_len is not None and seq_len != self.seq_len:
            raise ValueError(f"{self.path} has seq_len {self.seq_len}, but the data has {seq_len}. {fix}")
        if vocab_size is not None and vocab_size != self.vocab_size:
            raise ValueError(f"{self.path} comes from a teacher with a vocabulary of {self.vocab_size}, but "
                             f"the student has {vocab_size}: distillation needs one tokenizer. {fix}")


def teacher_topk_cached(model_path: str, blocks: Any, *, k: int, key: str, batch_size: int = 8,
                        device: str | torch.device | None = None,
                        dtype: torch.dtype = torch.float16) -> TeacherTopK:
    """The top-k of the teacher at ``model_path`` on ``blocks``, computed once per ``key`` and opened.

    Stored under ``cache_root() / "teacher-topk" / key``; ``key`` names the teacher, the data options
    and ``k`` (the caller derives it). Concurrent processes wait for the one computing it. The
    teacher runs on ``device`` (default: CUDA when available) only when the file is computed.
    """
    if not key or "/" in key or key in (".", ".."):
        raise ValueError(f"`key` must be a non-empty folder name without '/', but got {key!r}.")
    folder = cache_root() / "teacher-topk" / key

    def build(out: Path) -> None:
        from transformers import AutoModelForCausalLM

        where = device or ("cuda" if torch.cuda.is_available() else "cpu")
        print(f"efficient-search: computing the teacher's top-{k} logits of {model_path} on {where} "
              f"(once, cached as {folder}) ...", flush=True)
        teacher: torch.nn.Module = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        teacher.to(where)
        file = precompute_teacher_topk(teacher, blocks, out / FILE_NAME, k=k, batch_size=batch_size,
                                       dtype=dtype)
        # build_once treats config.json as "complete": here it describes the file.
        metadata = TeacherTopK.open(file)
        (out / "config.json").write_text(json.dumps(
            {"format": FORMAT, "version": VERSION, "model_path": str(model_path), "k": k,
             "seq_len": metadata.seq_len, "n_blocks": metadata.n_blocks,
             "vocab_size": metadata.vocab_size, "fingerprint": metadata.fingerprint}, indent=1))

    topk = TeacherTopK.open(build_once(folder, build) / FILE_NAME)
    fingerprint = blocks_fingerprint(blocks)
    if topk.fingerprint != fingerprint or topk.k != k:
        raise ValueError(f"The cached {topk!r} (blocks {topk.fingerprint}) does not fit top-{k} of blocks "
                         f"{fingerprint}: `key` {key!r} was reused for other data or k. Fix: derive `key` "
                         "from the teacher, every data option and k, or delete the folder to recompute.")
    return topk
