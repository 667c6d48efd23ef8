"""Workers take tenants' plain jobs in turn: one tenant's many jobs go into the workers' queue
one at a time, as each starts, so another tenant's job waits behind at most one of them plus
those running (before: behind all eight of its active jobs). Real HTTP, two real workers."""

from __future__ import annotations

import httpx

from tests.service.fault_helpers import blobs, fault_stack, upload
from tests.service.helpers import wait_for_job

KEYS = {"alice": "alice-turns-4b1c", "bob": "bob-turns-0d7e"}
NETWORK = {"layers": [{"units": 32, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
           "loss": "cross_entropy"}


def train(api: httpx.Client, dataset_id: str, epochs: int) -> dict:
    answer = api.post("/v1/jobs", json={
        "dataset_id": dataset_id, "network": NETWORK,
        "training": {"optimizer": "sgd", "learning_rate": 0.01, "epochs": epochs,
                     "batch_size": 8}})
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_another_tenants_job_waits_behind_one_of_a_tenants_eight_not_all(tmp_path):
    workers = 2
    with fault_stack(tmp_path, workers=workers, BACKPROP_API_KEYS=",".join(
            f"{t}:{k}" for t, k in KEYS.items())) as fs:
        def client(name: str) -> httpx.Client:
            return httpx.Client(base_url=fs.stack.url, timeout=30,
                                headers={"Authorization": f"Bearer {KEYS[name]}"})

        with client("alice") as alice, client("bob") as bob:
            data = upload(alice, *blobs(1200))
            theirs = upload(bob, *blobs(300, seed=1))
            # Eight jobs of a second or two each: within the default 8 active jobs.
            jobs = [train(alice, data["id"], 40) for _ in range(8)]
            waiting = [j for j in jobs if j["waiting"]]
            assert len(waiting) >= 8 - workers - 1  # the rest wait in alice's backlog
            assert "BACKPROP_MAX_QUEUED_JOBS_PER_TENANT=1" in waiting[0]["waiting"]["reason"]
            bobs = train(bob, theirs["id"], 1)
            assert bobs["waiting"] is None          # bob has nothing queued: straight in

            bobs = wait_for_job(bob, bobs["id"], 120)
            ended = [wait_for_job(alice, j["id"], 180) for j in jobs]
            assert bobs["status"] == "succeeded", fs.log_text()
            assert [j["status"] for j in ended] == ["succeeded"] * 8, fs.log_text()
            before_bob = sum(j["started_at"] < bobs["started_at"] for j in ended)
            # Two running and one in the queue at most when bob submitted.
            assert before_bob <= workers + 1, (before_bob, fs.log_text())
