"""The faces of backprop-service: the FastAPI app, the `backprop` CLI and the Python client."""

