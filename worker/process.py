"""The worker process: an RQ worker whose jobs checkpoint and requeue on SIGTERM, plus the reaper.

It outlives Redis restarts: while Redis is away it keeps watching a running work horse (which
waits for Redis itself), and when RQ's work loop gives up on the connection, the process waits
for Redis and starts a fresh RQ worker instead of exiting.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading

import redis
from rq import SimpleWorker, Worker

from core import queues
from core.blas_threads import limit_blas_threads
from core.logs import setup_logging
from core.settings import get_settings
from core.store import Store
from worker import jobs
from worker.attempts import UNREACHABLE
from worker.reaper import Reaper
from worker.warmup import warm_up

PREEMPT_SIGNAL = signal.SIGRTMIN
log = logging.getLogger("backprop.worker")


# A killed worker's registration expires after this, so /readyz stops counting it within
# about half a minute (RQ's default keeps a dead worker listed for 7 minutes).
WORKER_TTL_S = 30
# How long RQ's pubsub thread blocks per read. RQ waits 60 s, and redis-py's thread stop()
# joins without a limit: a SIGTERM landing while the thread waits out its read held the
# worker's exit (and so Ctrl-C of `backprop up`) for up to a minute.
PUBSUB_POLL_S = 0.5


STOP_REQUESTED = threading.Event()
"""Set by SIGTERM/SIGINT while RQ's work loop has no handlers of its own (starting, or waiting
for Redis)."""


class QuickStopPubSub:
    """Mixin for RQ workers: the command channel's thread polls briefly, so it stops at once;
    and a stop asked for while RQ was still starting is honoured."""

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        # A signal between the worker's registration and this point reached our handler, not
        # RQ's: without this the work loop would run on, deaf to it. The loop reads
        # _stop_requested first thing and leaves cleanly (request_stop would raise here,
        # outside the loop's own handling).
        if STOP_REQUESTED.is_set():
            self.shutdown_requested = True
            self._stop_requested = True

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL_S, daemon=True,
            exception_handler=self._pubsub_exception_handler)


class TrainingWorker(QuickStopPubSub, Worker):
    """On a warm shutdown (SIGTERM/SIGINT) the horse is told to checkpoint and requeue its job
    (SIGRTMIN), instead of the worker waiting for a training run that may take hours."""

    shutdown_requested = False

    def setup_work_horse_signals(self) -> None:
        signal.signal(PREEMPT_SIGNAL, lambda signum, frame: jobs.PREEMPTED.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def handle_warm_shutdown_request(self) -> None:
        self.shutdown_requested = True
        if self.horse_pid:
            log.info("warm shutdown: asking horse %s to checkpoint", self.horse_pid)
            self.kill_horse(sig=PREEMPT_SIGNAL)

    def maintain_heartbeats(self, job, execution) -> None:
        """RQ's heartbeats while a horse runs; without Redis, keep watching the horse."""
        try:
            super().maintain_heartbeats(job, execution)
        except UNREACHABLE as exc:
            self.log.warning("Redis unreachable (%s); horse %s trains on", exc, self.horse_pid)

    def retire(self) -> None:
        """Best-effort cleanup of a worker whose work loop lost Redis."""
        with contextlib.suppress(Exception):
            self.register_death()
        if getattr(self, "pubsub_thread", None) is not None:
            with contextlib.suppress(Exception):
                self.pubsub_thread.stop()
                self.pubsub_thread.join(timeout=1)
                self.pubsub.close()


class InProcessTrainingWorker(QuickStopPubSub, SimpleWorker):
    """BACKPROP_WORKER_CLASS=simple: each job runs in this process, with no work horse forked
    for it (about 20 ms of CPU less per job, twice the throughput of one-epoch jobs). A job
    that kills the interpreter takes the worker with it; its job resumes elsewhere when the
    lease runs out, as after any lost worker. SIGTERM: the running job checkpoints and
    requeues at its next batch, then the worker exits."""

    shutdown_requested = False
    retire = TrainingWorker.retire

    def handle_warm_shutdown_request(self) -> None:
        self.shutdown_requested = True
        jobs.PREEMPTED.set()


WORKER_CLASSES = {"fork": TrainingWorker, "simple": InProcessTrainingWorker}


def wait_for_redis(connection: redis.Redis, stop: threading.Event) -> None:
    """Until Redis answers, saying why not whenever the reason changes: a worker on another
    machine with a wrong password must say so, not wait in silence."""
    delay, reason = 0.1, None
    while not stop.is_set():
        try:
            if connection.ping():
                return
        except redis.AuthenticationError as exc:
            if str(exc) != reason:
                reason = str(exc)
                log.error("Redis refused this worker's credentials (%s); check the user and "
                          "password in BACKPROP_REDIS_URL. Retrying.", exc)
        except UNREACHABLE as exc:
            if str(exc) != reason:
                reason = str(exc)
                log.warning("waiting for Redis (%s)", exc)
        stop.wait(delay)
        delay = min(delay * 2, 2.0)


def yield_to_the_api(nice: int) -> None:
    """Run at niceness `nice` or more: this thread and what it starts from now on, the work
    horses forked from it and their BLAS threads. Unprivileged processes can only raise it."""
    if nice > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, nice)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--queues", help="comma-separated queue names (default: from settings)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    args = parser.parse_args(argv)

    setup_logging("worker")
    settings = get_settings()
    yield_to_the_api(settings.worker_nice)
    limit_blas_threads(settings.worker_blas_threads)
    warm_up()  # before any work horse is forked: each one inherits what this imports and builds
    connection = queues.connect(settings)
    names = (args.queues.split(",") if args.queues else [settings.queue])
    # Its own connection: the horse is forked from this process and must not share sockets.
    reaper = Reaper(Store(queues.connect(settings), settings.key_prefix), settings)
    reaper.start()
    stop = STOP_REQUESTED

    def stop_waiting(signum, frame) -> None:  # until RQ's work loop installs its own handlers
        stop.set()

    def wait_quietly() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop_waiting)

    try:
        while not stop.is_set():
            wait_quietly()
            wait_for_redis(connection, stop)
            if stop.is_set():
                break
            worker = None
            try:
                worker = WORKER_CLASSES[settings.worker_class](
                    [queues.Queue(n, connection=connection, serializer=queues.SERIALIZER)
                     for n in names], connection=connection, name=args.name,
                    serializer=queues.SERIALIZER, worker_ttl=WORKER_TTL_S,
                    job_monitoring_interval=WORKER_TTL_S // 3)
                worker.work(burst=args.burst, logging_level="WARNING")
                if worker.shutdown_requested or args.burst:
                    break
                log.warning("the RQ work loop ended without a shutdown request; starting a "
                            "fresh one once Redis answers")
            except UNREACHABLE as exc:
                log.warning("lost Redis (%s); starting a fresh RQ worker once it answers", exc)
            wait_quietly()
            if worker is not None and worker.shutdown_requested:
                break
            stop.wait(1.0)
            if worker is not None:
                wait_for_redis(connection, stop)
                worker.retire()
    finally:
        reaper.stop()
    return 0
