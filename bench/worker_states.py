"""RQ's own view of a stack's workers during a benchmark: their states, sampled, and the time
RQ counts them working (bench/sweeps.py)."""
from __future__ import annotations

import threading
import time

import redis
from rq import Worker
from rq.serializers import JSONSerializer

from service.launcher import Stack


class WorkerStates:
    """Samples every RQ worker's state (`busy` or `idle`) every `every_s` in a thread, from
    entry to exit; idle_share(start, end) is the share of samples in [start, end] (epoch
    seconds) with a worker not busy, over all workers."""

    def __init__(self, stack: Stack, every_s: float = 0.02):
        self.connection = redis.Redis.from_url(stack.valkey.url)
        self.every_s, self.samples = every_s, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.stop.is_set():
            states = [w.get_state() for w in Worker.all(connection=self.connection,
                                                        serializer=JSONSerializer)]
            self.samples.append((time.time(), states))
            self.stop.wait(self.every_s)

    def __enter__(self) -> "WorkerStates":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def idle_share(self, start: float, end: float) -> float:
        states = [s for t, found in self.samples if start <= t <= end for s in found]
        return sum(s != "busy" for s in states) / len(states)


def working_seconds(stack: Stack) -> float:
    """Seconds the stack's workers spent in jobs, as RQ counts them."""
    connection = redis.Redis.from_url(stack.valkey.url)
    return sum(w.total_working_time for w in Worker.all(connection=connection,
                                                        serializer=JSONSerializer))
