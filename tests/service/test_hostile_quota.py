"""Issue 22, items 1 and 3, through real HTTP against a stack of its own: every byte a tenant
makes the store hold is charged to its quota (a dataset's schema, job records and histories,
the model a job will store, reserved at submit), given back when freed (finished jobs past
BACKPROP_RESULT_TTL_S included), and a tenant's backlog has a cap."""

from __future__ import annotations

import csv
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import redis

from core import quota
from core.keys import Keys
from tests.service.helpers import wait_for_job
from tests.service.hostile_helpers import as_tenant, keyed_stack

QUOTA = 2 * 2**20
TTL_S = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with keyed_stack(tmp_path_factory.mktemp("hostile-quota"), BACKPROP_MAX_TENANT_BYTES=str(QUOTA),
                     BACKPROP_MAX_ACTIVE_JOBS_PER_TENANT="1", BACKPROP_MAX_BACKLOG_PER_TENANT="2",
                     BACKPROP_RESULT_TTL_S=str(TTL_S), BACKPROP_LEASE_S="4") as running:
        yield running


def used(stack, tenant: str) -> int:
    return int(redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"]).get(
        Keys().tenant_bytes(tenant)) or 0)


def wide_categories_csv(rows: int = 300, length: int = 2000) -> bytes:
    """Few rows, but a text column whose every value is a distinct 2 KB category: the schema
    (which lists the categories) is some 600 KB, the arrays a few KB."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["tag", "x", "y"])
    for i in range(rows):
        writer.writerow([f"{i:05d}" + "c" * length, i % 7, i % 2])
    return out.getvalue().encode()


def small_data(rows: int = 64) -> dict:
    X = np.random.default_rng(0).normal(size=(rows, 4)).round(3)
    return {"X": X.tolist(), "y": (X[:, 0] > 0).astype(int).tolist()}


NETWORK = {"layers": [{"units": 8, "activation": "tanh"}, {"units": 2, "activation": "softmax"}],
           "loss": "cross_entropy"}


def test_a_datasets_schema_is_charged(stack):
    """Before: 600 KB of categories were stored for a charge of a few KB; three such uploads
    (1.8 MB) all fitted a 2 MiB quota with room to spare, and so did thirty."""
    content = wide_categories_csv()
    with as_tenant(stack, "alice") as alice:
        answers = [alice.post("/v1/datasets", files={"file": ("t.csv", content)},
                              data={"target": "y"}) for _ in range(4)]
        codes = [a.status_code for a in answers]
        assert codes[:3] == [201, 201, 201] and codes[3] == 413, [a.text[:200] for a in answers]
        stored = answers[0].json()
        assert used(stack, "alice") > 3 * 500_000 > 3 * stored["bytes"]
        assert "BACKPROP_MAX_TENANT_BYTES" in answers[3].json()["error"]["message"]
        for answer in answers[:3]:
            assert alice.delete(f"/v1/datasets/{answer.json()['id']}").status_code == 204
        assert used(stack, "alice") == 0  # every byte given back


def test_jobs_submitted_together_cannot_share_the_quota(stack):
    """Four jobs at once, each reserving some 40% of the quota (its checkpoint, model and
    history): two get in, two are refused. Before: each checked the same free bytes and all
    four were accepted."""
    network = {"layers": [{"units": 256, "activation": "tanh"},
                          {"units": 260, "activation": "tanh"},
                          {"units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
    body = {"network": network, "data": small_data(), "training": {"epochs": 3}}
    with as_tenant(stack, "bob") as bob, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: bob.post("/v1/jobs", json=body), range(4)))
        codes = sorted(a.status_code for a in answers)
        assert codes == [202, 202, 413, 413], [a.text[:300] for a in answers]
        refused = next(a for a in answers if a.status_code == 413).json()["error"]
        assert "BACKPROP_MAX_TENANT_BYTES" in refused["message"] and "model" in refused["message"]
        assert used(stack, "bob") <= QUOTA
        for answer in answers:
            if answer.status_code == 202:
                done = wait_for_job(bob, answer.json()["id"], 120)
                assert done["status"] == "succeeded", done


def test_histories_are_charged_and_given_back_when_finished_jobs_expire(stack):
    """A job of 3000 epochs reserves its history (3000 lines): the tenant's next, longer job
    is refused while it is stored. Once the job has ended and BACKPROP_RESULT_TTL_S passed,
    the reaper deletes it and gives its bytes back; its model stays, charged."""
    store = redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"])
    body = {"network": NETWORK, "data": small_data(16),
            "training": {"epochs": 3000, "optimizer": "sgd", "batch_size": 16}}
    with as_tenant(stack, "alice") as alice:
        first = alice.post("/v1/jobs", json=body)
        assert first.status_code == 202, first.text
        assert used(stack, "alice") > 3000 * quota.EPOCH_BYTES
        longer = {**body, "training": {**body["training"], "epochs": 6000}}
        refused = alice.post("/v1/jobs", json=longer)
        assert refused.status_code == 413, refused.text
        done = wait_for_job(alice, first.json()["id"], 300)
        assert done["status"] == "succeeded", done
        model = quota.stored_hash_bytes(store, Keys().model(done["model_id"]))
        history = sum(map(len, store.lrange(Keys().job_history(done["id"]), 0, -1)))
        assert history > 3000 * 50 and used(stack, "alice") > model + history
        deadline = time.monotonic() + TTL_S + 30
        while alice.get(f"/v1/jobs/{done['id']}").status_code != 404:
            assert time.monotonic() < deadline, "the finished job never expired"
            time.sleep(0.5)
        assert used(stack, "alice") == model
        assert alice.get(f"/v1/models/{done['model_id']}").status_code == 200
        assert alice.delete(f"/v1/models/{done['model_id']}").status_code == 204
        assert used(stack, "alice") == 0


def test_a_tenants_backlog_has_a_cap_named_in_its_429(stack):
    long = {"network": NETWORK, "data": small_data(16),
            "training": {"epochs": 400, "optimizer": "sgd", "batch_size": 1}}
    with as_tenant(stack, "bob") as bob, as_tenant(stack, "alice") as alice:
        jobs = [bob.post("/v1/jobs", json=long) for _ in range(3)]  # 1 active, 2 waiting
        assert [j.status_code for j in jobs] == [202] * 3, [j.text for j in jobs]
        over = bob.post("/v1/jobs", json=long)
        assert over.status_code == 429, over.text
        assert "BACKPROP_MAX_BACKLOG_PER_TENANT=2" in over.json()["error"]["message"]
        assert over.headers["retry-after"]
        assert alice.post("/v1/jobs", json={**long, "training": {"epochs": 1}}).status_code == 202
        for job in jobs:
            bob.post(f"/v1/jobs/{job.json()['id']}/cancel")
