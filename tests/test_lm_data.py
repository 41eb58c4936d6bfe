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
