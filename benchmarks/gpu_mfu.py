"""Training throughput and model FLOPs utilisation (MFU) of a pretraining trial on one GPU.

One ``task: pretrain`` trial through ``efficient_search.run``: SmolLM2-135M's full shape (all 30
layers, every width; 134.5 M parameters) as a randomly initialised student, no distillation,
sequences of 2,048 tokens, on one Ray Train worker holding one GPU, DeepSpeed ZeRO-2 in bf16
(``benchmarks/_gpu.py``'s ``run_settings("cuda")``). Its rows are read back from the Parquet store.

Throughput is measured between the 2nd and the last report: the tokens trained in between over the
``cost/seconds`` in between. That skips the first interval (CUDA start-up, first kernels) and counts
training alone: the loop's clock stops while it evaluates and writes checkpoints.
MFU = 6·N·tokens/s ÷ the GPU's dense bf16 peak (``efficient_search.train.mfu``).

``--device cpu`` runs the same path on CPU to test it: the tiny Shakespeare model, fp32, one Ray Train
worker with DDP (no DeepSpeed), a small budget (< 1 min); MFU needs ``--peak-tflops`` there, else nan.

    python benchmarks/gpu_mfu.py --device cuda            # 300 updates of 8 x 2,048 tokens (4.9 M)
    python benchmarks/gpu_mfu.py --device cuda --quick    # 60 updates
    python benchmarks/gpu_mfu.py --device cpu --quick     # the CPU smoke test
"""

from __future__ import annotations

import argparse
import math
import platform
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from _common import RESULTS_DIR, print_result, record  # benchmarks/ is on sys.path when run
from _gpu import DEVICES, run_settings

NAME = "gpu_mfu"


@dataclass(frozen=True)
class Defaults:
    """What a run on one device measures unless the options say otherwise."""

    model: str
    seq_len: int
    batch_size: int
    steps: int
    """Updates of a full run."""
    quick_steps: int
    reports: int
    """Reports (evaluations and checkpoints) of a run; the throughput spans all but the first."""


DEFAULTS = {
    "cuda": Defaults(model="smollm2-135m", seq_len=2048, batch_size=8, steps=300, quick_steps=60,
                     reports=6),
    "cpu": Defaults(model="tiny-shakespeare", seq_len=128, batch_size=8, steps=200, quick_steps=40,
                    reports=4),
}


def full_shape(model: str) -> dict[str, int]:
    """The sub-network description of the whole model: every layer (widths default to the full ones)."""
    from transformers import AutoConfig

    from efficient_search.tasks.supernets import resolve_supernet

    return {"n_layer": int(AutoConfig.from_pretrained(str(resolve_supernet(model))).num_hidden_layers)}


def mfu_spec(*, device: str, name: str, store: str, model: str, seq_len: int, batch_size: int,
             max_tokens: int, reports: int) -> dict[str, Any]:
    """The experiment spec of the measured trial."""
    settings = run_settings(device)
    resources = settings["resources"]
    if device == "cpu":  # through a Ray Train worker, as on the GPU (run_settings' CPU trials run in-process)
        resources = {"num_workers": 1, "cpus_per_worker": 1, "strategy": "ddp"}
    return {
        "name": name, "task": "pretrain",
        "task_options": {**settings["task_options"], "model": model, "init": "random", "distill": "none",
                         "student": full_shape(model), "seq_len": seq_len, "batch_size": batch_size,
                         "max_tokens": max_tokens, "reports": reports, "eval_sequences": 8,
                         "calibration_sequences": 1, "lr": 1e-3},
        "num_samples": 1, "resources": resources, "store": store, "seed": 0, "verbose": 0,
    }


def tokens_per_second(rows: pd.DataFrame) -> float:
    """Tokens over training seconds between the 2nd and the last report of one trial's rows."""
    if len(rows) < 3:
        raise ValueError(f"The trial reported {len(rows)} time(s); the throughput needs at least 3 reports "
                         "(the first is warm-up). Fix: a larger --max-tokens.")
    second, last = rows.iloc[1], rows.iloc[-1]
    return float((last["fidelity.tokens"] - second["fidelity.tokens"])
                 / (last["cost.seconds"] - second["cost.seconds"]))


def device_peak(device: str, peak_tflops: float | None) -> tuple[str, float]:
    """(device name, dense bf16 peak FLOP/s; NaN on CPU without ``--peak-tflops``), before any run."""
    if device == "cpu":
        return "cpu", math.nan if peak_tflops is None else peak_tflops * 1e12
    import torch

    from efficient_search.train.mfu import peak_bf16_flops

    if not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device. Fix: run on a GPU machine, or "
                         "--device cpu.")
    name = torch.cuda.get_device_name(0)
    return name, peak_bf16_flops(name) if peak_tflops is None else peak_tflops * 1e12


