"""One BLAS call NumPy lacks: C += alpha A^T B, a GEMM that accumulates into its output.

Plain SGD then updates W in the GEMM that forms its gradient (W -= lr/m delta^T x), instead
of writing dL/dW and reading it back. It calls the OpenBLAS that NumPy's wheels already ship
and load (numpy.libs/libscipy_openblas*); where that library or its symbol is not found (other
builds, other platforms) `available` is False and the engine takes the plain NumPy path.
Set ENABLED = False to force that path.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

ENABLED = True
"""Use the fused GEMM when it is available (tests switch it off to compare both paths)."""

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_SYMBOLS = (("scipy_cblas_{}gemm64_", ctypes.c_int64), ("cblas_{}gemm64_", ctypes.c_int64),
            ("scipy_cblas_{}gemm", ctypes.c_int32), ("cblas_{}gemm", ctypes.c_int32))


def _load() -> dict:
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "lib*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern, int_t in _SYMBOLS:
            found = {}
            for prefix, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
                fn = getattr(lib, pattern.format(prefix), None)
                if fn is None:
                    break
                p = ctypes.c_void_p
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t,
                               real, p, int_t, p, int_t, real, p, int_t]
                fn.restype = None
                found[np.dtype(real).char] = fn
            if len(found) == 2:
                return found
    return {}


_GEMM = _load()


def available(dtype) -> bool:
    return ENABLED and np.dtype(dtype).char in _GEMM


def _rows(a: np.ndarray) -> int | None:
    """The leading dimension of a row-major matrix with unit column stride, else None."""
    if (not isinstance(a, np.ndarray) or a.ndim != 2 or a.strides[1] != a.itemsize
            or a.strides[0] % a.itemsize or a.strides[0] < a.shape[1] * a.itemsize):
        return None
    return max(1, a.strides[0] // a.itemsize)


def accumulate_at_b(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float) -> bool:
    """c += alpha * a.T @ b in one GEMM; a (m, p), b (m, q), c (p, q) of one float dtype.

    Returns False, touching nothing, when the fused call cannot be made (the caller then uses
    np.matmul and an explicit update).
    """
    # Called per layer and batch: dtype.char, unlike dtype.name, costs no Python-level work.
    fn = _GEMM.get(c.dtype.char) if ENABLED else None
    lda, ldb, ldc = _rows(a), _rows(b), _rows(c)
    if (fn is None or None in (lda, ldb, ldc) or not c.flags.writeable
            or a.dtype != c.dtype or b.dtype != c.dtype
            or a.shape[0] != b.shape[0] or c.shape != (a.shape[1], b.shape[1])):
        return False
    m, p = a.shape
    fn(_ROW_MAJOR, _TRANS, _NO_TRANS, p, b.shape[1], m, alpha, a.ctypes.data, lda,
       b.ctypes.data, ldb, 1.0, c.ctypes.data, ldc)
    return True
