#!/usr/bin/env bash
# The engine and the service on a CUDA GPU, in one run:
#   1. bench/gpu_check.py    the engine on the GPU against the CPU (every activation, loss and
#                            optimizer; predictions; gradcheck; divergence; resume; memory)
#   2. bench/gpu_service.py  embedded Valkey, the API and a worker on the GPU queue: a GPU job
#                            trains, is stored and predicts like its CPU-trained twin
#   3. bench/gpu_speed.py    samples/s of the engine on CuPy, torch CUDA and the engine on CPU
#
#   bash bench/gpu_check.sh [--dry-run]     (PYTHON=... picks the interpreter; LOGS=DIR keeps
#                                            the service's process logs there)
# Installs CuPy (matching nvidia-smi's CUDA version) and torch when they are missing.
# --dry-run runs every script without a GPU, NumPy standing in for CuPy. Exits non-zero when
# a check fails.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DRY=${1:-}

if [ "$DRY" != "--dry-run" ]; then
  if ! nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU visible (nvidia-smi failed); run this on a machine with one" \
         "(or with --dry-run)" >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  cuda_major=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -1)
  case "${cuda_major:-12}" in
    1[3-9]|[2-9][0-9]) cupy_pkg=cupy-cuda13x ;;
    *) cupy_pkg=cupy-cuda12x ;;
  esac
  if ! "$PY" -c "import cupy; cupy.cuda.runtime.getDeviceCount()" >/dev/null 2>&1; then
    echo "gpu_check: installing $cupy_pkg (CUDA $cuda_major)"
    "$PY" -m pip install -q "$cupy_pkg" || { echo "gpu_check: could not install $cupy_pkg" >&2; exit 2; }
  fi
  if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" >/dev/null 2>&1; then
    echo "gpu_check: installing a CUDA build of torch (the speed table's peer)"
    "$PY" -m pip install -q torch || echo "gpu_check: no CUDA torch; the speed table fails" >&2
  fi
fi

status=0
echo; echo "== 1. the engine on the GPU against the CPU"
"$PY" bench/gpu_check.py $DRY || status=1
echo; echo "== 2. the service end to end with a GPU worker"
"$PY" bench/gpu_service.py $DRY ${LOGS:+--logs "$LOGS"} || status=1
echo; echo "== 3. training speed"
if [ "$DRY" = "--dry-run" ]; then
  "$PY" bench/gpu_speed.py --dry-run --rows 4096 --cpu-rows 2048 --rounds 1 --epochs 2 \
        --profile-rows 2048 || status=1
else
  "$PY" bench/gpu_speed.py || status=1
fi
exit $status
