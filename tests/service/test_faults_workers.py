"""Workers lost for real: SIGKILL of a worker and its work horse, repeated horse kills, SIGTERM.

Each test runs its own Valkey and Stack (fault_helpers.fault_stack), never the session stack.
"""

from __future__ import annotations

import signal
import time

import redis

from core.store import Store
from service.launcher import REVIVE_EVERY_S
from tests.service.fault_helpers import (FINISHED, assert_contiguous, blobs, busy_worker, epochs,
                                         fault_stack, job, kill, log_lines, submit, upload,
                                         wait_job, wait_until)

LEASE_S = 2.0  # fault_helpers.FAST_ENV


def checkpoint_epoch(fs, job_id: str) -> int:
    job = Store(redis.Redis.from_url(fs.valkey.url)).job(None, job_id)
    return job.checkpoint_epoch or 0


def running_with_checkpoint(fs, job_id: str, min_epoch: int) -> dict:
    return wait_job(fs, job_id, 30, until=lambda j: j["status"] == "running"
                    and j["progress"]["epoch"] >= min_epoch
                    and checkpoint_epoch(fs, job_id) > 0)


def resumed_from(fs) -> list[int]:
    """Checkpoint epochs the workers' logs say an attempt resumed from."""
    return [int(line.rsplit("epoch ", 1)[1].split('"')[0])
            for line in log_lines(fs, "resuming from checkpoint at epoch")]


def test_killed_worker_and_horse_job_resumes_elsewhere_from_checkpoint(tmp_path):
    with fault_stack(tmp_path, workers=2) as fs:
        dataset = upload(fs.api, *blobs(1200))
        job_id = submit(fs.api, dataset["id"], epochs=120)["id"]
        running_with_checkpoint(fs, job_id, min_epoch=30)
        worker_pid, horse_pid = busy_worker(fs)
        kill(horse_pid)
        kill(worker_pid)
        killed_at = time.monotonic()
        before = epochs(fs.api, job_id)

        # Not "running" forever: within the lease (plus a sweep) it runs again, elsewhere.
        resumed = wait_job(fs, job_id, LEASE_S + 10,
                           until=lambda j: j["restarts"] == 1 and j["status"] != "queued")
        assert time.monotonic() - killed_at < LEASE_S + 10
        assert resumed["id"] == job_id and resumed["status"] in {"running", "succeeded"}

        done = wait_job(fs, job_id, 60)
        assert done["status"] == "succeeded", done
        assert done["restarts"] == 1 and done["model_id"]
        history = epochs(fs.api, job_id)
        assert_contiguous(history, 120)
        [start] = resumed_from(fs)
        assert 0 < start <= len(before), (start, len(before))
        # The epochs before the checkpoint are the ones recorded before the kill, untouched.
        assert [e["loss"] for e in history[:start]] == [e["loss"] for e in before[:start]]
        # The Stack (`backprop up`) replaces the killed worker, as a restart policy would.
        def replaced():
            alive = [p.pid for p in fs.stack.workers if p.poll() is None]
            return len(alive) == 2 and worker_pid not in alive
        wait_until(replaced, REVIVE_EVERY_S + 5, "the killed worker to be replaced")


def test_job_fails_after_max_restarts_with_a_message_saying_so(tmp_path):
    with fault_stack(tmp_path, workers=1, BACKPROP_MAX_RESTARTS="1",
                     BACKPROP_MAX_ACTIVE_JOBS_PER_TENANT="1") as fs:
        dataset = upload(fs.api, *blobs(1200))
        job_id = submit(fs.api, dataset["id"], epochs=2000)["id"]
        behind = submit(fs.api, dataset["id"], epochs=3, batch_size=64)
        assert behind["waiting"]["position"] == 1  # in the tenant's backlog
        for restarts in (0, 1):
            wait_job(fs, job_id, 30, until=lambda j: j["status"] == "running"
                     and j["restarts"] == restarts and j["progress"]["epoch"] >= 5)
            _, horse_pid = busy_worker(fs)
            kill(horse_pid)  # as the out-of-memory killer does; the worker itself lives on
            if restarts == 0:
                wait_until(lambda: job(fs.api, job_id)["restarts"] == 1, LEASE_S + 10,
                           "the first lost horse to be counted as a restart", fs.log_text)

        done = wait_job(fs, job_id, LEASE_S + 15)
        assert done["status"] == "failed", done
        assert done["restarts"] == 1
        message = done["error"]["message"]
        assert "lost its worker 2 times" in message and "BACKPROP_MAX_RESTARTS=1" in message
        # The failure freed the tenant's slot: the backlogged job was promoted and ran.
        assert wait_job(fs, behind["id"], 30)["status"] == "succeeded"


def test_sigterm_checkpoints_and_requeues_the_job_which_then_succeeds(tmp_path):
    with fault_stack(tmp_path, workers=2) as fs:
        dataset = upload(fs.api, *blobs(1200))
        job_id = submit(fs.api, dataset["id"], epochs=100)["id"]
        running_with_checkpoint(fs, job_id, min_epoch=20)
        worker_pid, _ = busy_worker(fs)
        [stopped] = [p for p in fs.stack.workers if p.pid == worker_pid]
        stopped.send_signal(signal.SIGTERM)  # what `docker stop` does
        assert stopped.wait(15) == 0  # it stops promptly, without waiting for 100 epochs

        seen = set()
        def finished():
            current = job(fs.api, job_id)
            seen.add(current["status"])
            return current if current["status"] in FINISHED else None
        done = wait_until(finished, 60, "the requeued job to finish", fs.log_text)
        assert done["status"] == "succeeded", done
        assert "failed" not in seen and done["restarts"] == 0
        assert_contiguous(epochs(fs.api, job_id), 100)
        [line] = log_lines(fs, "requeued")
        assert "checkpointed at epoch" in line
        [start] = resumed_from(fs)
        assert start > 0
