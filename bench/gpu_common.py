"""What bench/gpu_check.py, gpu_speed.py and gpu_service.py share: the import path, a
NumPy-backed stand-in for CuPy for dry runs on a machine without a GPU, and ok/FAIL lines."""
from __future__ import annotations

import os
import sys
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def install_numpy_cupy() -> None:
    """Make `import cupy` give NumPy (plus asnumpy and a one-GPU runtime), so every script's
    GPU code path runs, slowly and without a GPU: a dry run of the scripts, not of CUDA."""
    fake = types.ModuleType("cupy")
    fake.__getattr__ = lambda name: getattr(np, name)
    fake.asnumpy = np.asarray
    fake.__version__ = f"NumPy {np.__version__} stand-in"
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1, deviceSynchronize=lambda: None,
        getDeviceProperties=lambda i: {"name": b"NumPy stand-in (dry run)"})
    fake.cuda = types.SimpleNamespace(runtime=runtime)
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(
        used_bytes=lambda: 0, total_bytes=lambda: 0, free_all_blocks=lambda: None)
    sys.modules["cupy"] = fake


def sync() -> None:
    """Wait for the GPU's queued work (so that host clocks time it)."""
    import cupy
    cupy.cuda.runtime.deviceSynchronize()


class Checks:
    """Collects pass/fail lines; `failed` names what failed."""

    def __init__(self):
        self.failed: list[str] = []

    def __call__(self, label: str, ok: bool, detail: str) -> bool:
        print(f"  {'ok  ' if ok else 'FAIL'} {label}: {detail}", flush=True)
        if not ok:
            self.failed.append(label)
        return ok

    def summary(self, name: str) -> int:
        print(f"\n{name}:", "FAILED: " + ", ".join(self.failed) if self.failed
              else "all checks passed", flush=True)
        return 1 if self.failed else 0
