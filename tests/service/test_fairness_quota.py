"""One tenant cannot hold the queue or the store for everyone: per-tenant active jobs (the
rest waits in the tenant's backlog) and per-tenant stored bytes, through real HTTP against a
stack of its own (two workers, two tenants' keys and small limits)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from core import quota
from core.keys import Keys
from core.records import JobRecord
from tests.service.fault_helpers import blobs
from tests.service.helpers import npz_bytes, own_stack, scrape, value, wait_for_job

KEYS = {"alice": "alice-fair-5c1d", "bob": "bob-fair-9e2a", "carol": "carol-fair-33b0"}
LIMIT, QUOTA = 2, 300_000
NETWORK = {"layers": [{"units": 32, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
           "loss": "cross_entropy"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = own_stack(Path(tmp_path_factory.mktemp("fair")), workers=2, extra_env={
        "BACKPROP_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
        "BACKPROP_MAX_ACTIVE_JOBS_PER_TENANT": str(LIMIT),
        # Both of alice's active jobs may wait in the queue at once: this module tests the
        # active limit and quotas (test_fair_turns tests the turns).
        "BACKPROP_MAX_QUEUED_JOBS_PER_TENANT": str(LIMIT),
        "BACKPROP_MAX_TENANT_BYTES": str(QUOTA)})
    yield running
    running.stop()


def tenant(stack, name: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=30,
                        headers={"Authorization": f"Bearer {KEYS[name]}"})


def upload(api: httpx.Client, X: np.ndarray, y: np.ndarray) -> httpx.Response:
    return api.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(X=X, y=y))})


def train(api: httpx.Client, dataset_id: str, epochs: int) -> dict:
    """A job of some 30 ms an epoch here (1200 rows, batches of 8)."""
    answer = api.post("/v1/jobs", json={
        "dataset_id": dataset_id, "network": NETWORK,
        "training": {"optimizer": "sgd", "learning_rate": 0.01, "epochs": epochs,
                     "batch_size": 8}})
    assert answer.status_code == 202, answer.text
    return answer.json()


def jobs_gauge(stack, state: str) -> float:
    """backprop_jobs{state=...} from /metrics."""
    with httpx.Client(base_url=stack.url, timeout=10) as api:
        return value(scrape(api), "backprop_jobs", state=state)


def test_another_tenants_job_starts_before_a_tenants_backlog_drains(stack):
    with tenant(stack, "alice") as alice, tenant(stack, "bob") as bob:
        data = upload(alice, *blobs(1200)).json()["id"]
        # Two long jobs take both workers; three more wait in alice's backlog, not in RQ. The
        # long jobs end seconds apart: ended together, both workers would take bob's job and
        # her first promoted one in the same moment, and which started first would be chance.
        jobs = [train(alice, data, epochs) for epochs in (150, 300)] + [train(alice, data, 3)
                                                                       for _ in range(3)]
        assert [j["waiting"] for j in jobs[:2]] == [None, None]
        assert [j["waiting"]["position"] for j in jobs[2:]] == [1, 2, 3]
        assert all(j["status"] == "queued" for j in jobs[2:])
        reason = jobs[4]["waiting"]["reason"]
        assert f"BACKPROP_MAX_ACTIVE_JOBS_PER_TENANT={LIMIT}" in reason and "2 of its" in reason
        assert f"BACKPROP_MAX_QUEUED_JOBS_PER_TENANT={LIMIT}" in reason
        listed = alice.get("/v1/jobs", params={"status": "queued"}).json()["jobs"]
        assert {j["id"]: j["waiting"]["position"] for j in listed if j["waiting"]} == {
            jobs[2]["id"]: 1, jobs[3]["id"]: 2, jobs[4]["id"]: 3}
        assert jobs_gauge(stack, "backlogged") == 3

        theirs = train(bob, upload(bob, *blobs(1200, seed=1)).json()["id"], 3)
        assert theirs["waiting"] is None  # bob has no job active: straight into the queue

        # Cancel and delete of a backlogged job.
        canceled = alice.post(f"/v1/jobs/{jobs[4]['id']}/cancel")
        assert canceled.status_code == 202 and canceled.json()["status"] == "canceled"
        assert canceled.json()["started_at"] is None and canceled.json()["waiting"] is None
        assert alice.delete(f"/v1/jobs/{jobs[4]['id']}").status_code == 204
        assert alice.get(f"/v1/jobs/{jobs[4]['id']}").status_code == 404
        assert alice.get(f"/v1/jobs/{jobs[3]['id']}").json()["waiting"]["position"] == 2
        assert jobs_gauge(stack, "backlogged") == 2

        bobs = wait_for_job(bob, theirs["id"], 120)
        assert bobs["status"] == "succeeded", bobs
        ended = [wait_for_job(alice, j["id"], 120) for j in jobs[:4]]
        assert [j["status"] for j in ended] == ["succeeded"] * 4, ended
        # Bob's job was queued behind alice's two running jobs only: the first worker freed
        # took it before any of her backlogged jobs, each promoted when one of hers ended.
        assert bobs["started_at"] < min(j["started_at"] for j in ended[2:])
        assert max(j["started_at"] for j in ended[2:]) > min(j["finished_at"] for j in ended[:2])


def test_a_tenants_stored_bytes_are_capped_and_given_back(stack):
    counter = redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"])
    used = lambda: int(counter.get(Keys().tenant_bytes("carol")) or 0)  # noqa: E731
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5000, 8)).astype(np.float32), rng.integers(0, 3, 5000)
    with tenant(stack, "carol") as carol, tenant(stack, "bob") as bob:
        first = upload(carol, X, y)
        assert first.status_code == 201, first.text
        meta = quota.stored_hash_bytes(counter, Keys().dataset(first.json()["id"]))
        assert used() == first.json()["bytes"] + meta and meta > 100  # arrays and schema
        over = upload(carol, X, y)
        assert over.status_code == 413, over.text
        message = over.json()["error"]["message"]
        assert f"BACKPROP_MAX_TENANT_BYTES={QUOTA}" in message
        assert "stores 0.2 MiB of its 0.3 MiB" in message and "delete datasets" in message
        assert upload(bob, X, y).status_code == 201  # another tenant's quota is its own

        inline = {"network": NETWORK, "training": {"epochs": 2},
                  "data": {"X": X[:3000].tolist(), "y": y[:3000].tolist()}}
        refused = carol.post("/v1/jobs", json=inline)
        assert refused.status_code == 413 and refused.json()["error"]["field"] == "data.X"
        assert "BACKPROP_MAX_TENANT_BYTES" in refused.json()["error"]["message"]

        assert carol.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204
        assert used() == 0
        job = carol.post("/v1/jobs", json=inline)
        assert job.status_code == 202, job.text
        done = wait_for_job(carol, job.json()["id"], 60)
        assert done["status"] == "succeeded", done
        weights = carol.get(f"/v1/models/{done['model_id']}/weights",
                            headers={"accept": "application/x-npz"}).content
        # The inline data went with the job's end; its record and history stay, and the model.
        record = JobRecord.decode(counter.hgetall(Keys().job(done["id"])))
        model = quota.stored_hash_bytes(counter, Keys().model(done["model_id"]))
        assert used() == record.stored_bytes + model and model > len(weights)
        assert carol.delete(f"/v1/jobs/{done['id']}").status_code == 204  # and its model
        assert used() == 0
