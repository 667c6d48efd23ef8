"""BACKPROP_WORKER_CLASS=simple: jobs run in the worker process (no horse), and SIGTERM still
checkpoints and requeues the running job. Its own Valkey and Stack (fault_helpers.fault_stack)."""

from __future__ import annotations

import signal

import redis
from rq import Worker

from core.queues import SERIALIZER
from core.store import Store
from tests.service.fault_helpers import (FINISHED, assert_contiguous, blobs, child_pids, epochs,
                                         fault_stack, job, log_lines, submit, upload, wait_job,
                                         wait_until)


def test_simple_workers_train_in_process_and_sigterm_requeues_from_a_checkpoint(tmp_path):
    with fault_stack(tmp_path, workers=2, BACKPROP_WORKER_CLASS="simple") as fs:
        dataset = upload(fs.api, *blobs(1200))
        job_id = submit(fs.api, dataset["id"], epochs=100)["id"]
        wait_job(fs, job_id, 30, until=lambda j: j["status"] == "running"
                 and j["progress"]["epoch"] >= 10)
        connection = redis.Redis.from_url(fs.valkey.url)
        name = Store(connection).job(None, job_id).worker
        [busy_pid] = [w.pid for w in Worker.all(connection=connection, serializer=SERIALIZER)
                      if w.name == name]
        assert child_pids(busy_pid) == [], "a simple worker forks no work horse"
        [stopped] = [p for p in fs.stack.workers if p.pid == busy_pid]
        stopped.send_signal(signal.SIGTERM)
        assert stopped.wait(15) == 0  # promptly, not after 100 epochs

        done = wait_until(lambda: (j := job(fs.api, job_id))["status"] in FINISHED and j, 60,
                          "the requeued job to finish", fs.log_text)
        assert done["status"] == "succeeded" and done["restarts"] == 0, done
        assert_contiguous(epochs(fs.api, job_id), 100)
        [line] = log_lines(fs, "requeued")
        assert "checkpointed at epoch" in line
