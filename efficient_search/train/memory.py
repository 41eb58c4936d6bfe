"""Training-memory measurement that works on CPU as well as on GPU.

On GPU the answer is the CUDA allocator's peak (``torch.cuda.max_memory_allocated``). On CPU
there is no allocator statistic, and the process RSS is dominated by the libraries, so the
meter adds up what training holds: parameters, gradients, optimiser state, and the largest set
of activations autograd saved for one backward pass (counted through
``torch.autograd.graph.saved_tensors_hooks``, each storage once). Freezing shrinks the last
three, which is the saving this measures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn


def tensor_bytes(tensors: Iterator[torch.Tensor]) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


class ActivationMeter:
    """Peak bytes autograd saves between two ``step_done()`` calls.

    Autograd also saves weights for the backward pass; pass ``model`` so that its parameter
    storages (counted once as parameters) are not counted again as activations.
    """

    def __init__(self, model: nn.Module | None = None) -> None:
        self.peak = 0
        self._current = 0
        self._model = model
        self._seen: set[int] = set()
        self._reset()

    def _reset(self) -> None:
        self._seen = set()
        if self._model is not None:
            self._seen = {p.untyped_storage().data_ptr() for p in self._model.parameters()}

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self._seen:
            self._seen.add(storage.data_ptr())
            self._current += storage.nbytes()
        return t

    def step_done(self) -> None:
        self.peak = max(self.peak, self._current)
        self._current = 0
        self._reset()

    @contextmanager
    def watching(self) -> Iterator[ActivationMeter]:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self
        self.step_done()

    def watching_on(self, device: torch.device) -> Any:
        """:meth:`watching` on CPU; nothing on GPU, where the CUDA allocator keeps the peak."""
        return nullcontext(self) if device.type == "cuda" else self.watching()


def peak_memory_bytes(device: torch.device, model: nn.Module,
                      optimizer: torch.optim.Optimizer, meter: ActivationMeter) -> int:
    """The CUDA allocator's peak on GPU; :func:`training_memory_bytes` on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return training_memory_bytes(model, optimizer, meter.peak)


def training_memory_bytes(model: nn.Module, optimizer: torch.optim.Optimizer,
                          activation_peak: int) -> int:
    """Parameters + gradients + optimiser state + peak saved activations, in bytes."""
    params = tensor_bytes(iter(model.parameters()))
    # Gradients as the update holds them (they are freed right after it): one per trainable parameter.
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    state = tensor_bytes(v for s in optimizer.state.values() for v in s.values()
                         if isinstance(v, torch.Tensor) and v.dim() > 0)
    return params + grads + state + activation_peak
