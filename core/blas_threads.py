"""How many threads NumPy's BLAS (OpenBLAS, MKL, BLIS) may use in this process.

Which kernels OpenBLAS loads is a deployment setting, not this code's: set OPENBLAS_CORETYPE
in the environment of the processes (README, Performance knobs)."""

from __future__ import annotations


def limit_blas_threads(threads: int) -> None:
    """At most `threads` BLAS threads from now on in this process (0 leaves the library's
    default: one per core). Processes that share a host's cores each need a share of them:
    OpenBLAS threads that outnumber the free cores spin against each other, which on a busy
    2-core host made a 256-row predict 3x slower and a training epoch up to 10x slower."""
    if threads > 0:
        # Imported here, in the server's processes only: importing threadpoolctl sets
        # KMP_DUPLICATE_LIB_OK in the environment.
        from threadpoolctl import threadpool_limits  # noqa: PLC0415

        threadpool_limits(threads, user_api="blas")
