"""From image/mask pairs to SAM batches: resize to the model's input, derive box prompts and targets.

Each pair is resized once with SAM's ``ResizeLongestSide`` (its mask by nearest neighbour); a batch
then augments every sample, draws padded boxes around its objects (at most ``max_prompts`` per
image) and pads image, targets and the valid-pixel mask to the model's square input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from efficient_search.tasks.sam_data import Pair
from efficient_search.tasks.sam_model import BoxPromptedSam
from efficient_search.tasks.sam_prompts import augment, boxes_from_objects, object_labels


@dataclass(frozen=True)
class Sample:
    """One image in the model's frame: long side = the model's input size, not yet padded."""

    name: str
    image: torch.Tensor
    """(3, h, w) uint8."""
    objects: torch.Tensor
    """(h, w) int64: 0 background, 1..K the objects boxes are drawn around."""


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor
    """(B, 3, S, S) normalised and padded."""
    boxes: list[torch.Tensor]
    """Per image (N_i, 4) XYXY in the input frame."""
    targets: torch.Tensor
    """(sum N_i, 1, S, S) bool: the object each box prompts."""
    valid: torch.Tensor
    """(sum N_i, 1, S, S) bool: pixels of the image, not the padding."""

    def to(self, device: torch.device) -> Batch:
        return Batch(self.images.to(device), [b.to(device) for b in self.boxes], self.targets.to(device),
                     self.valid.to(device))


def to_samples(pairs: Sequence[Pair], image_size: int, box_mode: str) -> list[Sample]:
    """Resize every pair to long side ``image_size`` and label its objects (``instance``/``component``)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    resize = ResizeLongestSide(image_size)
    samples = []
    for pair in pairs:
        image = torch.from_numpy(resize.apply_image(pair.image)).permute(2, 0, 1).contiguous()  # (3, h, w)
        objects = torch.from_numpy(object_labels(pair.mask, box_mode))
        # nearest-exact keeps labels whole; float32 holds labels exactly up to 2**24
        objects = F.interpolate(objects[None, None].float(), tuple(image.shape[1:]), mode="nearest-exact")
        samples.append(Sample(pair.name, image, objects[0, 0].long()))
    return samples


def make_batch(model: BoxPromptedSam, samples: Sequence[Sample], rng: np.random.Generator, *, padding: float,
               max_prompts: int | None, hflip: bool = False, vflip: bool = False,
               rot90: bool = False) -> Batch:
    """Augment ``samples`` and draw their box prompts from ``rng`` (see the module docstring)."""
    size = model.image_size
    images, boxes, targets, valid = [], [], [], []
    for sample in samples:
        image, objects = augment(sample.image, sample.objects, hflip=hflip, vflip=vflip, rot90=rot90, rng=rng)
        image_boxes, ids = boxes_from_objects(objects.numpy(), padding=padding, rng=rng)
        if max_prompts is not None and len(ids) > max_prompts:
            keep = np.sort(rng.choice(len(ids), size=max_prompts, replace=False))
            image_boxes, ids = image_boxes[keep], ids[keep]
        height, width = objects.shape
        target = torch.zeros((len(ids), 1, size, size), dtype=torch.bool)  # padding: bottom and right
        target[:, 0, :height, :width] = objects[None] == torch.from_numpy(ids)[:, None, None]
        targets.append(target)
        inside = torch.zeros_like(target)
        inside[..., :height, :width] = True
        valid.append(inside)
        images.append(model.prepare_image(image))
        boxes.append(torch.from_numpy(image_boxes))
    return Batch(torch.stack(images), boxes, torch.cat(targets), torch.cat(valid))


__all__ = ["Batch", "Sample", "make_batch", "to_samples"]
