"""Python client of backprop-service: upload tables or arrays, train, follow a job, predict.

    from backprop_client import Client
    client = Client()          # BACKPROP_URL, BACKPROP_API_KEY; default http://127.0.0.1:8000

Needs httpx and NumPy only (pandas for DataFrames, matplotlib for loss plots, when present);
imports nothing of the server and changes nothing in the process it runs in. Every error the
API answers is an ApiError subclass carrying the API's message and the field it names.
"""

from backprop_client.client import Client, Job, Model
from backprop_client.sweeps import Sweep
from backprop_client.errors import (ApiError, JobFailed, NotFound, ServiceUnavailable,
                                    Unauthorized, ValidationFailed)

__all__ = ["ApiError", "Client", "Job", "JobFailed", "Model", "NotFound", "ServiceUnavailable",
           "Sweep", "Unauthorized", "ValidationFailed"]
