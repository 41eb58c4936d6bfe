"""Dense bf16 peaks matched from CUDA device names, and MFU = 6·N·tokens/s ÷ peak."""

from __future__ import annotations

import math

import numpy as np
import pytest

from efficient_search.train.mfu import GPU_PEAKS, gpu_model, model_flops_utilisation, peak_bf16_flops


@pytest.mark.parametrize(("name", "model", "flops"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4e12),  # what the SXM part reports
    ("NVIDIA H100 PCIe", "H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", "H100 NVL", 835e12),
    ("NVIDIA H200", "H200", 989.4e12),
    ("NVIDIA H200 NVL", "H200 NVL", 835e12),
    ("NVIDIA A100-SXM4-80GB", "A100", 312e12),
    ("NVIDIA A100 80GB PCIe", "A100", 312e12),
    ("NVIDIA A100-SXM4-40GB", "A100", 312e12),
    ("NVIDIA L40S", "L40S", 362e12),
    ("NVIDIA L4", "L4", 121e12),
    ("NVIDIA A10G", "A10G", 70e12),
    ("nvidia h100 pcie", "H100 PCIe", 756e12),  # case does not matter
])
def test_device_names_match_their_dense_peak(name: str, model: str, flops: float) -> None:
    assert gpu_model(name).model == model
    assert peak_bf16_flops(name) == flops


@pytest.mark.parametrize("name", ["NVIDIA L40", "NVIDIA A10", "NVIDIA GH200 480GB", "Tesla T4",
                                  "NVIDIA GeForce RTX 4090", ""])
def test_unknown_devices_name_the_device_and_the_fix(name: str) -> None:
    # Near misses (L40 vs L40S and L4, A10 vs A100 and A10G, GH200 vs H200) are not guessed.
    with pytest.raises(ValueError, match="--peak-tflops") as error:
        peak_bf16_flops(name)
    assert repr(name) in str(error.value)


def test_every_peak_is_a_dense_bf16_figure_in_tflops_range() -> None:
    assert len({entry.model for entry in GPU_PEAKS}) == len(GPU_PEAKS)
    assert all(50e12 <= entry.flops <= 1000e12 for entry in GPU_PEAKS)  # sparse figures reach 1,979


def test_mfu_is_six_n_tokens_over_peak() -> None:
    assert model_flops_utilisation(100, 10.0, 6000.0) == 1.0
    assert model_flops_utilisation(134_515_008, 250_000.0, 989.4e12) == \
        pytest.approx(6 * 134_515_008 * 250_000 / 989.4e12, rel=1e-15)
    numpy_params: int = np.int64(10)  # type: ignore[assignment]  # e.g. read back from a store
    assert model_flops_utilisation(numpy_params, np.float64(2.0), 240.0) == pytest.approx(0.5)


@pytest.mark.parametrize(("args", "field"), [
    ((0, 1.0, 1.0), "n_params"), ((-5, 1.0, 1.0), "n_params"),
    ((10, 0.0, 1.0), "tokens_per_second"), ((10, math.nan, 1.0), "tokens_per_second"),
    ((10, 1.0, -1.0), "peak_flops"), ((10, 1.0, math.inf), "peak_flops"), ((True, 1.0, 1.0), "n_params"),
])
def test_mfu_refuses_non_positive_inputs(args: tuple[float, float, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"`{field}` must be a number > 0"):
        model_flops_utilisation(*args)  # type: ignore[arg-type]
