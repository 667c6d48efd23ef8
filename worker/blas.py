"""NumPy's BLAS in this process: which OpenBLAS kernels it loads, and how many threads it may
use (OpenBLAS, MKL, BLIS)."""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

from threadpoolctl import threadpool_limits

CORETYPE_VAR = "OPENBLAS_CORETYPE"


def fast_openblas_kernel(cpuinfo: str) -> str | None:
    """The OpenBLAS kernel set to ask for on the CPU `cpuinfo` (/proc/cpuinfo) describes, or
    None to keep OpenBLAS's own choice.

    On AMD Zen 4 (family 25 with AVX-512; Zen 3, the same family, has none) OpenBLAS loads its
    AVX-512 SkylakeX kernels, but Zen 4 runs 512-bit vectors as two 256-bit halves and the
    AVX2 Zen kernels trained 3.5-4.7% faster there (784-512-256-10 at batch 32 to 1024,
    sigmoid and relu, Adam in float64; 7 interleaved rounds, one process per kernel)."""
    first_cpu = cpuinfo.split("\n\n", 1)[0]
    fields = {}
    for line in first_cpu.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    zen4 = (fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
            and "avx512f" in fields.get("flags", "").split())
    return "Zen" if zen4 else None


def this_cpus_openblas_kernel(cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
    """fast_openblas_kernel() for the CPU this process runs on (None where there is no
    /proc/cpuinfo to read, as off Linux)."""
    try:
        with open(cpuinfo_path) as f:
            return fast_openblas_kernel(f.read())
    except OSError:
        return None


def prefer_fast_openblas_kernel(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Set OPENBLAS_CORETYPE to this CPU's fast_openblas_kernel(); returns what it set, if any.

    OpenBLAS reads the variable once, when NumPy loads it, so this does nothing once NumPy is
    imported; a kernel the user set stands (OPENBLAS_CORETYPE=SkylakeX restores the default
    on Zen 4). Child processes inherit the choice."""
    if CORETYPE_VAR in environ or "numpy" in sys.modules:
        return None
    kernel = this_cpus_openblas_kernel()
    if kernel is not None:
        environ[CORETYPE_VAR] = kernel
    return kernel


def limit_blas_threads(threads: int) -> None:
    """At most `threads` BLAS threads from now on in this process (0 leaves the library's
    default: one per core). Processes that share a host's cores each need a share of them:
    OpenBLAS threads that outnumber the free cores spin against each other, which on a busy
    2-core host made a 256-row predict 3x slower and a training epoch up to 10x slower."""
    if threads > 0:
        threadpool_limits(threads, user_api="blas")
