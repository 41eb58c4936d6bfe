"""The three packed text splits a language-model task reads, from its options, cached per process.

Both the ``subnetwork`` search task and the ``pretrain`` task read the same layout (see
:func:`~efficient_search.tasks.lm_data.packed_splits`), so a searched sub-network is selected on
``search`` windows, trained on ``train`` and measured on ``validation``, three disjoint parts of
the text:

    splits = lm_splits({"model": "smollm2-135m", "text": "shakespeare", "files": None,
                        "max_chars": 1_000_000, "seq_len": 128, "val_fraction": 0.1,
                        "search_fraction": 0.05})
    splits.train, splits.search, splits.validation        # (N, seq_len + 1) int64 each
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import torch

from efficient_search.tasks.lm_data import corpus_files, packed_splits
from efficient_search.tasks.supernets import cache_root, load_supernet, resolve_supernet

#: The options that decide the splits.
SPLIT_OPTIONS = ("model", "text", "files", "max_chars", "seq_len", "val_fraction", "search_fraction")


class Splits(NamedTuple):
    train: torch.Tensor
    search: torch.Tensor
    validation: torch.Tensor


#: Where a task may score: the held-out ``validation`` blocks, or ``search`` blocks (for selection).
SCORED_SPLITS = ("search", "validation")


def scored_blocks(splits: Splits, split: str, calibration: int, count: int) -> torch.Tensor:
    """Up to ``count`` blocks to score on: ``validation``'s first, or the ``search`` blocks after the
    first ``calibration`` (those importance estimation reads), so selection never scores on them."""
    if split not in SCORED_SPLITS:
        raise ValueError(f"A task scores on one of {', '.join(SCORED_SPLITS)}, but got {split!r}. "
                         "Fix: validation (held out) or search (to select on).")
    if split == "validation":
        return splits.validation[:count]
    return splits.search[calibration:calibration + count]


def split_key(options: Mapping[str, Any]) -> str:
    """The options that decide the splits, as one JSON string (a cache key)."""
    return json.dumps({k: options.get(k) for k in SPLIT_OPTIONS}, sort_keys=True)


@lru_cache(maxsize=2)
def _load(key: str) -> Splits:
    options = json.loads(key)
    _, tokenizer = load_supernet(str(resolve_supernet(options["model"])))
    files = options["files"] or corpus_files(options["text"], cache_root() / "corpora", options["max_chars"])
    splits = packed_splits(files, tokenizer, options["seq_len"], options["val_fraction"],
                           cache_dir=str(cache_root() / "datasets"),
                           search_fraction=options["search_fraction"])
    return Splits(*(splits[name][:]["input_ids"] for name in ("train", "search", "validation")))


def lm_splits(options: Mapping[str, Any]) -> Splits:
    """(train, search, validation) blocks of the text ``options`` describe, tokenized by the model's."""
    if not options.get("search_fraction"):
        raise ValueError(f"`task_options.search_fraction` must be > 0 (the search split's share of the "
                         f"text), but got {options.get('search_fraction')!r}. Fix: search_fraction: 0.05.")
    return _load(split_key(options))
