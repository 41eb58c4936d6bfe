"""Offline top-k teacher logits: the truncated distillation loss, the file, and its cache."""

from __future__ import annotations

import pickle
from itertools import pairwise

import pytest
import torch
from safetensors import safe_open

from efficient_search.tasks.supernets import cache_root
from efficient_search.train.distill import distillation_loss, topk_distillation_loss
from efficient_search.train.teacher_logits import (
    TeacherTopK,
    blocks_fingerprint,
    precompute_teacher_topk,
    teacher_topk_cached,
)

VOCAB, SEQ_LEN = 97, 12


def logits(seed: int, shape: tuple[int, ...] = (2, 6, VOCAB)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def labels_for(seed: int, shape: tuple[int, ...] = (2, 6)) -> torch.Tensor:
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def tiny_llama(seed: int = 0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def random_blocks(n: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, SEQ_LEN + 1), generator=torch.Generator().manual_seed(seed))


# --- topk_distillation_loss ---------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 10.0])
def test_topk_loss_with_the_whole_vocabulary_is_the_dense_loss(temperature: float) -> None:
    student, teacher, labels = logits(0), logits(1), labels_for(2)
    labels[0, :2] = -100
    values, ids = teacher.topk(VOCAB, dim=-1)
    dense = distillation_loss(student, teacher, labels, temperature=temperature, kind="forward_kl")
    topk = topk_distillation_loss(student, values, ids, labels, temperature=temperature)
    torch.testing.assert_close(topk, dense, atol=1e-5, rtol=1e-5)


def test_truncated_loss_is_finite_differentiable_and_nears_the_dense_loss_as_k_grows() -> None:
    teacher, labels = logits(1), labels_for(2)
    dense = distillation_loss(logits(0), teacher, labels, temperature=2.0)
    gaps = []
    for k in (1, 5, 20, 60, VOCAB):
        student = logits(0).requires_grad_()
        values, ids = teacher.topk(k, dim=-1)
        loss = topk_distillation_loss(student, values, ids, labels, temperature=2.0)
        assert torch.isfinite(loss)
        loss.backward()
        assert student.grad is not None and torch.isfinite(student.grad).all()
        assert student.grad.abs().sum() > 0
        gaps.append(abs(loss.item() - dense.item()))
    assert all(a > b for a, b in pairwise(gaps)), gaps
    assert gaps[-1] < 1e-5


def test_topk_loss_masks_ignored_positions() -> None:
    student, labels = logits(0).requires_grad_(), labels_for(2)
    values, ids = logits(1).topk(8, dim=-1)
    labels[0, :3] = -100
    loss = topk_distillation_loss(student, values, ids, labels)
    loss.backward()
    assert student.grad is not None
    assert student.grad[0, :3].abs().sum() == 0 and student.grad[0, 3:].abs().sum() > 0
    # Only the counted positions, averaged over their number.
    counted = topk_distillation_loss(student[0, 3:], values[0, 3:], ids[0, 3:], labels[0, 3:])
    rest = topk_distillation_loss(student[1], values[1], ids[1], labels[1])
    torch.testing.assert_close(loss, (3 * counted + 6 * rest) / 9)
    nothing = topk_distillation_loss(logits(0).requires_grad_(), values, ids, torch.full((2, 6), -100))
    assert nothing.item() == 0 and nothing.requires_grad


def test_topk_loss_rejects_bad_inputs() -> None:
    student, labels = logits(0), labels_for(2)
    values, ids = logits(1).topk(8, dim=-1)
    for kind in ("reverse_kl", "js"):
        with pytest.raises(ValueError, match="full distribution.*online"):
            topk_distillation_loss(student, values, ids, labels, kind=kind)
    with pytest.raises(ValueError, match="same shape"):
        topk_distillation_loss(student, values, ids[..., :4], labels)
    with pytest.raises(ValueError, match="positions"):
        topk_distillation_loss(student, values[:, :3], ids[:, :3], labels)
    with pytest.raises(ValueError, match="outside the student's vocabulary"):
        topk_distillation_loss(student, values, ids + VOCAB, labels)
    with pytest.raises(TypeError, match="integer"):
        topk_distillation_loss(student, values, ids.float(), labels)
    with pytest.raises(ValueError, match="labels"):
        topk_distillation_loss(student, values, ids, labels[:, :3])


# --- precompute_teacher_topk / TeacherTopK ------------------------------------------------------------

def test_precomputed_topk_matches_the_teacher_and_gives_the_dense_loss(tmp_path, capsys) -> None:
    teacher, blocks = tiny_llama(), random_blocks()
    path = precompute_teacher_topk(teacher, blocks, tmp_path / "topk.safetensors", k=VOCAB, batch_size=3)
    assert "10/10 blocks" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["topk.safetensors"]  # no temp file left
    with safe_open(str(path), framework="pt") as f:
        assert f.get_slice("values").get_shape() == [10, SEQ_LEN, VOCAB]
        assert f.get_tensor("values").dtype == torch.float16
        assert f.get_tensor("indices").dtype == torch.int32

    topk = TeacherTopK.open(path)
    assert (len(topk), topk.seq_len, topk.k, topk.vocab_size) == (10, SEQ_LEN, VOCAB, VOCAB)
    assert topk.fingerprint == blocks_fingerprint(blocks)
    rows = torch.tensor([7, 2, 7])
    values, ids = topk.batch(rows)
    assert values.dtype == torch.float32 and ids.dtype == torch.int64
    assert values.shape == ids.shape == (3, SEQ_LEN, VOCAB)
    with torch.no_grad():
        teacher_logits = teacher(blocks[rows, :-1]).logits
    expected = teacher_logits.topk(VOCAB, dim=-1)
    torch.testing.assert_close(values, expected.values, atol=1e-2, rtol=1e-3)  # float16 storage
    # Re-sorting by id puts each stored logit beside the teacher's (ties in float16 may swap order).
    torch.testing.assert_close(values.gather(-1, ids.argsort(-1)), teacher_logits, atol=1e-2, rtol=1e-3)

    student = logits(3, (3, SEQ_LEN, VOCAB)).requires_grad_()
    labels = blocks[rows, 1:]
    loss = topk_distillation_loss(student, values, ids, labels)
    dense = distillation_loss(student, teacher_logits.half().float(), labels)
    torch.testing.assert_close(loss, dense, atol=1e-5, rtol=1e-5)


def test_small_k_rows_are_the_teachers_top_k(tmp_path) -> None:
    teacher, blocks = tiny_llama(), random_blocks()
    column = [row for row in blocks]  # any row-indexable container works
    path = precompute_teacher_topk(teacher, column, tmp_path / "topk.safetensors", k=5, progress=False)
    topk = TeacherTopK.open(path)
    values, ids = topk.batch([0, 9])
    with torch.no_grad():
        expected = teacher(blocks[[0, 9], :-1]).logits.topk(5, dim=-1)
    torch.testing.assert_close(values, expected.values, atol=1e-2, rtol=1e-3)
    assert (ids == expected.indices).float().mean() > 0.99  # float16 near-ties aside
    again = pickle.loads(pickle.dumps(topk))  # data-loader workers get only the path and reopen it
    torch.testing.assert_close(again.batch([9])[0], values[1:])


def test_mismatches_are_reported(tmp_path) -> None:
    teacher, blocks = tiny_llama(), random_blocks()
    topk = TeacherTopK.open(precompute_teacher_topk(teacher, blocks, tmp_path / "t.safetensors", k=4,
                                                    progress=False))
    topk.check(blocks_fingerprint(blocks), seq_len=SEQ_LEN, vocab_size=VOCAB)
    topk.check(10, seq_len=SEQ_LEN, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="seq_len.*recompute"):
        topk.check(10, seq_len=SEQ_LEN + 1, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="vocabulary of 97.*has 50.*recompute"):
        topk.check(10, seq_len=SEQ_LEN, vocab_size=50)
    with pytest.raises(ValueError, match="holds 10 blocks.*has 11"):
        topk.check(11)
    other = blocks.clone()
    other[3, 4] = (other[3, 4] + 1) % VOCAB
    with pytest.raises(ValueError, match="fingerprint.*another data set"):
        topk.check(blocks_fingerprint(other))
    with pytest.raises(ValueError, match="holds blocks 0..9"):
        topk.batch([10])
    with pytest.raises(ValueError, match="above the teacher's vocabulary"):
        precompute_teacher_topk(teacher, blocks, tmp_path / "x.safetensors", k=VOCAB + 1, progress=False)
    with pytest.raises(TypeError, match="integer token ids"):
        precompute_teacher_topk(teacher, blocks.float(), tmp_path / "x.safetensors", k=3, progress=False)
    with pytest.raises(ValueError, match="No teacher top-k file"):
        TeacherTopK.open(tmp_path / "missing.safetensors")


def test_cached_topk_is_computed_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EFFICIENT_SEARCH_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "teacher"
    tiny_llama().save_pretrained(model_dir)
    blocks = random_blocks()
    first = teacher_topk_cached(str(model_dir), blocks, k=6, key="tiny-k6")
    assert first.path.parent == cache_root() / "teacher-topk" / "tiny-k6"
    assert (len(first), first.k, first.fingerprint) == (10, 6, blocks_fingerprint(blocks))
    written = first.path.stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed twice")

    monkeypatch.setattr("efficient_search.train.teacher_logits.precompute_teacher_topk", fail)
    second = teacher_topk_cached(str(model_dir), blocks, k=6, key="tiny-k6")
    assert second.path == first.path and second.path.stat().st_mtime_ns == written
    torch.testing.assert_close(second.batch([4]), first.batch([4]))
    with pytest.raises(ValueError, match="reused for other data"):
        teacher_topk_cached(str(model_dir), random_blocks(seed=2), k=6, key="tiny-k6")
