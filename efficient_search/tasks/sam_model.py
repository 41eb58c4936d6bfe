"""Segment Anything models for box-prompted fine-tuning: build, load, add LoRA, freeze.

``vit_b``/``vit_l``/``vit_h`` are the published architectures (``segment_anything``'s
``sam_model_registry``) and need a checkpoint; ``tiny`` is a small SAM of the same parts with random
weights (128-pixel input, 2 ViT blocks of width 64), fast enough for CPU tests and searches::

    model = BoxPromptedSam(build_sam("vit_b", checkpoint="sam_vit_b_01ec64.pth"))
    trainable = model.set_trainable(lora=LoraSettings(rank=8, alpha=16.0, dropout=0.1))
    logits = model(images, boxes)   # images (B, 3, S, S) from model.prepare_image, boxes [(N_i, 4)]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

MODELS = ("tiny", "vit_b", "vit_l", "vit_h")
TINY_IMAGE_SIZE = 128


def tiny_sam() -> Sam:
    """A SAM with SAM's structure at toy size: ViT (64 wide, 2 blocks, windowed + global
    attention, relative positions), prompt encoder and two-way mask decoder of width 64."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    patch, width = 16, 64
    grid = TINY_IMAGE_SIZE // patch  # (8, 8) image embedding
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=TINY_IMAGE_SIZE, patch_size=patch, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4.0,
            out_chans=width, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=4, global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(embed_dim=width, image_embedding_size=(grid, grid),
                                     input_image_size=(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=256, num_heads=1),
            transformer_dim=width, iou_head_depth=3, iou_head_hidden_dim=width,
        ),
    )


def build_sam(model: str, checkpoint: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Sam:
    """A ``segment_anything`` ``Sam``: ``tiny`` (random weights from ``seed``) or ViT-B/L/H, with the
    weights of ``checkpoint`` (a ``state_dict`` saved by ``torch.save``, e.g. Meta's ``.pth``) loaded
    with ``weights_only=True`` onto the CPU."""
    from segment_anything import sam_model_registry

    if model not in MODELS:
        raise ValueError(f"`task_options.model` must be one of {', '.join(MODELS)}, but got {model!r}.")
    if model != "tiny" and checkpoint is None:
        raise ValueError(f"`task_options.checkpoint` is needed for model {model!r}: no SAM weights ship with "
                         "Python packages. Fix: download Meta's checkpoint (e.g. sam_vit_b_01ec64.pth) and "
                         "set checkpoint to its path, or use model 'tiny'.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = tiny_sam() if model == "tiny" else sam_model_registry[model]()
    if checkpoint is not None:
        load_checkpoint(sam, checkpoint, model)
    return sam


def load_checkpoint(sam: nn.Module, checkpoint: str | os.PathLike[str], model: str) -> None:
    """Load a SAM ``state_dict`` from ``checkpoint``; a file of another architecture is an error."""
    if not os.path.isfile(checkpoint):
        raise ValueError(f"`task_options.checkpoint` {str(checkpoint)!r} is not a file. Fix: the path of a "
                         f"SAM {model} state_dict (.pth).")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"`task_options.checkpoint` {str(checkpoint)!r} holds a {type(state).__name__}, not "
                         "a state_dict. Fix: save `model.state_dict()`.")
    try:
        sam.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise ValueError(f"`task_options.checkpoint` {str(checkpoint)!r} does not fit model {model!r}: "
                         f"{detail} Fix: set `model` to the checkpoint's architecture.") from exc


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters on the image encoder's attention projections (the ``qkv`` linear layers)."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0


class BoxPromptedSam(nn.Module):
    """A ``Sam`` that predicts one mask per box: the training and evaluation model of the task."""

    def __init__(self, sam: Sam):
        super().__init__()
        self.sam = sam

    @property
    def image_size(self) -> int:
        """Side of the square model input (1024 for the published models)."""
        return int(self.sam.image_encoder.img_size)

    def prepare_image(self, image: torch.Tensor) -> torch.Tensor:
        """(3, h, w) 0..255 with long side ``image_size`` -> (3, S, S) normalised and padded as SAM does."""
        return self.sam.preprocess(image.to(self.sam.pixel_mean.device, torch.float32))

    def set_trainable(self, lora: LoraSettings | None = None, *, seed: int = 0) -> list[nn.Parameter]:
        """Freeze everything but the mask decoder (and LoRA adapters when given); returns the
        trainable parameters. The adapters' random initialisation is drawn from ``seed``.

        The decoder's IoU head and the hypernetworks of the three multimask outputs stay frozen:
        with one mask per box and a BCE + Dice loss they get no gradient, and DDP refuses
        parameters that take part in no backward pass.
        """
        if lora is not None:
            from peft import LoraConfig, inject_adapter_in_model

            # peft annotates lora_alpha as int; a float scales the same (alpha / rank)
            config = LoraConfig(r=lora.rank, lora_dropout=lora.dropout, target_modules=["qkv"], bias="none",
                                lora_alpha=lora.alpha)  # type: ignore[arg-type]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                inject_adapter_in_model(config, self.sam.image_encoder)
        for param in self.parameters():
            param.requires_grad_(False)
        decoder = self.sam.mask_decoder
        unused = {id(p) for p in decoder.iou_prediction_head.parameters()}
        unused |= {id(p) for mlp in decoder.output_hypernetworks_mlps[1:] for p in mlp.parameters()}
        for param in decoder.parameters():
            param.requires_grad_(id(param) not in unused)
        for name, param in self.sam.image_encoder.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, images: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Mask logits (sum N_i, 1, S, S) for ``images`` (B, 3, S, S) and per-image boxes (N_i, 4)."""
        encoder_learns = any(p.requires_grad for p in self.sam.image_encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and encoder_learns):
            embeddings = self.sam.image_encoder(images)  # (B, C, S/16, S/16)
        if len(boxes) != len(images):
            raise ValueError(f"`boxes` must hold one (N, 4) tensor per image: {len(images)} images, but got "
                             f"{len(boxes)}.")
        dense_pe = self.sam.prompt_encoder.get_dense_pe()  # (1, C, S/16, S/16)
        low_res = []
        for embedding, image_boxes in zip(embeddings, boxes, strict=True):
            if len(image_boxes) == 0:
                continue
            sparse, dense = self.sam.prompt_encoder(points=None, boxes=image_boxes, masks=None)
            masks, _ = self.sam.mask_decoder(image_embeddings=embedding[None], image_pe=dense_pe,
                                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                             multimask_output=False)
            low_res.append(masks)  # (N_i, 1, S/4, S/4)
        if not low_res:
            raise ValueError("No box prompts in this batch: every image is background only.")
        size = self.image_size
        return F.interpolate(torch.cat(low_res), (size, size), mode="bilinear", align_corners=False)


__all__ = ["MODELS", "TINY_IMAGE_SIZE", "BoxPromptedSam", "LoraSettings", "build_sam", "load_checkpoint",
           "tiny_sam"]
