"""How a benchmark's pretraining trials run on each device: the spec's ``resources`` and the task options.

    settings = run_settings("cuda")
    es.run({..., "task": "pretrain", "resources": settings["resources"],
            "task_options": {**options, **settings["task_options"]}})
"""

from __future__ import annotations

import copy
from typing import Any

DEVICES = ("cpu", "cuda")
#: ZeRO-2 (optimiser states and gradients sharded over the workers) in bf16. Batch sizes are left
#: out: the run derives them from the task's batch_size (the spec refuses them here).
CUDA_DEEPSPEED_CONFIG: dict[str, Any] = {"zero_optimization": {"stage": 2}, "bf16": {"enabled": True}}


def run_settings(device: str) -> dict[str, Any]:
    """``{"resources": ..., "task_options": ...}`` for trials on ``device``.

    - ``cpu``: the loop runs inside the Tune trial (no Train workers), on 2 CPUs, in fp32;
    - ``cuda``: one Ray Train worker holding one GPU (and one CPU, so that a driver's
      ``ray.init(num_cpus=2)`` still fits it) running DeepSpeed ZeRO-2 in bf16.

    A fresh copy on each call: callers may change it.
    """
    if device == "cpu":
        return {"resources": {"num_workers": 0, "cpus_per_worker": 2},
                "task_options": {"precision": "fp32"}}
    if device == "cuda":
        resources = {"num_workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 1, "strategy": "deepspeed",
                     "deepspeed_config": copy.deepcopy(CUDA_DEEPSPEED_CONFIG)}
        return {"resources": resources, "task_options": {"precision": "bf16"}}
    raise ValueError(f"`device` must be one of {', '.join(DEVICES)}, but got {device!r}. Fix: --device cuda.")
