"""`python -m worker` as a process: a SIGTERM that comes while RQ is still starting (the worker
registered, its work loop not yet listening) stops it all the same."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import redis

from service.embedded_redis import EmbeddedValkey


def test_a_sigterm_while_the_worker_starts_stops_it(tmp_path):
    with EmbeddedValkey(tmp_path / "valkey") as valkey:
        client = redis.Redis.from_url(valkey.url)
        env = {**os.environ, "BACKPROP_REDIS_URL": valkey.url}
        for attempt in range(3):
            worker = subprocess.Popen([sys.executable, "-m", "worker"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while not client.scard("rq:workers"):  # registered: RQ's handlers may not be yet
                assert worker.poll() is None and time.monotonic() < deadline
                time.sleep(0.005)
            worker.send_signal(signal.SIGTERM)
            try:
                assert worker.wait(30) == 0, f"attempt {attempt}"
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
                raise AssertionError(f"attempt {attempt}: the worker ignored SIGTERM") from None
            assert client.scard("rq:workers") == 0, "the worker left its registration behind"
            client.flushall()


STOPPED_WHILE_STARTING = """
import sys
import redis
from core import queues
from worker import process
connection = redis.Redis.from_url(sys.argv[1])
worker = process.WORKER_CLASSES[sys.argv[2]](
    [queues.Queue("q", connection=connection, serializer=queues.SERIALIZER)],
    connection=connection, serializer=queues.SERIALIZER)
process.STOP_REQUESTED.set()  # what `python -m worker`'s handler does for a signal then
worker.work(burst=False, logging_level="WARNING")
print("stopped", worker.shutdown_requested)
"""


def test_a_stop_asked_before_rqs_handlers_ends_the_work_loop(tmp_path):
    """The window above made wide: the stop is asked for before RQ's loop starts, which left a
    worker that never stopped (the loop never read it)."""
    with EmbeddedValkey(tmp_path / "valkey") as valkey:
        for kind in ("fork", "simple"):
            done = subprocess.run([sys.executable, "-c", STOPPED_WHILE_STARTING, valkey.url, kind],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert done.stdout.split() == ["stopped", "True"], done.stdout + done.stderr
            assert redis.Redis.from_url(valkey.url).scard("rq:workers") == 0
