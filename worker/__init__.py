"""RQ job functions, the Redis store and the settings both processes read."""

from worker.blas import prefer_fast_openblas_kernel

# Before anything in this process loads NumPy, which loads OpenBLAS (see worker.blas).
prefer_fast_openblas_kernel()
