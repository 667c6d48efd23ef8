"""Issue 22, item 2, through real HTTP against a stack of its own: a full Valkey never fails
another tenant's running job. Uploads and submits stop short of maxmemory by
BACKPROP_REDIS_RESERVE_BYTES (507 naming it), so a tenant filling the store leaves room for
running jobs; and when Valkey does reach maxmemory, a running job's writes wait and retry
(its lease kept alive) and it goes on once memory returns."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from core.keys import Keys
from tests.service.helpers import npz_bytes, wait_for_job
from tests.service.hostile_helpers import as_tenant, keyed_stack

MAXMEMORY, RESERVE = 48 * 2**20, 12 * 2**20


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with keyed_stack(tmp_path_factory.mktemp("hostile-full"),
                     BACKPROP_REDIS_RESERVE_BYTES=str(RESERVE), BACKPROP_LEASE_S="4",
                     BACKPROP_HEARTBEAT_S="0.5", BACKPROP_CHECKPOINT_EVERY_S="0.5") as running:
        # The stack's Valkey is started from this process's settings: size it here.
        redis.Redis.from_url(running.env["BACKPROP_REDIS_URL"]).config_set("maxmemory",
                                                                           MAXMEMORY)
        yield running


def epochs_recorded(store: redis.Redis, job_id: str) -> int:
    return int(store.llen(Keys().job_history(job_id)))


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def fill_to_the_brim(store: redis.Redis, settle_s: float = 30.0) -> int:
    """Write filler keys until Valkey stays at maxmemory: big ones, then small ones, then
    small ones again while its client buffers shrink (a refused 1 MB write held 1 MB of query
    buffer for a while). Returns how many it wrote (filler:0 ...)."""
    written, refused_in_a_row = 0, 0
    for size in (2**20, 65536, 4096, 256):
        while True:
            try:
                store.set(f"filler:{written}", b"f" * size)
                written += 1
            except redis.OutOfMemoryError:
                break
    deadline = time.monotonic() + settle_s
    while refused_in_a_row < 4:
        assert time.monotonic() < deadline, "Valkey never stayed full"
        time.sleep(0.5)
        try:
            while True:
                store.set(f"filler:{written}", b"f" * 256)
                written += 1
                refused_in_a_row = 0
        except redis.OutOfMemoryError:
            refused_in_a_row += 1
    return written


def test_a_full_store_never_fails_another_tenants_running_job(stack):
    """Before: bob's job ended failed ("internal error ... OutOfMemoryError") with no model
    once alice had filled Valkey, and stayed failed after she freed the memory."""
    store = redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"])
    X = np.random.default_rng(0).normal(size=(16, 4)).round(3)
    body = {"network": {"layers": [{"units": 8, "activation": "tanh"},
                                   {"units": 2, "activation": "softmax"}],
                        "loss": "cross_entropy"},
            "data": {"X": X.tolist(), "y": (X[:, 0] > 0).astype(int).tolist()},
            "training": {"epochs": 30000, "optimizer": "sgd", "batch_size": 1}}
    with as_tenant(stack, "bob") as bob, as_tenant(stack, "alice") as alice:
        job = bob.post("/v1/jobs", json=body)
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        wait_until(lambda: epochs_recorded(store, job_id) > 20, 60, "bob's job never started")

        # Alice uploads until refused: refused short of maxmemory, naming the reserve.
        data = np.random.default_rng(1).normal(size=(60_000, 8)).astype(np.float32)
        refused = None
        for _ in range(40):
            answer = alice.post("/v1/datasets",
                                files={"file": ("d.npz", npz_bytes(X=data, y=data[:, 0]))})
            if answer.status_code != 201:
                refused = answer
                break
        assert refused is not None and refused.status_code == 507, refused and refused.text
        assert "BACKPROP_REDIS_RESERVE_BYTES" in refused.json()["error"]["message"]
        assert store.info("memory")["used_memory"] < MAXMEMORY
        at = epochs_recorded(store, job_id)
        wait_until(lambda: epochs_recorded(store, job_id) > at + 20, 30,
                   "bob's job stopped recording epochs once alice filled her share")

        # Something fills the rest (as another writer could): bob's writes wait, not fail.
        i = fill_to_the_brim(store)
        wait_until(lambda: "Redis is full (maxmemory) while" in worker_logs(stack), 20,
                   "bob's job never met the full store")
        time.sleep(5)  # longer than the 4 s lease: kept alive while the job waits
        waiting = bob.get(f"/v1/jobs/{job_id}").json()
        assert waiting["status"] == "running" and waiting["restarts"] == 0, waiting
        stalled = epochs_recorded(store, job_id)

        store.delete(*[f"filler:{n}" for n in range(i)])  # memory returns
        wait_until(lambda: epochs_recorded(store, job_id) > stalled + 20, 30,
                   "bob's job did not go on once memory returned")
        assert bob.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        done = wait_for_job(bob, job_id, 60)
        assert done["status"] == "canceled" and done["error"] is None, done
        assert done["model_id"] and done["restarts"] == 0, done
        assert bob.get(f"/v1/models/{done['model_id']}").status_code == 200
    assert "internal error" not in worker_logs(stack)


def worker_logs(stack) -> str:
    return "".join(p.read_text() for p in stack.logs.glob("worker*.log"))
