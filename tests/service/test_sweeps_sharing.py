"""Sweeps on real workers that die, and next to another tenant: a worker killed mid-sweep loses
no trial, and another tenant's job is not held behind a big sweep."""

from __future__ import annotations

import time

import redis
from rq import Worker
from rq.serializers import JSONSerializer

from tests.service.fault_helpers import (FINISHED, api_keys, blobs, child_pids, fault_stack,
                                         keyed_client, kill, upload, wait_until)
from tests.service.sweep_helpers import wait_for_sweep

CLASSIFIER = {"layers": [{"units": 16, "activation": "tanh"},
                         {"units": 3, "activation": "softmax"}], "loss": "cross_entropy"}


def sweep_body(dataset_id: str, batch_size: int, **extra) -> dict:
    return {"dataset_id": dataset_id,
            "base": {"network": CLASSIFIER,
                     "training": {"optimizer": "sgd", "batch_size": batch_size}},
            "space": {"training.learning_rate": {"log_uniform": [0.001, 0.3]},
                      "network.layers.0.units": [4, 16]}, **extra}


def current_job(fs, worker_pid: int) -> str | None:
    """The job id the RQ worker with this pid is running (its RQ job is `<job id>-a<n>`)."""
    connection = redis.Redis.from_url(fs.valkey.url)
    for worker in Worker.all(connection=connection, serializer=JSONSerializer):
        if worker.pid == worker_pid and worker.get_current_job_id():
            return worker.get_current_job_id().rsplit("-a", 1)[0]
    return None


def test_a_worker_killed_mid_sweep_loses_no_trial(tmp_path):
    with fault_stack(tmp_path, workers=2) as fs:
        dataset = upload(fs.api, *blobs(1200))
        answer = fs.api.post("/v1/sweeps", json=sweep_body(
            dataset["id"], 1, trials=6, max_epochs=8, min_epochs=2, reduction_factor=2))
        assert answer.status_code == 202, answer.text
        sweep_id = answer.json()["id"]

        def horse_on_a_checkpointed_trial():
            sweep = fs.api.get(f"/v1/sweeps/{sweep_id}").json()
            running = {t["job_id"] for t in sweep["trials"] if t["status"] == "running"
                       and t["epochs"] >= 1}
            for p in fs.stack.workers:
                kids = child_pids(p.pid) if p.poll() is None else []
                if kids and current_job(fs, p.pid) in running:
                    return p.pid, kids[0], current_job(fs, p.pid)
            return None

        worker_pid, horse_pid, killed = wait_until(
            horse_on_a_checkpointed_trial, 60, "a trial running past its first epoch",
            fs.log_text)
        kill(horse_pid)
        kill(worker_pid)
        done = wait_for_sweep(fs.api, sweep_id, 180)
        assert done["status"] == "succeeded", fs.log_text()
        assert {t["status"] for t in done["trials"]} <= {"succeeded", "stopped"}
        for trial in done["trials"]:
            job = fs.api.get(f"/v1/jobs/{trial['job_id']}").json()
            assert job["status"] in FINISHED
            history = fs.api.get(f"/v1/jobs/{trial['job_id']}/history").json()["epochs"]
            assert [e["epoch"] for e in history] == list(range(1, trial["epochs"] + 1))
        # The killed trial was resumed from its checkpoint, not lost.
        assert fs.api.get(f"/v1/jobs/{killed}").json()["restarts"] == 1
        assert done["best"]["model_id"]


def test_another_tenants_job_ends_within_45_s_while_a_12_trial_sweep_runs(tmp_path):
    workers = 2
    keys = {"alice": "alice-sweep-1f2e", "bob": "bob-sweep-88a1"}
    with fault_stack(tmp_path, workers=workers, BACKPROP_API_KEYS=api_keys(keys)) as fs:
        with keyed_client(fs, keys["alice"]) as alice, keyed_client(fs, keys["bob"]) as bob:
            data = upload(alice, *blobs(1200))
            # Batches of one: an epoch of some 1200 updates, a trial of many seconds.
            answer = alice.post("/v1/sweeps", json=sweep_body(
                data["id"], 1, trials=12, max_epochs=27))
            assert answer.status_code == 202, answer.text
            sweep_id = answer.json()["id"]
            wait_until(lambda: alice.get(f"/v1/sweeps/{sweep_id}").json()["progress"][
                "running"] == workers, 60, "the sweep on every worker", fs.log_text)

            theirs = upload(bob, *blobs(300, seed=1))
            job = bob.post("/v1/jobs", json={
                "dataset_id": theirs["id"], "network": CLASSIFIER,
                "training": {"optimizer": "sgd", "epochs": 1, "batch_size": 32}})
            assert job.status_code == 202, job.text
            started = time.monotonic()
            wait_until(lambda: bob.get(f"/v1/jobs/{job.json()['id']}").json()["status"]
                       in FINISHED, 45, "bob's job ended while alice's sweep runs",
                       fs.log_text)
            waited = time.monotonic() - started
            sweep = alice.get(f"/v1/sweeps/{sweep_id}").json()
            assert sweep["status"] == "running" and sweep["progress"]["trials_ended"] < 12
            assert bob.get(f"/v1/jobs/{job.json()['id']}").json()["status"] == "succeeded"
            assert bob.get(f"/v1/sweeps/{sweep_id}").status_code == 404  # alice's, not bob's
            alice.post(f"/v1/sweeps/{sweep_id}/cancel")
            assert waited < 45
