"""Model FLOPs utilisation (MFU): the share of a GPU's peak that a training run's model FLOPs use.

A decoder-only transformer's training step costs about ``6 * N`` FLOPs per token (forward ``2N``,
backward ``4N``; Kaplan et al.'s ``C = 6ND``), so

    MFU = 6 * N * tokens_per_second / peak_flops

This leaves out the attention scores' FLOPs, which PaLM's MFU adds (``12 * layers * width * seq_len``
per token): for SmolLM2-135M at 2,048 tokens they are about half as much again as ``6N``, so the
figure here is a lower bound on what the GPU computes.

Peaks are the vendors' *dense* bf16 tensor-core figures (datasheets quote "with sparsity" values,
twice as high; those are never reached by dense training)::

    peak = peak_bf16_flops(torch.cuda.get_device_name())   # "NVIDIA H100 80GB HBM3" -> 989.4e12
    model_flops_utilisation(134_515_008, 250_000.0, peak)  # ~0.204
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from efficient_search.validate import check_number

__all__ = ["GPU_PEAKS", "GpuPeak", "gpu_model", "model_flops_utilisation", "peak_bf16_flops"]


@dataclass(frozen=True)
class GpuPeak:
    """One GPU model's dense bf16 peak and how its ``torch.cuda.get_device_name()`` reads."""

    model: str
    """Short name, e.g. ``H100 SXM``."""
    pattern: str
    """Case-insensitive regex searched in the device name; whole tokens, so ``L4`` is not ``L40S``."""
    flops: float
    """Dense bf16 tensor-core peak, FLOP/s."""


#: Most specific first: the first pattern found in the device name wins (an H100 named with
#: neither PCIe nor NVL is the SXM part, e.g. "NVIDIA H100 80GB HBM3").
GPU_PEAKS: tuple[GpuPeak, ...] = (
    GpuPeak("H100 NVL", r"\bH100\b.*\bNVL\b", 835e12),  # datasheet: 1,671 TFLOP/s with sparsity
    GpuPeak("H100 PCIe", r"\bH100\b.*\bPCIe\b", 756e12),  # 1,513 with sparsity
    GpuPeak("H100 SXM", r"\bH100\b", 989.4e12),  # 1,979 with sparsity
    GpuPeak("H200 NVL", r"\bH200\b.*\bNVL\b", 835e12),  # 1,671 with sparsity
    GpuPeak("H200", r"\bH200\b", 989.4e12),  # SXM: 1,979 with sparsity
    GpuPeak("A100", r"\bA100\b", 312e12),  # SXM and PCIe, 40 and 80 GB: 624 with sparsity
    GpuPeak("L40S", r"\bL40S\b", 362e12),  # 733 with sparsity
    GpuPeak("L4", r"\bL4\b", 121e12),  # 242 with sparsity
    # AWS's A10G has no NVIDIA datasheet; 70 TFLOP/s is the figure commonly used for it (the
    # datasheet A10, a different part, is rated 125).
    GpuPeak("A10G", r"\bA10G\b", 70e12),
)


def gpu_model(name: str) -> GpuPeak:
    """The table entry of a device name as ``torch.cuda.get_device_name()`` gives it."""
    for entry in GPU_PEAKS:
        if re.search(entry.pattern, name, flags=re.IGNORECASE):
            return entry
    known = ", ".join(entry.model for entry in GPU_PEAKS)
    raise ValueError(f"No dense bf16 peak is known for the GPU {name!r} (known: {known}). Fix: pass its "
                     "dense (not sparse) bf16 peak from the vendor's datasheet, e.g. --peak-tflops 989.4.")


def peak_bf16_flops(name: str) -> float:
    """Dense bf16 peak FLOP/s of the GPU called ``name``; ValueError naming the fix if unknown.

    Example: ``peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12``.
    """
    return gpu_model(name).flops


def model_flops_utilisation(n_params: int, tokens_per_second: float, peak_flops: float) -> float:
    """``6 * n_params * tokens_per_second / peak_flops``: the fraction of the peak the model uses."""
    for field, value in (("n_params", n_params), ("tokens_per_second", tokens_per_second),
                         ("peak_flops", peak_flops)):
        check_number(field, value, above=0, numpy=True)
    return 6.0 * n_params * tokens_per_second / peak_flops
