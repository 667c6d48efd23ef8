"""The Redis store: datasets, jobs (meta, history, checkpoints) and models.

Meta records are Redis hashes whose values are JSON; arrays and weights are binary (.npy/.npz).
Every read that a tenant makes goes through a tenant check, and a record of another tenant
reads as missing, so ids never leak across tenants.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Iterable

import numpy as np
import redis

from worker.codec import array_to_bytes, bytes_to_array, npy_parts
from worker.keys import Keys
from worker.status import FINISHED, JobStatus

WEIGHTS_FIELD = b"weights"


def encode_meta(meta: dict[str, Any]) -> dict[str, str]:
    return {name: json.dumps(value) for name, value in meta.items()}


def decode_meta(raw: dict[bytes, bytes], skip: Iterable[bytes] = ()) -> dict[str, Any]:
    skipped = set(skip)
    return {k.decode(): json.loads(v) for k, v in raw.items() if k not in skipped}


def arrays_sha256(*arrays: np.ndarray) -> str:
    """Content hash of a dataset: each stored array's raw bytes in turn, C order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


class Store:
    """All reads and writes of the service's own Redis keys."""

    def __init__(self, connection: redis.Redis, prefix: str = "bp") -> None:
        self.r = connection
        self.keys = Keys(prefix)

    # -- generic helpers ---------------------------------------------------------------------
    def _owned(self, key: str, tenant: str | None, skip: Iterable[bytes] = ()) -> dict | None:
        raw = self.r.hgetall(key)
        if not raw:
            return None
        meta = decode_meta(raw, skip)
        if tenant is not None and meta.get("tenant") != tenant:
            return None
        return meta

    def _listed(self, index_key: str, record_key, limit: int) -> list[dict]:
        """Newest first; ids whose record expired are dropped from the index on the way."""
        ids = [i.decode() for i in self.r.zrevrange(index_key, 0, max(limit, 1) - 1)]
        pipe = self.r.pipeline(transaction=False)
        for item_id in ids:
            pipe.hgetall(record_key(item_id))
        out, gone = [], []
        for item_id, raw in zip(ids, pipe.execute()):
            if raw:
                out.append(decode_meta(raw, skip=(WEIGHTS_FIELD,)))
            else:
                gone.append(item_id)
        if gone:
            self.r.zrem(index_key, *gone)
        return out

    # -- datasets ----------------------------------------------------------------------------
    def put_dataset(self, meta: dict[str, Any], numeric: np.ndarray, codes: np.ndarray,
                    y: np.ndarray) -> dict:
        """Store the arrays worker/schema.py describes and the meta (which gets bytes and
        sha256 filled in); returns the meta."""
        k, dataset_id = self.keys, meta["id"]
        # .npy header, then APPEND of the array's own memory: no copy of a big X in the API.
        parts = {k.dataset_x(dataset_id): npy_parts(numeric),
                 k.dataset_codes(dataset_id): npy_parts(codes),
                 k.dataset_y(dataset_id): npy_parts(y)}
        size = sum(len(header) + data.nbytes for header, data in parts.values())
        meta = {**meta, "bytes": size, "sha256": arrays_sha256(numeric, codes, y)}
        pipe = self.r.pipeline(transaction=True)
        for key, (header, data) in parts.items():
            pipe.set(key, header)
            pipe.append(key, data)
        pipe.hset(k.dataset(dataset_id), mapping=encode_meta(meta))
        pipe.zadd(k.datasets_of(meta["tenant"]), {dataset_id: meta["created_at"]})
        pipe.execute()
        return meta

    def dataset(self, tenant: str | None, dataset_id: str) -> dict | None:
        return self._owned(self.keys.dataset(dataset_id), tenant)

    def datasets(self, tenant: str, limit: int = 1000) -> list[dict]:
        return self._listed(self.keys.datasets_of(tenant), self.keys.dataset, limit)

    def dataset_arrays(self, dataset_id: str
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(numeric, codes, y) as worker/schema.py describes them, or None once deleted."""
        k = self.keys
        raw = self.r.mget(k.dataset_x(dataset_id), k.dataset_codes(dataset_id),
                          k.dataset_y(dataset_id))
        if any(part is None for part in raw):
            return None
        return tuple(bytes_to_array(part) for part in raw)

    def dataset_targets(self, dataset_id: str) -> np.ndarray | None:
        """y alone (what a job submission checks), without fetching X."""
        y_bytes = self.r.get(self.keys.dataset_y(dataset_id))
        return None if y_bytes is None else bytes_to_array(y_bytes)

    def delete_dataset(self, tenant: str, dataset_id: str) -> bool:
        if self.dataset(tenant, dataset_id) is None:
            return False
        k = self.keys
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(k.dataset(dataset_id), k.dataset_x(dataset_id), k.dataset_codes(dataset_id),
                    k.dataset_y(dataset_id))
        pipe.zrem(k.datasets_of(tenant), dataset_id)
        pipe.execute()
        return True

    # -- jobs --------------------------------------------------------------------------------
    def put_job(self, meta: dict[str, Any],
                inline: tuple[np.ndarray, np.ndarray] | None = None, pipe: Any = None) -> None:
        """Write a new job; with `pipe`, inside the caller's transaction (e.g. with its enqueue)."""
        target = pipe if pipe is not None else self.r.pipeline(transaction=True)
        self._put_job(target, meta, inline)
        if pipe is None:
            target.execute()

    def _put_job(self, pipe: Any, meta: dict[str, Any],
                 inline: tuple[np.ndarray, np.ndarray] | None) -> None:
        k = self.keys
        if inline is not None:
            pipe.hset(k.job_data(meta["id"]), mapping={"x": array_to_bytes(inline[0]),
                                                      "y": array_to_bytes(inline[1])})
        pipe.hset(k.job(meta["id"]), mapping=encode_meta(meta))
        pipe.zadd(k.jobs_of(meta["tenant"]), {meta["id"]: meta["created_at"]})

    def job(self, tenant: str | None, job_id: str) -> dict | None:
        return self._owned(self.keys.job(job_id), tenant)

    def jobs(self, tenant: str, status: str | None = None, limit: int = 1000) -> list[dict]:
        listed = self._listed(self.keys.jobs_of(tenant), self.keys.job, limit)
        return [j for j in listed if status is None or j.get("status") == status]

    def job_inline_data(self, job_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        x_bytes, y_bytes = self.r.hmget(self.keys.job_data(job_id), "x", "y")
        if x_bytes is None or y_bytes is None:
            return None
        return bytes_to_array(x_bytes), bytes_to_array(y_bytes)

    def update_job(self, job_id: str, pipe: Any = None, **fields: Any) -> None:
        """Set meta fields; a status change also maintains the running-jobs set."""
        target = pipe if pipe is not None else self.r.pipeline(transaction=True)
        target.hset(self.keys.job(job_id), mapping=encode_meta(fields))
        status = fields.get("status")
        if status == JobStatus.RUNNING:
            target.sadd(self.keys.running_jobs(), job_id)
        elif status is not None:
            target.srem(self.keys.running_jobs(), job_id)
        if pipe is None:
            target.execute()

    def finish_job(self, job_id: str, status: JobStatus, retention_s: int, **fields: Any) -> None:
        """Final status, an end event, and the expiry of the job's keys after retention_s."""
        k = self.keys
        pipe = self.r.pipeline(transaction=True)
        self.update_job(job_id, pipe, status=status.value, finished_at=time.time(), **fields)
        pipe.delete(k.job_lease(job_id), k.job_checkpoint(job_id), k.job_data(job_id))
        for key in (k.job(job_id), k.job_history(job_id)):
            pipe.expire(key, retention_s)
        pipe.hincrby(k.counters(), f"jobs_{status.value}", 1)
        pipe.publish(k.job_events(job_id), json.dumps({"event": "end", "status": status.value}))
        pipe.execute()

    def append_epoch(self, job_id: str, record: dict[str, Any], **fields: Any) -> bool:
        """Append one epoch to the history, update progress fields, publish the epoch event.

        Returns True when a cancel has been requested, so the caller learns it for free.
        """
        k = self.keys
        line = json.dumps(record)
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(k.job_history(job_id), line)
        if fields:
            pipe.hset(k.job(job_id), mapping=encode_meta(fields))
        pipe.hincrby(k.counters(), "epochs_trained", 1)
        pipe.publish(k.job_events(job_id), f'{{"event": "epoch", "record": {line}}}')
        pipe.hget(k.job(job_id), "cancel_requested")
        return self._flag(pipe.execute()[-1])

    def history(self, job_id: str, since_epoch: int = 0) -> list[dict]:
        """Epochs after `since_epoch` (epochs count from 1; item i holds epoch i + 1)."""
        return [json.loads(line) for line in self.r.lrange(self.keys.job_history(job_id),
                                                           max(since_epoch, 0), -1)]

    def trim_history(self, job_id: str, epochs: int) -> None:
        """Keep the first `epochs` epochs: those a resumed job will not train again."""
        if epochs <= 0:
            self.r.delete(self.keys.job_history(job_id))
        else:
            self.r.ltrim(self.keys.job_history(job_id), 0, epochs - 1)

    def put_checkpoint(self, job_id: str, data: bytes, epoch: int) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.keys.job_checkpoint(job_id), data)
        pipe.hset(self.keys.job(job_id), mapping=encode_meta({"checkpoint_epoch": epoch,
                                                             "checkpoint_at": time.time()}))
        pipe.execute()

    def checkpoint(self, job_id: str) -> bytes | None:
        return self.r.get(self.keys.job_checkpoint(job_id))

    def renew_lease(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Refresh the lease of a running job; returns whether a cancel was requested."""
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.keys.job_lease(job_id), worker, px=int(lease_s * 1000))
        pipe.hget(self.keys.job(job_id), "cancel_requested")
        return self._flag(pipe.execute()[-1])

    def lease_alive(self, job_id: str) -> bool:
        return bool(self.r.exists(self.keys.job_lease(job_id)))

    def running_job_ids(self) -> list[str]:
        return sorted(i.decode() for i in self.r.smembers(self.keys.running_jobs()))

    def request_cancel(self, job_id: str) -> None:
        self.r.hset(self.keys.job(job_id), "cancel_requested", "true")

    def cancel_requested(self, job_id: str) -> bool:
        return self._flag(self.r.hget(self.keys.job(job_id), "cancel_requested"))

    @staticmethod
    def _flag(raw: bytes | None) -> bool:
        return raw is not None and json.loads(raw) is True

    def delete_job(self, tenant: str, job_id: str, with_model: bool = True) -> bool:
        meta = self.job(tenant, job_id)
        if meta is None:
            return False
        k = self.keys
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(k.job(job_id), k.job_history(job_id), k.job_checkpoint(job_id),
                    k.job_data(job_id), k.job_lease(job_id))
        pipe.zrem(k.jobs_of(tenant), job_id)
        pipe.srem(k.running_jobs(), job_id)
        if with_model and meta.get("model_id"):
            pipe.delete(k.model(meta["model_id"]))
            pipe.zrem(k.models_of(tenant), meta["model_id"])
            pipe.publish(k.models_deleted(), meta["model_id"])
        pipe.execute()
        return True

    # -- models ------------------------------------------------------------------------------
    def put_model(self, meta: dict[str, Any], weights: bytes, pipe: Any = None) -> None:
        k = self.keys
        target = pipe if pipe is not None else self.r.pipeline(transaction=True)
        target.hset(k.model(meta["id"]), mapping={**encode_meta(meta), "weights": weights})
        target.zadd(k.models_of(meta["tenant"]), {meta["id"]: meta["created_at"]})
        if pipe is None:
            target.execute()

    def model(self, tenant: str | None, model_id: str) -> dict | None:
        """Model meta without the weights."""
        raw = self.r.hgetall(self.keys.model(model_id))
        return self._model_meta(raw, tenant)

    def model_with_weights(self, tenant: str | None, model_id: str) -> tuple[dict, bytes] | None:
        """Meta and npz weights in one round trip (what the predict cache loads)."""
        raw = self.r.hgetall(self.keys.model(model_id))
        meta = self._model_meta(raw, tenant)
        return None if meta is None else (meta, raw[WEIGHTS_FIELD])

    @staticmethod
    def _model_meta(raw: dict[bytes, bytes], tenant: str | None) -> dict | None:
        if not raw:
            return None
        meta = decode_meta(raw, skip=(WEIGHTS_FIELD,))
        return meta if tenant is None or meta.get("tenant") == tenant else None

    def models(self, tenant: str, limit: int = 1000) -> list[dict]:
        return self._listed(self.keys.models_of(tenant), self.keys.model, limit)

    def delete_model(self, tenant: str, model_id: str) -> bool:
        if self.model(tenant, model_id) is None:
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.keys.model(model_id))
        pipe.zrem(self.keys.models_of(tenant), model_id)
        pipe.publish(self.keys.models_deleted(), model_id)
        pipe.execute()
        return True

    def counters(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.r.hgetall(self.keys.counters()).items()}

    def job_counts(self) -> tuple[dict[str, int], int]:
        """(counters, number of running jobs) in one round trip: what /metrics reads."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.counters())
        pipe.scard(self.keys.running_jobs())
        counters, running = pipe.execute()
        return {k.decode(): int(v) for k, v in counters.items()}, int(running)


def is_finished(meta: dict) -> bool:
    return JobStatus(meta["status"]) in FINISHED
