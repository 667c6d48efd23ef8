"""Redis and the API restarted under a running service: nothing is lost, everything reconnects.

Each test runs its own Valkey and Stack (fault_helpers.fault_stack), never the session stack.
"""

from __future__ import annotations

import time

import httpx
import redis

from core.store import Store
from tests.service.fault_helpers import (assert_contiguous, blobs, epochs, fault_stack, job,
                                         submit, upload, wait_job, wait_until)
from tests.service.helpers import served_from_cache


def test_redis_restart_keeps_everything_and_the_api_recovers_by_itself(tmp_path):
    # One active job per tenant: the queued job waits in the tenant's backlog, not in RQ.
    with fault_stack(tmp_path, workers=1, BACKPROP_MAX_ACTIVE_JOBS_PER_TENANT="1") as fs:
        X, y = blobs(1200)
        dataset = upload(fs.api, X, y)
        finished = submit(fs.api, dataset["id"], epochs=15, batch_size=32)["id"]
        model_id = wait_job(fs, finished)["model_id"]
        long_id = submit(fs.api, dataset["id"], epochs=150)["id"]
        wait_job(fs, long_id, 30, until=lambda j: j["status"] == "running"
                 and j["progress"]["epoch"] >= 10)
        queued_id = submit(fs.api, dataset["id"], epochs=15, batch_size=32)["id"]
        assert job(fs.api, queued_id)["status"] == "queued"  # one worker, busy
        assert job(fs.api, queued_id)["waiting"]["position"] == 1
        api_pid, worker_pids = fs.stack.api.pid, [p.pid for p in fs.stack.workers]

        fs.valkey.stop()
        stopped_at = time.time()
        for path in ("/v1/datasets", f"/v1/jobs/{long_id}", "/readyz"):
            started = time.monotonic()
            answer = fs.api.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert time.monotonic() - started < 5, f"{path} took long to say Redis is down"
            body = answer.json()
            reason = body["reason"] if path == "/readyz" else body["error"]["message"]
            assert "Redis" in reason and "unreachable" in reason, body
        time.sleep(1.0)  # a Redis restart takes a moment; the lease (2 s) may run out meanwhile
        fs.valkey.start()

        wait_until(lambda: fs.api.get("/readyz").status_code == 200, 20,
                   "the API and a worker to reconnect to Redis", fs.log_text)
        assert fs.stack.api.pid == api_pid and fs.stack.api.poll() is None  # not restarted
        listed = fs.api.get("/v1/datasets").json()["datasets"]
        assert [d["id"] for d in listed] == [dataset["id"]]
        assert len(epochs(fs.api, finished)) == 15
        stored = Store(redis.Redis.from_url(fs.valkey.url)).model_with_weights(None, model_id)
        assert stored is not None and stored[0].epochs_trained == 15
        predicted = fs.api.post(f"/v1/models/{model_id}/predict", json={"inputs": X[:5].tolist()})
        assert predicted.status_code == 200 and len(predicted.json()["labels"]) == 5
        assert job(fs.api, queued_id)["status"] in {"queued", "running", "succeeded"}

        # The workers reconnected rather than died: both jobs still end well.
        for job_id, n in ((long_id, 150), (queued_id, 15)):
            done = wait_job(fs, job_id, 60)
            assert done["status"] == "succeeded", done
            assert_contiguous(epochs(fs.api, job_id), n)
        assert job(fs.api, long_id)["finished_at"] > stopped_at  # it trained through the outage
        assert [p.pid for p in fs.stack.workers if p.poll() is None] == worker_pids

        # A worker started while Redis is down waits for it instead of exiting.
        fs.valkey.stop()
        late = fs.stack.add_worker()
        wait_until(lambda: "waiting for Redis" in (fs.logs / "worker2.log").read_text(
            errors="replace"), 60, "the late worker to find Redis down", fs.log_text)
        fs.valkey.start()
        wait_until(lambda: fs.api.get("/readyz").json().get("workers") == 2, 20,
                   "the late worker to register once Redis is back", fs.log_text)
        assert late.poll() is None
        last = submit(fs.api, dataset["id"], epochs=3, batch_size=64)["id"]
        assert wait_job(fs, last, 30)["status"] == "succeeded"


def test_api_restart_while_a_job_runs_loses_nothing_and_clients_keep_polling(tmp_path):
    with fault_stack(tmp_path, workers=1) as fs:
        dataset = upload(fs.api, *blobs(1200))
        job_id = submit(fs.api, dataset["id"], epochs=150)["id"]
        wait_job(fs, job_id, 30, until=lambda j: j["status"] == "running")
        old_pid = fs.stack.api.pid
        fs.stack.stop_api()
        stopped_at = time.time()
        refused = 0
        try:
            fs.api.get(f"/v1/jobs/{job_id}")
        except httpx.TransportError:
            refused += 1
        assert refused == 1  # really down
        fs.stack.start_api()
        assert fs.stack.api.pid != old_pid

        def polled():  # a client that retries through connection errors
            try:
                current = fs.api.get(f"/v1/jobs/{job_id}").json()
            except httpx.TransportError:
                return None
            return current if current["status"] in {"succeeded", "failed", "canceled"} else None
        done = wait_until(polled, 60, "the job to finish", fs.log_text)
        assert done["status"] == "succeeded" and done["restarts"] == 0, done
        assert done["finished_at"] > stopped_at  # it trained on while the API was away
        assert_contiguous(epochs(fs.api, job_id), 150)
        assert [j["id"] for j in fs.api.get("/v1/jobs").json()["jobs"]] == [job_id]


def test_after_a_redis_outage_cached_models_are_loaded_again(tmp_path):
    """A deletion published while the API's listener was cut off would be missed: the cache
    starts empty once Redis is back, and fills again from Redis."""
    with fault_stack(tmp_path, workers=1) as fs:
        X, y = blobs(200)
        model_id = wait_job(fs, submit(fs.api, upload(fs.api, X, y)["id"], epochs=2)["id"]
                            )["model_id"]
        rows = X[:2].tolist()
        wait_until(lambda: served_from_cache(fs.valkey.url, fs.api, model_id, rows), 10,
                   "a predict served from the cache", fs.log_text)

        fs.valkey.stop()
        # Until its deletion listener notices, the process still serves the model from its cache.
        wait_until(lambda: fs.api.post(f"/v1/models/{model_id}/predict",
                                       json={"inputs": rows}).status_code == 503, 20,
                   "the API to stop serving from its cache while Redis is down", fs.log_text)
        fs.valkey.start()
        wait_until(lambda: fs.api.get("/readyz").status_code == 200, 20,
                   "the API to reconnect to Redis", fs.log_text)
        assert not served_from_cache(fs.valkey.url, fs.api, model_id, rows)  # loaded again
        wait_until(lambda: served_from_cache(fs.valkey.url, fs.api, model_id, rows), 10,
                   "the model back in the cache", fs.log_text)