def measure(spec: dict[str, Any], device: str) -> tuple[pd.DataFrame, float]:
    """(the trial's report rows in order, wall seconds) of one run on a local Ray."""
    import ray

    import efficient_search as es
    from efficient_search.store.rows import RUNNING

    started = time.perf_counter()
    cpu = device == "cpu"
    ray.init(address="local", num_cpus=2 if cpu else None, log_to_driver=not cpu)  # GPU: show progress
    try:
        result = es.run(spec)
        if result.grid.errors:
            raise RuntimeError(f"The trial failed: {result.grid.errors}")
        rows = result.results()
    finally:
        ray.shutdown()
    return rows[rows["status"] == RUNNING].sort_values("iteration"), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=DEVICES, default="cuda")
    parser.add_argument("--quick", action="store_true", help="fewer updates (smoke run)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense bf16 peak in TFLOP/s (default: from the GPU's name)")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="token budget (default: 300 updates, 60 quick, 200/40 on CPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="micro-batch (sequences) per update")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence")
    parser.add_argument("--model", default=None,
                        help="named super-network or local folder (its full shape trains from random init)")
    parser.add_argument("--store", default=str(RESULTS_DIR / "store"))
    args = parser.parse_args()
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        parser.error(f"--peak-tflops must be > 0, but got {args.peak_tflops}.")
    defaults = DEFAULTS[args.device]
    model = args.model or defaults.model
    seq_len = args.seq_len or defaults.seq_len
    batch_size = args.batch_size or defaults.batch_size
    per_update = batch_size * seq_len
    max_tokens = args.max_tokens or (defaults.quick_steps if args.quick else defaults.steps) * per_update
    steps = max_tokens // per_update
    if steps < defaults.reports:
        parser.error(f"--max-tokens {max_tokens} buys {steps} update(s) of {batch_size} x {seq_len} tokens, "
                     f"fewer than the {defaults.reports} reports. Fix: --max-tokens >= "
                     f"{defaults.reports * per_update}.")
    device, peak = device_peak(args.device, args.peak_tflops)  # an unknown GPU fails here, not after the run

    from efficient_search.train.mfu import model_flops_utilisation

    tag = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}-{args.device}"
    spec = mfu_spec(device=args.device, name=f"bench-{NAME}-{tag}{'-quick' if args.quick else ''}",
                    store=args.store, model=model, seq_len=seq_len, batch_size=batch_size,
                    max_tokens=max_tokens, reports=defaults.reports)
    print(f"{NAME}: {device}, {model} full shape from random init, {steps} updates of {batch_size} x "
          f"{seq_len} tokens, {spec['task_options']['precision']}, resources {spec['resources']}", flush=True)
    rows, wall = measure(spec, args.device)
    n_params = int(rows["metric.params"].iloc[0])
    speed = tokens_per_second(rows)
    mfu = model_flops_utilisation(n_params, speed, peak) if math.isfinite(peak) else math.nan
    if not math.isfinite(peak):
        print(f"{NAME}: no peak FLOP/s for a CPU: MFU is nan. Fix: pass --peak-tflops for this processor.")
    curve = pd.DataFrame({"iteration": rows["iteration"].astype(float), "tokens": rows["fidelity.tokens"],
                          "train_seconds": rows["cost.seconds"], "train_loss": rows["metric.train_loss"],
                          "val_loss": rows["metric.val_loss"]})
    print(curve.to_string(index=False, float_format="{:.4g}".format))
    run = {"device": device, "model": model, "precision": spec["task_options"]["precision"],
           "strategy": spec["resources"].get("strategy", "ddp"), "experiment": spec["name"],
           "host": platform.node(), "params": float(n_params), "seq_len": float(seq_len),
           "batch_size": float(batch_size), "max_tokens": float(max_tokens), "tokens_per_s": speed,
           "peak_tflops": peak / 1e12, "mfu": mfu, "wall_seconds": wall}
    record(args.store, NAME, [("runs", pd.DataFrame([run])), ("reports", curve)], args.quick)
    print(f"total {wall:.0f} s (store {Path(args.store)})")
    print_result(NAME, {"device": device.replace(" ", "_"), "mode": "quick" if args.quick else "full",
                        "params": n_params, "tokens_per_s": speed, "mfu": mfu, "peak_tflops": peak / 1e12},
                 args.quick)


if __name__ == "__main__":
    main()
