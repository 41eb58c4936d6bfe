"""Language-modelling data: local text through `datasets`, tokenized and packed."""

from __future__ import annotations

import pytest
import torch

from efficient_search.tasks.lm_data import corpus_files, packed_splits
from efficient_search.tasks.supernets import train_tokenizer
from efficient_search.tasks.texts import load_text


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(load_text(100_000), vocab_size=300)


def test_corpus_becomes_packed_train_and_held_out_blocks(tmp_path, tokenizer) -> None:
    files = corpus_files("shakespeare", tmp_path / "text", max_chars=60_000, shard_chars=25_000)
    assert len(files) == 3 and corpus_files("shakespeare", tmp_path / "text", 60_000) == files
    assert "".join(f.read_text() for f in files) == load_text(60_000)
    splits = packed_splits(files, tokenizer, seq_len=32, val_fraction=0.1,
                           cache_dir=str(tmp_path / "hf"))
    train, val = splits["train"][:]["input_ids"], splits["validation"][:]["input_ids"]
    assert train.shape[1] == val.shape[1] == 33 and train.dtype == torch.long
    assert len(val) < len(train) / 5
    # Validation is the contiguous tail of the text: its first block decodes to text from the end.
    tail = load_text(60_000)[-15_000:]
    assert tokenizer.decode(val[0][:10]) in tail


def test_bad_lm_data_input(tmp_path, tokenizer) -> None:
    with pytest.raises(ValueError, match=r"do not exist\. Fix: give paths of local \.txt"):
        packed_splits([str(tmp_path / "missing.txt")], tokenizer, 32, 0.1)
    (tmp_path / "tiny.txt").write_text("a few words\n")
    with pytest.raises(ValueError, match=r"fewer than seq_len \+ 1 = 33 tokens"):
        packed_splits([str(tmp_path / "tiny.txt")], tokenizer, 32, 0.5, cache_dir=str(tmp_path / "hf"))
    with pytest.raises(ValueError, match=r"`val_fraction` must lie in \(0, 1\)"):
        packed_splits([str(tmp_path / "tiny.txt")], tokenizer, 32, 1.5)
    tokenizer.model_max_length = 64
    with pytest.raises(ValueError, match=r"above the tokenizer's maximum of 64\. Fix: seq_len <= 63"):
        packed_splits([str(tmp_path / "tiny.txt")], tokenizer, 64, 0.1)


def test_three_splits_are_disjoint_at_the_token_level(tmp_path, tokenizer) -> None:
    """Every token of every block comes from one split's lines: train, then search, then validation."""
    import re

    lines = [f"<L{n:05d}> {load_text(2_000)[n % 1_500:n % 1_500 + 40].strip()}\n" for n in range(2_000)]
    (tmp_path / "numbered.txt").write_text("".join(lines))
    splits = packed_splits([str(tmp_path / "numbered.txt")], tokenizer, seq_len=32, val_fraction=0.1,
                           cache_dir=str(tmp_path / "hf"), search_fraction=0.05)
    assert set(splits) == {"train", "search", "validation"}
    numbers = {}
    for name in ("train", "search", "validation"):
        blocks = splits[name][:]["input_ids"]
        text = "".join(tokenizer.decode(block) for block in blocks)
        numbers[name] = sorted(int(n) for n in re.findall(r"<L(\d{5})>", text.replace(" ", "")))
    assert numbers["train"][-1] < numbers["search"][0] <= numbers["search"][-1] < numbers["validation"][0]
    as_rows = {name: {tuple(b.tolist()) for b in splits[name][:]["input_ids"]} for name in numbers}
    assert not as_rows["train"] & as_rows["search"] and not as_rows["search"] & as_rows["validation"]
    assert not as_rows["train"] & as_rows["validation"]
    with pytest.raises(ValueError, match=r"`search_fraction` must lie in \[0, 1 - val_fraction\)"):
        packed_splits([str(tmp_path / "numbered.txt")], tokenizer, 32, 0.1, search_fraction=0.95)


def test_task_splits_share_no_block_and_are_fixed() -> None:
    """The tasks' splits of the plays: no block of one split appears in another; the layout is fixed."""
    from efficient_search.tasks.lm_splits import lm_splits

    options = {"model": "tiny-shakespeare", "text": "shakespeare", "files": None, "max_chars": 5_000_000,
               "seq_len": 128, "val_fraction": 0.1, "search_fraction": 0.05}
    splits = lm_splits(options)
    rows = [{tuple(b.tolist()) for b in part} for part in splits]
    assert all(len(part) > 100 for part in rows)
    assert not rows[0] & rows[1] and not rows[1] & rows[2] and not rows[0] & rows[2]
    total = sum(len(part) for part in splits)
    assert 0.03 < len(splits.search) / total < 0.07 and 0.08 < len(splits.validation) / total < 0.12
    with pytest.raises(ValueError, match=r"`task_options.search_fraction` must be > 0"):
        lm_splits({**options, "search_fraction": 0})
