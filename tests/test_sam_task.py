"""The SAM fine-tuning task on stardist's real nuclei tiles with real segment-anything modules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import efficient_search as es
from efficient_search.search_spaces import resolve_search_space
from efficient_search.store import ParquetStore
from efficient_search.tasks import get_task
from efficient_search.tasks.sam import lr_factor, split_samples, trial_settings
from efficient_search.tasks.sam_data import load_pairs, nuclei_folder, write_nuclei_tiles
from efficient_search.tasks.sam_loss import MaskScores, bce_dice_loss
from efficient_search.tasks.sam_model import BoxPromptedSam, LoraSettings, build_sam
from efficient_search.tasks.sam_prompts import augment, boxes_from_objects, object_labels
from efficient_search.testing.sessions import RecordingSession

TASK = get_task("sam")
# One image per update: the tiny model's decoder starts from random weights and needs ~150 updates
# (12 epochs of 12 tiles) to get past predicting background everywhere; a pretrained SAM starts past that.
PARAMS = {"lr": 3e-3, "batch_size": 1, "scheduler": "cosine"}
EPOCHS = 30


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Train on one core, as a Ray trial of one CPU does (and unharmed by a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """stardist's nuclei image and mask as 16 tiles of 128 x 128."""
    folder = tmp_path_factory.mktemp("nuclei")
    assert write_nuclei_tiles(folder, 128) == 16
    return folder


