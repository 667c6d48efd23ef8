"""Workers take tenants' plain jobs in turn: one tenant's many jobs go into the workers' queue
one at a time, as each starts, so another tenant's job waits behind at most one of them plus
those running (before: behind all eight of its active jobs). Real HTTP, two real workers."""

from __future__ import annotations

from tests.service.fault_helpers import (api_keys, blobs, fault_stack, keyed_client, submit,
                                         upload)
from tests.service.helpers import wait_for_job

KEYS = {"alice": "alice-turns-4b1c", "bob": "bob-turns-0d7e"}


def test_another_tenants_job_waits_behind_one_of_a_tenants_eight_not_all(tmp_path):
    workers = 2
    with fault_stack(tmp_path, workers=workers, BACKPROP_API_KEYS=api_keys(KEYS)) as fs, \
            keyed_client(fs, KEYS["alice"]) as alice, keyed_client(fs, KEYS["bob"]) as bob:
        data = upload(alice, *blobs(1200))
        theirs = upload(bob, *blobs(300, seed=1))
        # Eight jobs of a second or two each: within the default 8 active jobs.
        jobs = [submit(alice, data["id"], 40) for _ in range(8)]
        waiting = [j for j in jobs if j["waiting"]]
        assert len(waiting) >= 8 - workers - 1  # the rest wait in alice's backlog
        assert "BACKPROP_MAX_QUEUED_JOBS_PER_TENANT=1" in waiting[0]["waiting"]["reason"]
        bobs = submit(bob, theirs["id"], 1)
        assert bobs["waiting"] is None          # bob has nothing queued: straight in

        bobs = wait_for_job(bob, bobs["id"], 120)
        ended = [wait_for_job(alice, j["id"], 180) for j in jobs]
        assert bobs["status"] == "succeeded", fs.log_text()
        assert [j["status"] for j in ended] == ["succeeded"] * 8, fs.log_text()
        before_bob = sum(j["started_at"] < bobs["started_at"] for j in ended)
        # Two running and one in the queue at most when bob submitted.
        assert before_bob <= workers + 1, (before_bob, fs.log_text())
