#!/usr/bin/env bash
# The engine on a CUDA GPU: check it against the CPU, then time it.
#   bash bench/gpu_check.sh            (from anywhere; PYTHON=... picks the interpreter)
# 1. installs CuPy (cupy-cuda12x or -13x, matching nvidia-smi's CUDA version) and torch when
#    they are missing;
# 2. trains the same networks on CPU and GPU from the same seed and checks that the loss
#    histories and the predictions agree (float64 tightly, float32 loosely);
# 3. prints GPU/CPU throughput of the engine and CuPy/torch-CUDA throughput for the same
#    network, optimizer and batch (784-512-256-10 relu softmax-CE SGD; batches 32, 256, 1024).
# Exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}

if ! nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU visible (nvidia-smi failed); run this on a machine with one" >&2
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
  echo "gpu_check: installing a CUDA build of torch (for the CuPy/torch-CUDA ratio)"
  "$PY" -m pip install -q torch || echo "gpu_check: no CUDA torch; that ratio will be skipped" >&2
fi

exec "$PY" - <<'EOF'
import importlib.util
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.getcwd())
from engine import Network  # noqa: E402

spec_ = importlib.util.spec_from_file_location("bench_engine", "bench/engine.py")
bench = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(bench)

import cupy  # noqa: E402

failures = []


def check(label, ok, detail):
    print(f"  {'ok  ' if ok else 'FAIL'} {label}: {detail}")
    if not ok:
        failures.append(label)


def net_spec(hidden, out, loss):
    return {"layers": [{"units": 512, "activation": hidden}, {"units": 256, "activation": hidden},
                       {"units": 10, "activation": out}], "loss": loss}


print(f"\nCuPy {cupy.__version__}, GPU: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
print("\n1. GPU results against CPU results (same seed, data and spec)")
X, y = bench.make_data(8192, seed=1)
Y1h = np.eye(10, dtype=np.float32)[y]
cases = [("relu-ce", net_spec("relu", "softmax", "cross_entropy"), y),
         ("sigmoid-se", net_spec("sigmoid", "sigmoid", "squared_error"), Y1h)]
for dtype, rtol in (("float64", 1e-7), ("float32", 2e-3)):
    for name, spec, target in cases:
        training = {"optimizer": "momentum", "learning_rate": 0.01, "epochs": 3,
                    "batch_size": 256, "validation_split": 0.1, "seed": 0}
        cpu = Network(spec, seed=0, dtype=dtype, device="cpu")
        gpu = Network(spec, seed=0, dtype=dtype, device="gpu")
        assert gpu.device == "gpu"
        h_cpu, h_gpu = cpu.fit(X, target, training), gpu.fit(X, target, training)
        losses = np.array([[a["loss"], b["loss"], a["val_loss"], b["val_loss"]]
                           for a, b in zip(h_cpu, h_gpu)])
        err = max(np.max(np.abs(losses[:, 0] - losses[:, 1]) / np.abs(losses[:, 0])),
                  np.max(np.abs(losses[:, 2] - losses[:, 3]) / np.abs(losses[:, 2])))
        check(f"{dtype} {name} loss history", err <= rtol, f"max rel diff {err:.2e} (<= {rtol:g})")
        p_cpu, p_gpu = cpu.predict(X[:1000]), gpu.predict(X[:1000])
        perr = float(np.max(np.abs(p_cpu - p_gpu)))
        check(f"{dtype} {name} predictions", perr <= 10 * rtol, f"max abs diff {perr:.2e}")
        back = Network.from_bytes(gpu.save_bytes(), device="cpu")
        serr = float(np.max(np.abs(back.predict(X[:1000]) - p_gpu)))
        check(f"{dtype} {name} GPU state restored on CPU", serr <= 10 * rtol, f"{serr:.2e}")

print("\n2. throughput, one epoch of 60000 x 784 float32, median of 3 interleaved rounds")
X, y = bench.make_data(60000)


def engine_epoch(device, Xd, yd, batch):
    started = time.perf_counter()
    Network(net_spec("relu", "softmax", "cross_entropy"), seed=0, device=device).fit(
        Xd, yd, {"optimizer": "sgd", "learning_rate": 0.01, "epochs": 1, "batch_size": batch})
    return len(Xd) / (time.perf_counter() - started)   # fit syncs once per epoch


torch = None
try:
    import torch as _torch
    if _torch.cuda.is_available():
        torch = _torch
except ImportError:
    pass


def torch_epoch(Xt, yt, batch):
    nn = torch.nn
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 10)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ce = nn.CrossEntropyLoss()
    torch.cuda.synchronize()
    started = time.perf_counter()
    perm = torch.randperm(len(Xt), device="cuda")
    for i in range(0, len(Xt), batch):
        idx = perm[i:i + batch]
        loss = ce(model(Xt.index_select(0, idx)), yt.index_select(0, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return len(Xt) / (time.perf_counter() - started)


Xg, yg = cupy.asarray(X), cupy.asarray(y)
Xt = yt = None
if torch is not None:
    Xt, yt = torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda")
print(f"{'batch':>6}{'engine CPU /s':>16}{'engine GPU /s':>16}{'torch CUDA /s':>16}"
      f"{'GPU/CPU':>10}{'CuPy/torch':>12}")
for batch in (32, 256, 1024):
    engine_epoch("gpu", Xg[:4096], yg[:4096], batch)            # warm-up: kernels, pools
    if torch is not None:
        torch_epoch(Xt[:4096], yt[:4096], batch)
    rates = {"cpu": [], "gpu": [], "torch": []}
    for _ in range(3):
        rates["cpu"].append(engine_epoch("cpu", X, y, batch))
        rates["gpu"].append(engine_epoch("gpu", Xg, yg, batch))
        if torch is not None:
            rates["torch"].append(torch_epoch(Xt, yt, batch))
    med = {k: statistics.median(v) if v else float("nan") for k, v in rates.items()}
    gpu_cpu = statistics.median(g / c for g, c in zip(rates["gpu"], rates["cpu"]))
    vs_torch = (statistics.median(g / t for g, t in zip(rates["gpu"], rates["torch"]))
                if rates["torch"] else float("nan"))
    print(f"{batch:>6}{med['cpu']:>16,.0f}{med['gpu']:>16,.0f}{med['torch']:>16,.0f}"
          f"{gpu_cpu:>10.2f}{vs_torch:>12.2f}")

print("\ngpu_check:", "FAILED: " + ", ".join(failures) if failures else "all checks passed")
sys.exit(1 if failures else 0)
EOF
