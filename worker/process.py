"""The worker process: an RQ worker whose jobs checkpoint and requeue on SIGTERM, plus the reaper."""

from __future__ import annotations

import argparse
import signal

from rq import Worker

from worker import jobs, queues
from worker.logs import setup_logging
from worker.reaper import Reaper
from worker.settings import get_settings
from worker.store import Store

PREEMPT_SIGNAL = signal.SIGRTMIN


class TrainingWorker(Worker):
    """On a warm shutdown (SIGTERM/SIGINT) the horse is told to checkpoint and requeue its job
    (SIGRTMIN), instead of the worker waiting for a training run that may take hours."""

    def setup_work_horse_signals(self) -> None:
        signal.signal(PREEMPT_SIGNAL, lambda signum, frame: jobs.PREEMPTED.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def handle_warm_shutdown_request(self) -> None:
        if self.horse_pid:
            self.log.info("warm shutdown: asking horse %s to checkpoint", self.horse_pid)
            self.kill_horse(sig=PREEMPT_SIGNAL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--queues", help="comma-separated queue names (default: from settings)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    args = parser.parse_args(argv)

    setup_logging("worker")
    settings = get_settings()
    connection = queues.connect(settings)
    names = (args.queues.split(",") if args.queues else [settings.queue])
    worker = TrainingWorker([queues.Queue(n, connection=connection, serializer=queues.SERIALIZER)
                             for n in names], connection=connection, name=args.name,
                            serializer=queues.SERIALIZER)
    # Its own connection: the horse is forked from this process and must not share sockets.
    reaper = Reaper(Store(queues.connect(settings), settings.key_prefix), settings)
    reaper.start()
    try:
        worker.work(burst=args.burst, logging_level="INFO")
    finally:
        reaper.stop()
    return 0
