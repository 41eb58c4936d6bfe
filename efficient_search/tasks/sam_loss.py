"""How a predicted mask is scored: BCE + Dice loss for training, IoU and Dice for evaluation.

Only valid pixels count: SAM pads images to a square, and the padding is neither object nor
background of the data.

    loss = bce_dice_loss(logits, targets, valid)             # (N, 1, S, S) each
    scores = MaskScores(); scores.update(logits, targets, valid); scores.compute()  # val_iou, val_dice
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -1


def bce_dice_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                  smooth: float = 1.0) -> torch.Tensor:
    """Mean binary cross-entropy over valid pixels plus the mean soft Dice loss over masks."""
    weight = valid.float()
    targets = targets.float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, weight=weight, reduction="sum")
    bce = bce / weight.sum().clamp_min(1.0)
    probs = torch.sigmoid(logits) * weight
    intersection = (probs * targets).flatten(1).sum(1)  # (N,)
    total = probs.flatten(1).sum(1) + (targets * weight).flatten(1).sum(1)
    dice = 1.0 - (2.0 * intersection + smooth) / (total + smooth)
    return bce + dice.mean()


class MaskScores:
    """Binary IoU (Jaccard) and Dice over every valid pixel of every mask seen, with torchmetrics.

    Dice is the binary F1 score of the pixels: 2 TP / (2 TP + FP + FN).
    """

    def __init__(self, threshold: float = 0.0) -> None:
        from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex

        self.threshold = threshold  # on logits: 0 is probability 1/2, SAM's mask_threshold
        self.iou = BinaryJaccardIndex(ignore_index=IGNORE)
        self.dice = BinaryF1Score(ignore_index=IGNORE)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> None:
        preds = (logits.detach() > self.threshold).long().cpu()
        labels = torch.where(valid, targets.long(), IGNORE).cpu()
        self.iou.update(preds, labels)
        self.dice.update(preds, labels)

    def compute(self) -> dict[str, float]:
        return {"val_iou": float(self.iou.compute()), "val_dice": float(self.dice.compute())}


__all__ = ["MaskScores", "bce_dice_loss"]
