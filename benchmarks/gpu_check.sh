#!/usr/bin/env bash
# The GPU check (issue 14), one command on a machine with an NVIDIA GPU:
#   bash benchmarks/gpu_check.sh [OUT]
# Installs visionperf with its tensorrt extra (TensorRT, cuda-python, nvidia-ml-py) into .venv,
# then runs benchmarks/gpu_check.py: int8 and fp16 ResNet50 engines, Offline (batch sweep) and
# Server through the real LoadGen, top-1 agreement with ONNX Runtime on CPU, SSD-ResNet34 with
# the host NMS, board power; one table. About 6-8 minutes the first time (engine builds are
# cached in OUT/engines).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check-out}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,pci.bus_id --format=csv,noheader || true
if ! .venv/bin/python -c 'import tensorrt, pynvml; from cuda.bindings import runtime' 2>/dev/null \
   && ! .venv/bin/python -c 'import tensorrt, pynvml; from cuda import cudart' 2>/dev/null; then
    make install EXTRAS=tensorrt || {
        echo "gpu_check: could not install the tensorrt extra (no network?): install tensorrt, cuda-python and nvidia-ml-py into .venv, then run again" >&2
        exit 1
    }
fi
exec .venv/bin/python benchmarks/gpu_check.py --out "$OUT" "${@:2}"
