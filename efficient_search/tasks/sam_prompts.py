"""Box prompts from ground-truth masks, and the augmentations that move image and mask together.

    objects = object_labels(mask, "component")         # (H, W): 0 background, 1..K objects
    boxes, ids = boxes_from_objects(objects, padding=0.1, rng=np.random.default_rng(0))
    targets = objects[None] == ids[:, None, None]      # (K, H, W): one binary mask per box

Boxes are XYXY pixel coordinates (SAM's convention: inclusive maxima), padded outwards on each
side by a random number of pixels up to ``padding`` times the box's side, and clipped to the image.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

BOX_MODES = ("instance", "component")


def object_labels(mask: np.ndarray, mode: str) -> np.ndarray:
    """(H, W) int64 labels 1..K of the objects a box prompts: one per mask label (``instance``)
    or per 8-connected foreground component (``component``); 0 is background."""
    if mode == "instance":
        values, labels = np.unique(mask, return_inverse=True)
        labels = labels.reshape(mask.shape)
        return (labels + (0 if values[0] == 0 else 1)).astype(np.int64)
    if mode == "component":
        labels, _ = ndimage.label(mask > 0, structure=np.ones((3, 3), dtype=bool))
        return labels.astype(np.int64)
    raise ValueError(f"`task_options.boxes` must be one of {', '.join(BOX_MODES)}, but got {mode!r}.")


def boxes_from_objects(objects: np.ndarray, *, padding: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(K, 4) float32 XYXY boxes around each object, randomly padded, and their (K,) labels."""
    if not 0 <= padding <= 1:
        raise ValueError(f"`task_options.box_padding` must lie in [0, 1], but got {padding!r}.")
    height, width = objects.shape
    slices = ndimage.find_objects(objects)
    ids = np.array([i + 1 for i, s in enumerate(slices) if s is not None], dtype=np.int64)
    if len(ids) == 0:
        return np.zeros((0, 4), dtype=np.float32), ids
    tight = np.array([[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1]
                      for s in slices if s is not None], dtype=np.int64)  # (K, 4) x0 y0 x1 y1
    width_k, height_k = tight[:, 2] - tight[:, 0] + 1, tight[:, 3] - tight[:, 1] + 1
    limits = np.round(padding * np.stack([width_k, height_k, width_k, height_k], 1)).astype(np.int64)
    pads = rng.integers(0, limits + 1)
    boxes = tight + pads * np.array([-1, -1, 1, 1])
    boxes = np.clip(boxes, 0, np.array([width - 1, height - 1, width - 1, height - 1]))
    return boxes.astype(np.float32), ids


def augment(image: torch.Tensor, objects: torch.Tensor, *, hflip: bool, vflip: bool, rot90: bool,
            rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip and rotate ``image`` (C, H, W) and ``objects`` (H, W) identically.

    Each enabled flip happens with probability 1/2; ``rot90`` turns by k * 90 degrees with k
    uniform in 0..3. The random draws are the same whatever is enabled, so turning one
    augmentation on does not change the others' draws.
    """
    flip_h, flip_v, turns = rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(0, 4))
    if hflip and flip_h:
        image, objects = image.flip(-1), objects.flip(-1)
    if vflip and flip_v:
        image, objects = image.flip(-2), objects.flip(-2)
    if rot90 and turns:
        image, objects = image.rot90(turns, (-2, -1)), objects.rot90(turns, (-2, -1))
    return image.contiguous(), objects.contiguous()


__all__ = ["BOX_MODES", "augment", "boxes_from_objects", "object_labels"]
