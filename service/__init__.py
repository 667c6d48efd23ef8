"""The faces of backprop-service: the FastAPI app, the `backprop` CLI and the Python client."""

import worker  # noqa: F401  (first: it picks OpenBLAS's kernels before NumPy is loaded)
