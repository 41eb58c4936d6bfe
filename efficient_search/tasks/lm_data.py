"""Language-modelling data through Hugging Face ``datasets``: local text files, tokenized, packed.

``datasets``' ``text`` loader reads the files (one example per line, line breaks kept) and cuts
the lines, in order and never shuffled, into up to three disjoint contiguous splits:

    | train (the head) | search (``search_fraction``) | validation (the tail ``val_fraction``) |

- ``train``: the training stream, the only text a run learns from;
- ``search``: sub-network selection and importance estimation read only these windows;
- ``validation``: what runs are measured on; neither a search nor training ever reads it.

Each split is tokenized and packed on its own into blocks of ``seq_len + 1`` tokens (inputs and
next-token targets), so no block straddles two splits. The layout is positional, not random: the
same files and fractions give the same splits whatever the seed. Corpora shipped by packages are
first written to local text files, so the same loader serves them and a user's own files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from efficient_search.durable import atomic_write
from efficient_search.tasks.texts import corpus

#: Lines packed together: at most one partial block (< seq_len + 1 tokens) is dropped per batch.
PACK_LINES = 50_000


def corpus_files(name: str, folder: str | os.PathLike[str], max_chars: int,
                 shard_chars: int = 1_000_000) -> list[Path]:
    """Write corpus ``name`` (see :mod:`~efficient_search.tasks.texts`) as text shards, once."""
    out = Path(folder) / name
    out.mkdir(parents=True, exist_ok=True)
    done = out / f"_complete-{max_chars}"
    if not done.exists():
        text = corpus(name, max_chars)
        for i, start in enumerate(range(0, len(text), shard_chars)):
            shard = out / f"{name}-{max_chars}-{i:04d}.txt"
            atomic_write(shard, text[start:start + shard_chars])
        atomic_write(done, b"")  # after the shards: a marker never lists missing text
    return sorted(out.glob(f"{name}-{max_chars}-*.txt"))


def packed_splits(files: Sequence[str | os.PathLike[str]], tokenizer: Any, seq_len: int,
                  val_fraction: float, cache_dir: str | None = None, num_proc: int | None = None,
                  search_fraction: float = 0.0) -> Any:
    """A ``DatasetDict`` of blocks of ``seq_len + 1`` token ids: ``train``, ``validation``, and
    ``search`` when ``search_fraction`` > 0 (the lines just before the validation tail)."""
    from datasets import DatasetDict, load_dataset

    paths = [str(f) for f in files]
    missing = [p for p in paths if not os.path.isfile(p)]
    if not paths or missing:
        raise ValueError(f"Text files {missing or paths!r} do not exist. Fix: give paths of local .txt "
                         "files (nothing is downloaded).")
    if not 0 < val_fraction < 1:
        raise ValueError(f"`val_fraction` must lie in (0, 1), but got {val_fraction!r}.")
    if not 0 <= search_fraction < 1 - val_fraction:
        raise ValueError(f"`search_fraction` must lie in [0, 1 - val_fraction) = [0, {1 - val_fraction:g}), "
                         f"but got {search_fraction!r}. Fix: e.g. search_fraction: 0.05.")
    max_len = getattr(tokenizer, "model_max_length", None)
    if isinstance(max_len, int) and seq_len + 1 > max_len:
        raise ValueError(f"`seq_len` {seq_len} (+1 target) is above the tokenizer's maximum of "
                         f"{max_len}. Fix: seq_len <= {max_len - 1}.")
    lines = load_dataset("text", data_files=paths, split="train", keep_linebreaks=True,
                         cache_dir=cache_dir)
    if round(len(lines) * val_fraction) < 1 or round(len(lines) * (1 - val_fraction)) < 1:
        raise ValueError(f"{len(lines)} lines of text cannot be split {1 - val_fraction:g} / "
                         f"{val_fraction:g} into training and validation text, fewer than seq_len + 1 = "
                         f"{seq_len + 1} tokens each. Fix: more text, or another val_fraction.")
    # A seed although nothing is shuffled: without one `datasets` fingerprints the split from the global
    # numpy state, so the maps below would miss their cache (and write new files) in every process.
    split = lines.train_test_split(test_size=val_fraction, shuffle=False, seed=0)
    parts = {"train": split["train"], "validation": split["test"]}
    if search_fraction > 0:
        head = split["train"].train_test_split(test_size=search_fraction / (1 - val_fraction), shuffle=False,
                                               seed=0)
        parts = {"train": head["train"], "search": head["test"], "validation": split["test"]}
    block = seq_len + 1

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        return {"ids": tokenizer(batch["text"], add_special_tokens=False)["input_ids"]}

    def pack(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        flat = [token for ids in batch["ids"] for token in ids]
        usable = len(flat) // block * block
        return {"input_ids": [flat[i:i + block] for i in range(0, usable, block)]}

    packed = {}
    for name, part in parts.items():
        ids = part.map(tokenize, batched=True, remove_columns=["text"], num_proc=num_proc)
        # Each batch of lines drops its last partial block: large batches keep that loss small.
        blocks = ids.map(pack, batched=True, batch_size=PACK_LINES, remove_columns=["ids"], num_proc=num_proc)
        if len(blocks) == 0:
            raise ValueError(f"The {name} split holds fewer than seq_len + 1 = {block} tokens. Fix: more "
                             f"text, a larger {'search_fraction' if name == 'search' else 'val_fraction'}, "
                             "or a smaller seq_len.")
        packed[name] = blocks.with_format("torch")
    return DatasetDict(packed)
