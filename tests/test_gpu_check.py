"""The GPU check without a GPU: gpu_mfu.py's CPU path end to end, the CUDA settings through the
spec's validation, and gpu_check.sh's syntax and the scripts it calls."""

from __future__ import annotations

import importlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from efficient_search.api import plan_run
from efficient_search.store import ParquetStore

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # gpu_mfu imports _common and _gpu as the script does
    return importlib.import_module("gpu_mfu")


@pytest.mark.slow
def test_cpu_path_trains_on_a_ray_train_worker_and_prints_a_result(tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_mfu.py"), "--device", "cpu", "--quick",
         "--max-tokens", "8192", "--peak-tflops", "0.5", "--store", str(store)],  # 8 updates, 4 reports
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT gpu_mfu ")]
    assert len(lines) == 1, done.stdout[-3000:]
    fields = dict(item.split("=", 1) for item in lines[0].split()[2:])
    assert list(fields)[:5] == ["device", "mode", "params", "tokens_per_s", "mfu"]
    assert fields["device"] == "cpu" and fields["mode"] == "quick"
    params, speed, mfu = int(fields["params"]), float(fields["tokens_per_s"]), float(fields["mfu"])
    assert params > 1_000_000 and speed > 0
    assert mfu == pytest.approx(6 * params * speed / 0.5e12, rel=2e-3)  # printed to 4 digits
    # The trial's rows and the benchmark's own record are both in the store.
    experiments = ParquetStore(str(store)).experiments()
    assert "bench-gpu_mfu" in experiments
    trial = [name for name in experiments if name.startswith("bench-gpu_mfu-")]
    assert len(trial) == 1
    rows = ParquetStore(str(store)).results(trial[0])
    running = rows[rows["status"] == "RUNNING"]
    assert len(running) == 4 and "ddp workers=1" in running["hardware"].iloc[0]  # a Ray Train worker
    assert (running["metric.params"] == params).all()


def test_tokens_per_second_skips_the_first_report(bench: ModuleType) -> None:
    import pandas as pd

    rows = pd.DataFrame({"fidelity.tokens": [100, 200, 300, 400], "cost.seconds": [9.0, 10.0, 11.0, 13.0]})
    assert bench.tokens_per_second(rows) == 200 / 3.0
    with pytest.raises(ValueError, match="at least 3 reports"):
        bench.tokens_per_second(rows.head(2))


def test_cuda_settings_pass_the_spec_validation(bench: ModuleType, tmp_path: Path) -> None:
    from _gpu import run_settings

    settings = run_settings("cuda")
    assert settings["task_options"] == {"precision": "bf16"}
    resources = settings["resources"]
    assert resources["deepspeed_config"]["bf16"] == {"enabled": True}
    # The benchmark's own CUDA spec (the tiny model: its config is at hand without converting SmolLM2).
    spec = bench.mfu_spec(device="cuda", name="gpu-mfu-check", store=str(tmp_path / "store"),
                          model="tiny-shakespeare", seq_len=128, batch_size=8, max_tokens=8 * 128 * 10,
                          reports=4)
    plan = plan_run(spec)  # DeepSpeed parses the config, the task checks its options
    assert plan.spec.resources.strategy == "deepspeed" and plan.spec.resources.zero_stage == 2
    assert plan.spec.resources.num_workers == 1 and plan.spec.resources.gpus_per_worker == 1
    assert plan.options["precision"] == "bf16" and plan.options["init"] == "random"
    assert plan.options["student"] == {"n_layer": 6}  # every layer of the model, full widths
    cpu = run_settings("cpu")
    assert cpu == {"resources": {"num_workers": 0, "cpus_per_worker": 2},
                   "task_options": {"precision": "fp32"}}
    plan_run({"name": "gpu-mfu-cpu", "task": "pretrain", "resources": cpu["resources"],
              "task_options": cpu["task_options"], "store": str(tmp_path / "store")})
    with pytest.raises(ValueError, match="--device cuda"):
        run_settings("gpu")


def test_gpu_check_script_parses_and_calls_existing_scripts() -> None:
    script = BENCHMARKS / "gpu_check.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "set -euo pipefail" in text
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    called = set(re.findall(r"benchmarks/[\w.]+\.py", text))
    assert called == {"benchmarks/gpu_mfu.py", "benchmarks/pretrain_from_subnetwork.py"}
    assert all((ROOT / path).is_file() for path in called)


def test_the_peak_is_known_before_the_run(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    name, peak = bench.device_peak("cpu", None)
    assert name == "cpu" and math.isnan(peak)  # MFU is reported as nan
    assert bench.device_peak("cpu", 2.0) == ("cpu", 2e12)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="sees no CUDA device"):
        bench.device_peak("cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla T4")
    with pytest.raises(ValueError, match="'Tesla T4'.*--peak-tflops"):
        bench.device_peak("cuda", None)
    assert bench.device_peak("cuda", 65.0) == ("Tesla T4", 65e12)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "NVIDIA H100 80GB HBM3")
    assert bench.device_peak("cuda", None) == ("NVIDIA H100 80GB HBM3", 989.4e12)