@pytest.fixture(scope="module")
def tile(nuclei: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first tile with the most nuclei: (image (128, 128, 3) uint8, instance labels)."""
    pairs = load_pairs(nuclei)
    pair = max(pairs, key=lambda p: len(np.unique(p.mask)))
    return pair.image, pair.mask


def options(nuclei: Path, **extra: Any) -> dict[str, Any]:
    return TASK.resolve_options({"data": str(nuclei), "epochs": EPOCHS, **extra})


def train(params: dict[str, Any], resolved: dict[str, Any],
          resume_dir: str | None = None) -> RecordingSession:
    session = RecordingSession(resume_dir=resume_dir)
    TASK.train_loop(params, resolved, session, 0)
    return session


@pytest.fixture(scope="module")
def trained(nuclei: Path) -> Iterator[RecordingSession]:
    session = train(PARAMS, options(nuclei))
    yield session
    session.cleanup()


def test_nuclei_tiles_are_real_instance_masks(nuclei: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = load_pairs(nuclei)
    assert [p.image.shape for p in pairs[:1]] == [(128, 128, 3)] and len(pairs) == 16
    counts = [len(np.unique(p.mask)) - 1 for p in pairs]
    assert 60 <= sum(counts) <= 200 and max(counts) >= 5  # 125 nuclei, some cut in two by tile borders
    assert all(set(np.unique(p.mask)) == set(range(len(np.unique(p.mask)))) for p in pairs)  # 0..K
    monkeypatch.setenv("EFFICIENT_SEARCH_CACHE", str(tmp_path))
    built = nuclei_folder(128)
    assert built == tmp_path / "sam-data" / "nuclei-128"
    assert json.loads((built / "config.json").read_text())["tiles"] == 16
    assert nuclei_folder(128) == built  # built once


def test_boxes_cover_their_object_stay_inside_and_are_seeded(tile: tuple[np.ndarray, np.ndarray]) -> None:
    _, mask = tile
    objects = object_labels(mask, "instance")
    tight, ids = boxes_from_objects(objects, padding=0.0, rng=np.random.default_rng(0))
    assert len(ids) == len(np.unique(mask)) - 1
    for box, label in zip(tight, ids, strict=True):
        ys, xs = np.nonzero(objects == label)
        assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    padded, _ = boxes_from_objects(objects, padding=0.2, rng=np.random.default_rng(1))
    assert (padded[:, :2] <= tight[:, :2]).all() and (padded[:, 2:] >= tight[:, 2:]).all()
    assert (padded >= 0).all() and (padded <= 127).all() and (padded != tight).any()
    sides = np.stack([tight[:, 2] - tight[:, 0] + 1, tight[:, 3] - tight[:, 1] + 1] * 2, 1)
    assert (np.abs(padded - tight) <= np.round(0.2 * sides)).all()
    again, _ = boxes_from_objects(objects, padding=0.2, rng=np.random.default_rng(1))
    other, _ = boxes_from_objects(objects, padding=0.2, rng=np.random.default_rng(2))
    assert np.array_equal(padded, again) and not np.array_equal(padded, other)
    # Binary masks: one box per image (instance) or per connected component
    assert len(boxes_from_objects(object_labels((mask > 0) * 255, "instance"), padding=0.0,
                                  rng=np.random.default_rng(0))[1]) == 1
    components = object_labels((mask > 0).astype(np.uint8), "component")
    assert 1 <= components.max() <= len(ids)
    with pytest.raises(ValueError, match="`task_options.box_padding` must lie in"):
        boxes_from_objects(objects, padding=1.5, rng=np.random.default_rng(0))


def test_augmentation_moves_image_and_mask_together(tile: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = tile
    image = torch.from_numpy(image[:, :96]).permute(2, 0, 1).clone()  # (3, 128, 96): rotations show
    objects = torch.from_numpy(object_labels(mask[:, :96], "instance"))
    image[2] = objects.to(torch.uint8)  # a channel that must stay equal to the mask
    shapes = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        out, moved = augment(image, objects, hflip=True, vflip=True, rot90=True, rng=rng)
        assert torch.equal(out[2].long(), moved)
        assert sorted(out[0].flatten().tolist()) == sorted(image[0].flatten().tolist())
        shapes.add(tuple(moved.shape))
    assert shapes == {(128, 96), (96, 128)}
    same, unmoved = augment(image, objects, hflip=False, vflip=False, rot90=False,
                            rng=np.random.default_rng(0))
    assert torch.equal(same, image) and torch.equal(unmoved, objects)


def test_lora_trains_only_adapters_on_the_encoder_attention() -> None:
    plain = BoxPromptedSam(build_sam("tiny", seed=0))
    plain.set_trainable(None)
    decoder_only = {n for n, p in plain.named_parameters() if p.requires_grad}
    assert decoder_only and all(n.startswith("sam.mask_decoder.") for n in decoder_only)
    assert not any("iou_prediction_head" in n for n in decoder_only)

    model = BoxPromptedSam(build_sam("tiny", seed=0))
    images = torch.stack([model.prepare_image(torch.full((3, 128, 128), 90.0))])
    boxes = [torch.tensor([[10.0, 20.0, 60.0, 70.0]])]
    before = model(images, boxes)
    trainable = model.set_trainable(LoraSettings(rank=4, alpha=8.0, dropout=0.1), seed=0)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    added = names - decoder_only
    assert len(trainable) == len(names)
    assert len(added) == 2 * 2 and all(".attn.qkv.lora_" in n and n.startswith("sam.image_encoder.blocks.")
                                       for n in added)  # A and B in each of the 2 blocks
    qkv = model.sam.image_encoder.blocks[0].attn.qkv
    assert qkv.lora_dropout["default"].p == 0.1 and qkv.scaling["default"] == 8.0 / 4
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.startswith("sam.prompt_encoder.") for n in frozen)
    assert any(n.endswith("qkv.base_layer.weight") for n in frozen)
    model.eval()
    assert torch.allclose(model(images, boxes), before, atol=1e-5)  # LoRA B starts at zero
    model.train()
    loss = bce_dice_loss(model(images, boxes), torch.zeros_like(before, dtype=torch.bool),
                         torch.ones_like(before, dtype=torch.bool))
    loss.backward()
    assert all(p.grad is not None for p in trainable)


def test_training_lowers_the_loss_and_raises_iou(trained: RecordingSession) -> None:
    metrics = [m for m, _ in trained.reports]
    assert [m["fidelity/epoch"] for m in metrics] == list(range(1, EPOCHS + 1))
    assert metrics[0]["val_iou"] < 0.02  # random decoder, then all background
    assert max(m["val_iou"] for m in metrics[-5:]) > 0.2  # 0.29 measured
    assert metrics[-1]["train_loss"] < 0.9 * metrics[0]["train_loss"]
    assert all(0 <= m["val_iou"] <= m["val_dice"] <= 1 for m in metrics)
    assert metrics[-1]["cost/seconds"] > metrics[0]["cost/seconds"] > 0
    assert metrics[-1]["cost/peak_memory_bytes"] > 0
    assert all(checkpoint for _, checkpoint in trained.reports)


def test_resuming_continues_where_it_stopped(nuclei: Path, trained: RecordingSession) -> None:
    resolved = options(nuclei)
    paused = trained.reports[EPOCHS - 3][1]  # after epoch EPOCHS - 2
    resumed = train(PARAMS, resolved, resume_dir=paused)
    try:
        assert [m["fidelity/epoch"] for m, _ in resumed.reports] == [EPOCHS - 1, EPOCHS]
        for key in ("val_loss", "val_iou", "train_loss"):
            assert resumed.reports[-1][0][key] == pytest.approx(trained.reports[-1][0][key], rel=1e-4)
        with pytest.raises(ValueError, match="other trainable parameters"):
            train({**PARAMS, "lora": True}, resolved, resume_dir=paused)
    finally:
        resumed.cleanup()


def test_lora_flips_and_step_schedule_train(nuclei: Path) -> None:
    params = {**PARAMS, "lora": True, "lora_rank": 4, "lora_dropout": 0.1, "hflip": True, "vflip": True,
              "rot90": True, "scheduler": "step", "step_epochs": 1, "gamma": 0.5, "warmup_fraction": 0.1}
    session = train(params, options(nuclei, epochs=2, boxes="component"))
    try:
        metrics = [m for m, _ in session.reports]
        assert len(metrics) == 2 and all(np.isfinite(m["val_iou"]) for m in metrics)
        assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    finally:
        session.cleanup()


def test_lr_schedules() -> None:
    base = trial_settings({}, TASK.resolve_options({"epochs": 4}))
    cosine = lr_factor({**base, "scheduler": "cosine", "min_lr_ratio": 0.1}, steps_per_epoch=10)
    assert cosine(0) == pytest.approx(1.0) and cosine(20) == pytest.approx(0.55) and cosine(40) == 0.1
    step = lr_factor({**base, "scheduler": "step", "step_epochs": 2, "gamma": 0.5}, steps_per_epoch=10)
    assert [step(s) for s in (0, 19, 20, 39)] == [1.0, 1.0, 0.5, 0.5]
    warm = lr_factor({**base, "scheduler": "constant", "warmup_fraction": 0.1}, steps_per_epoch=10)
    assert [warm(s) for s in (0, 3, 4, 30)] == [0.25, 1.0, 1.0, 1.0]


def test_scores_and_loss() -> None:
    targets = torch.zeros((2, 1, 8, 8), dtype=torch.bool)
    targets[0, 0, :4, :4] = True
    targets[1, 0, 2:6, 2:6] = True
    valid = torch.ones_like(targets)
    logits = torch.where(targets, 20.0, -20.0)
    assert bce_dice_loss(logits, targets, valid).item() < 0.05
    shifted = logits.roll(1, dims=-1)  # 12 of 16 pixels still right in each mask
    scores = MaskScores()
    scores.update(shifted, targets, valid)
    assert scores.compute() == pytest.approx({"val_iou": 24 / 40, "val_dice": 48 / 64})
    outside = valid.clone()
    outside[..., 4:] = False  # padding is ignored
    scores = MaskScores()
    scores.update(logits, targets, outside)
    assert scores.compute()["val_iou"] == 1.0


def test_checkpoint_path_loads_weights(tmp_path: Path) -> None:
    source = build_sam("tiny", seed=3)
    path = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), path)
    loaded = build_sam("tiny", str(path), seed=0)
    for (name, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(build_sam("tiny", seed=0).mask_decoder.mask_tokens.weight,
                           loaded.mask_decoder.mask_tokens.weight)
    state = source.state_dict()
    state["mask_decoder.mask_tokens.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"`task_options.checkpoint` .*bad.pth' does not fit model 'tiny'"):
        build_sam("tiny", str(tmp_path / "bad.pth"))


@pytest.mark.slow
def test_vit_b_builds_from_a_saved_checkpoint(tmp_path: Path) -> None:
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    source = sam_model_registry["vit_b"]()
    path = tmp_path / "sam_vit_b.pth"
    torch.save(source.state_dict(), path)
    loaded = build_sam("vit_b", str(path))
    assert loaded.image_encoder.img_size == 1024 and len(loaded.image_encoder.blocks) == 12
    for (name, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    model = BoxPromptedSam(loaded)
    added = set(model.set_trainable(LoraSettings(rank=4))) - set(model.sam.mask_decoder.parameters())
    assert len(added) == 2 * 12
    TASK.resolve_options({"model": "vit_b", "checkpoint": str(path)})


def test_bad_options_and_data_name_the_field(nuclei: Path, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"model": "vit_s"}, ValueError, r"`task_options.model` must be one of tiny, vit_b"),
        ({"model": "vit_b"}, ValueError, r"`task_options.checkpoint` is needed for model 'vit_b'"),
        ({"checkpoint": str(tmp_path / "no.pth")}, ValueError, r"`task_options.checkpoint` .* is not a file"),
        ({"checkpoint": 3}, TypeError, r"`task_options.checkpoint` must be a path"),
        ({"boxes": "points"}, ValueError, r"`task_options.boxes` must be one of instance, component"),
        ({"box_padding": 2.0}, ValueError, r"`task_options.box_padding` must lie in \[0, 1\]"),
        ({"lora_rank": 0}, ValueError, r"`task_options.lora_rank` must be >= 1"),
        ({"scheduler": "linear"}, ValueError, r"`scheduler` \(task_options\) must be one of cosine, step"),
        ({"lora": "yes"}, TypeError, r"`task_options.lora` must be bool"),
        ({"data": str(tmp_path / "missing")}, ValueError, r"`task_options.data` .* `images/` and `masks/`"),
    ]
    for extra, error, message in cases:
        with pytest.raises(error, match=message):
            TASK.resolve_options(extra)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    with pytest.raises(ValueError, match=r"no images .* Fix: add image files"):
        TASK.resolve_options({"data": str(empty)})
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(empty / "images" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(empty / "masks" / "b.png")
    with pytest.raises(ValueError, match=r"must match by stem, but 2 do not \(e.g. a, b\)"):
        TASK.resolve_options({"data": str(empty)})
    (empty / "masks" / "b.png").rename(empty / "masks" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(empty / "images" / "c.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(empty / "masks" / "c.png")
    with pytest.raises(ValueError, match="the training images hold no objects"):
        split_samples(str(empty), 128, "instance", 0.5, 0)
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(empty / "masks" / "c.png")
    with pytest.raises(ValueError, match=r"is \(8, 8\) but its mask .* is \(8, 9\)"):
        load_pairs(empty)
    resolved = options(nuclei)
    with pytest.raises(ValueError, match=r"Unknown hyperparameter `lora_rnak` .* Did you mean 'lora_rank'"):
        trial_settings({"lora_rnak": 4}, resolved)
    with pytest.raises(ValueError, match=r"`lora_dropout` \(trial config or task_options\) must be a number"):
        trial_settings({"lora_dropout": 1.0}, resolved)


def test_default_search_space_samples_valid_trials() -> None:
    resolved = TASK.resolve_options({"epochs": 3})
    space = resolve_search_space(None, resolved, TASK.default_space)
    assert {"lr", "weight_decay", "lora", "lora_rank", "lora_dropout", "hflip", "vflip", "rot90",
            "scheduler", "step_epochs", "gamma"} <= set(space)
    for _ in range(20):
        config = {k: v.sample() for k, v in space.items()}
        settings = trial_settings(config, resolved)
        assert 1 <= settings["step_epochs"] <= 3 and settings["scheduler"] in ("cosine", "step", "constant")


@pytest.mark.usefixtures("ray_session")
def test_search_on_local_ray_stores_iou_per_epoch(nuclei: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = es.run({
        "name": "sam-tiny",
        "task": "sam",
        "task_options": {"model": "tiny", "data": str(nuclei), "epochs": 2},
        "search_space": {"lr": {"loguniform": [1e-3, 1e-2]}, "lora": {"grid": [False, True]}},
        "scheduler": "fifo",
        "num_samples": 1,  # x 2 grid points = 2 trials
        "max_concurrent_trials": 2,
        "resources": {"num_workers": 0},
        "store": str(store),
        "seed": 0,
    })
    assert len(result.grid) == 2 and not result.grid.errors
    rows = ParquetStore(str(store)).results("sam-tiny")
    reported = rows[rows["status"] == "RUNNING"]
    assert set(reported["config.lora"]) == {False, True}
    for _, trial in reported.groupby("trial_id"):
        assert trial.sort_values("iteration")["fidelity.epoch"].tolist() == [1.0, 2.0]
        assert trial["metric.val_iou"].between(0, 1).all() and trial["metric.val_dice"].notna().all()
        assert (trial["cost.seconds"] > 0).all()


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_two_ddp_workers_train_with_lora(nuclei: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = es.run({
        "name": "sam-ddp",
        "task": "sam",
        "task_options": {"model": "tiny", "data": str(nuclei), "epochs": 2},
        "search_space": {"lr": 3e-3, "batch_size": 1, "lora": True, "rot90": True},
        "num_samples": 1,
        "resources": {"num_workers": 2, "cpus_per_worker": 1},
        "store": str(store),
    })
    assert not result.grid.errors
    rows = ParquetStore(str(store)).results("sam-ddp")
    reported = rows[rows["status"] == "RUNNING"].sort_values("iteration")
    assert reported["fidelity.epoch"].tolist() == [1.0, 2.0]
    assert reported["metric.val_iou"].between(0, 1).all()


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_quicktune_pauses_and_continues_sam_trials_on_nuclei(nuclei: Path, tmp_path: Path) -> None:
    """QuickTuneSearcher + FreezeThawScheduler on SAM fine-tuning: trials stop after each epoch, wait
    while others run, and continue from their checkpoint (epochs 1, 2, ... once each)."""
    store = tmp_path / "store"
    result = es.run({
        "name": "sam-quicktune",
        "task": "sam",
        "task_options": {"model": "tiny", "data": str(nuclei), "batch_size": 1},
        "search_space": "sam",
        "searcher": "quicktune",
        "searcher_options": {"pool_size": 32, "initial_random": 2},
        "scheduler": "freeze_thaw",
        "scheduler_options": {"max_t": 3},
        "num_samples": 3,
        "max_concurrent_trials": 1,
        "resources": {"num_workers": 0},
        "store": str(store),
        "seed": 0,
        "verbose": 0,
    })
    assert not result.grid.errors
    rows = ParquetStore(str(store)).results("sam-quicktune")
    reported = rows[rows["status"] == "RUNNING"].sort_values("timestamp")
    order = reported["trial_id"].tolist()
    for trial_id, trial in reported.groupby("trial_id"):
        epochs = trial.sort_values("iteration")["fidelity.epoch"].astype(int).tolist()
        assert epochs == list(range(1, len(epochs) + 1)), (trial_id, epochs)  # continued, not restarted
        assert trial["metric.val_iou"].between(0, 1).all()
    assert reported["fidelity.epoch"].max() <= 3
    # A trial reported, waited while another one ran, then went on.
    first = {t: order.index(t) for t in set(order)}
    last = {t: len(order) - 1 - order[::-1].index(t) for t in set(order)}
    assert any(last[t] - first[t] + 1 > order.count(t) for t in set(order)), order
