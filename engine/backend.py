"""The one array-module switch: NumPy on the CPU, CuPy on a GPU.

Everything else in the engine takes `xp` from here and never imports cupy itself.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from .errors import DeviceUnavailable

DEVICES = ("auto", "cpu", "gpu")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Backend:
    """The array module for one device. `device` is "cpu" or "gpu" (never "auto")."""

    xp: ModuleType
    device: str

    @property
    def is_cpu(self) -> bool:
        return self.device == "cpu"

    def asarray(self, a, dtype=None):
        """`a` on this device (no copy when it is already there with that dtype)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a) -> np.ndarray:
        """`a` as a host NumPy array."""
        if self.is_cpu:
            return np.asarray(a)
        return self.xp.asnumpy(a)


def _cupy_or_reason() -> tuple[ModuleType | None, str]:
    try:
        import cupy  # noqa: PLC0415 - optional, imported only when a GPU is asked for
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return None, f"CuPy is not importable ({exc.__class__.__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy found no usable CUDA driver ({exc})"
    if count < 1:
        return None, "CuPy sees no CUDA GPU"
    return cupy, ""


def get_backend(device: str = "cpu") -> Backend:
    """Resolve "cpu", "gpu" or "auto" (GPU when available, else CPU) to a Backend."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid devices: {', '.join(sorted(DEVICES))}")
    if device == "cpu":
        return Backend(np, "cpu")
    cupy, reason = _cupy_or_reason()
    if cupy is not None:
        return Backend(cupy, "gpu")
    if device == "auto":
        return Backend(np, "cpu")
    raise DeviceUnavailable(
        f"device 'gpu' needs CuPy and a visible CUDA GPU, but {reason}. Install the extra "
        "with `pip install 'backprop-service[gpu]'` (cupy-cuda12x) on a machine with a GPU, "
        "or use device='cpu' (or 'auto' to fall back to the CPU)."
    )


def check_dtype(dtype: str) -> str:
    """Return `dtype` as a name, or raise listing the supported ones."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}")
    return name


def array_module(a) -> ModuleType:
    """numpy for host arrays, cupy for device arrays (cupy is already imported then)."""
    return np if isinstance(a, (np.ndarray, np.generic, float, int)) else sys.modules["cupy"]
