"""Redis connections and RQ queues: which queue a job goes to, and how it is enqueued.

RQ jobs carry only the job id, serialized as JSON: nothing a user sends is ever pickled.
"""

from __future__ import annotations

import redis
from rq import Queue, Worker, worker_registration
from rq.job import Job
from rq.serializers import JSONSerializer

from core.settings import Settings

TRAIN_FUNCTION = "worker.jobs.train"
SERIALIZER = JSONSerializer
# RQ's own job hash goes as soon as the job ends: our store keeps what users read.
RQ_RESULT_TTL_S = 0
RQ_FAILURE_TTL_S = 3600
# No CLIENT SETINFO: it costs two round trips on every new connection, and a work horse
# (forked per job) opens fresh ones for every job; left at its default, redis-py would also
# read its package metadata for each connection of a from_url pool.
try:
    from redis.driver_info import DriverInfo  # noqa: F401  (redis-py >= 7.1)
    NO_CLIENT_SETINFO: dict = {"driver_info": None}
except ImportError:
    NO_CLIENT_SETINFO = {"lib_name": None, "lib_version": None}


def connect(settings: Settings) -> redis.Redis:
    """A binary-safe client for settings.redis_url (health checks on, short timeouts)."""
    if not settings.redis_url:
        raise RuntimeError(
            "BACKPROP_REDIS_URL is not set: run `backprop up` (it starts an embedded Valkey) "
            "or point BACKPROP_REDIS_URL at a Redis server")
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2,
                                health_check_interval=10, **NO_CLIENT_SETINFO)


def queue_name(settings: Settings, device: str) -> str:
    return settings.gpu_queue if device == "gpu" else settings.queue


def queue_for(connection: redis.Redis, settings: Settings, device: str) -> Queue:
    return Queue(queue_name(settings, device), connection=connection, serializer=SERIALIZER)


def rq_job_id(job_id: str, attempt: int) -> str:
    """Each attempt of a job (first run, resumes) is its own RQ job."""
    return f"{job_id}-a{attempt}"


def enqueue_training(connection: redis.Redis, settings: Settings, job_id: str, device: str,
                     attempt: int, timeout_s: int, at_front: bool = False,
                     pipeline: redis.client.Pipeline | None = None) -> Job:
    """Queue attempt `attempt` of job `job_id`; with `pipeline`, as part of its transaction."""
    return queue_for(connection, settings, device).enqueue_call(
        TRAIN_FUNCTION, args=(job_id,), job_id=rq_job_id(job_id, attempt),
        timeout=max(int(timeout_s), 1), result_ttl=RQ_RESULT_TTL_S,
        failure_ttl=RQ_FAILURE_TTL_S, at_front=at_front, pipeline=pipeline,
        description=f"train {job_id} (attempt {attempt})")


def take_back_queued(connection: redis.Redis, settings: Settings, device: str,
                     rq_id: str) -> bool:
    """Take a job off its queue before any worker pops it. True when it was still waiting
    (LREM is atomic against a worker's pop), False when a worker already has it."""
    if not queue_for(connection, settings, device).remove(rq_id):
        return False
    connection.delete(Job.key_for(rq_id))
    return True


def live_workers(connection: redis.Redis) -> list[Worker]:
    return Worker.all(connection=connection, serializer=SERIALIZER)


def workers_serving(connection: redis.Redis, settings: Settings,
                    names: tuple[str, ...] | None = None) -> dict[str, int]:
    """Live workers per queue (settings' CPU and GPU queues unless `names`), in two round
    trips: RQ's registration sets, then which registered workers still exist (a killed worker
    stays registered until its key expires, as for Worker.all)."""
    names = names or (settings.queue, settings.gpu_queue)
    pipe = connection.pipeline(transaction=False)
    for name in names:
        pipe.smembers(worker_registration.WORKERS_BY_QUEUE_KEY % name)
    registered = [sorted(k.decode() for k in keys) for keys in pipe.execute()]
    for keys in registered:
        for key in keys:
            pipe.exists(key)
    alive = iter(pipe.execute())
    return {name: sum(bool(next(alive)) for _ in keys) for name, keys in zip(names, registered)}


def queue_lengths(connection: redis.Redis, settings: Settings) -> dict[str, int]:
    return {name: Queue(name, connection=connection, serializer=SERIALIZER).count
            for name in (settings.queue, settings.gpu_queue)}
