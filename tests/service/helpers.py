"""Small helpers shared by the service tests (HTTP only: they see what a client sees)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np

from service.embedded_redis import free_port
from service.launcher import Stack
from worker.settings import Settings

FINISHED = {"succeeded", "failed", "canceled"}


def wait_for_job(api: httpx.Client, job_id: str, timeout_s: float = 60.0,
                 until: set[str] = FINISHED) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job.get("status") in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout_s} s")
        time.sleep(0.05)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def upload_npz(api: httpx.Client, X: np.ndarray, y: np.ndarray, name: str = "data") -> dict:
    answer = api.post("/v1/datasets", files={"file": (f"{name}.npz", npz_bytes(X=X, y=y))},
                      data={"name": name})
    assert answer.status_code == 201, answer.text
    return answer.json()


def classifier(hidden: int = 16, classes: int = 3, activation: str = "tanh") -> dict:
    return {"layers": [{"units": hidden, "activation": activation},
                       {"units": classes, "activation": "softmax"}],
            "loss": "cross_entropy"}


def blobs(n: int = 150, classes: int = 3, features: int = 4, seed: int = 0):
    """Separable Gaussian blobs: (X float32 (n, features), y int64 (n,))."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = rng.normal(scale=4.0, size=(classes, features))
    X = centers[y] + rng.normal(size=(n, features))
    return X.astype(np.float32), y.astype(np.int64)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def own_stack(root: Path, workers: int = 1, extra_env: dict[str, str] | None = None) -> Stack:
    """A stack of its own (embedded Valkey under root/data, logs in root/logs) for tests that
    change settings or break things, so the shared session stack is never affected."""
    stack = Stack(Settings(redis_url=None, data_dir=root / "data"), "127.0.0.1", free_port(),
                  workers=workers, log_dir=root / "logs", extra_env=extra_env).start()
    stack.logs = root / "logs"
    return stack


def trained_records(api: httpx.Client, X: np.ndarray, y: np.ndarray, network: dict,
                    epochs: int = 2) -> dict:
    """Upload (X, y), train `network` on it to success: {dataset_id, job_id, model_id}."""
    dataset = api.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(X=X, y=y))})
    assert dataset.status_code == 201, dataset.text
    job = api.post("/v1/jobs", json={"network": network, "dataset_id": dataset.json()["id"],
                                     "training": {"epochs": epochs}})
    assert job.status_code == 202, job.text
    done = wait_for_job(api, job.json()["id"])
    assert done["status"] == "succeeded", done
    return {"dataset_id": dataset.json()["id"], "job_id": done["id"],
            "model_id": done["model_id"]}
