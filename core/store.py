"""The Redis store: datasets, jobs (record, history, checkpoint) and models.

Every record is typed (core.records: JobRecord, DatasetRecord, ModelRecord) and encoded as a
hash by its class alone; a model's hash also holds its npz weights as one binary field. Every read that a tenant makes goes through a tenant check, and a record of another
tenant reads as missing, so ids never leak across tenants. Every stored byte is counted against
its tenant (core.quota) in the transaction that stores or deletes it.

Writes that change a job's status go through `set_status`, which keeps the running set and the
per-status index (what `?status=` lists) in step; writes that an attempt makes are fenced by its
ownership (worker.attempts), and endings go through core.fairness.finish.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np
import redis

from core import quota
from core.codec import array_to_bytes, bytes_to_array, npy_parts
from core.keys import Keys
from core.records import DatasetRecord, DatasetSummary, JobRecord, JobStatus, ModelRecord, Record

WEIGHTS_FIELD = b"weights"
BINARY_FIELDS = frozenset({WEIGHTS_FIELD})
T = TypeVar("T")
R = TypeVar("R", bound=Record)
# Rows fetched past a cursor's score to step over ids that share it (submit times to the
# microsecond: ties are rare, a page of them rarer).
TIES = 64
CURSOR = re.compile(r"^(?P<score>[0-9.e+-]{1,32}):(?P<id>[A-Za-z0-9_-]{1,100})$")


def arrays_sha256(*arrays: np.ndarray) -> str:
    """Content hash of a dataset: each stored array's raw bytes in turn, C order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


class BadCursor(ValueError):
    """A `before=` cursor that this store did not hand out."""


@dataclass
class Page:
    """One page of a list, newest first; `next` is the cursor of the following page, if any."""

    items: list
    next: str | None


def cursor_of(score: float, item_id: str) -> str:
    return f"{score!r}:{item_id}"


def parse_cursor(cursor: str) -> tuple[float, str]:
    found = CURSOR.match(cursor)
    try:
        score = float(found["score"]) if found else float("nan")
    except ValueError:
        score = float("nan")
    if not found or score != score or abs(score) == float("inf"):
        raise BadCursor(f"before: {cursor[:60]!r} is not a cursor of this list; pass the "
                        f"`next` value of the previous page, or leave it out for the newest")
    return score, found["id"]


class Store:
    """All reads and writes of the service's own Redis keys."""

    def __init__(self, connection: redis.Redis, prefix: str = "bp") -> None:
        self.r = connection
        self.keys = Keys(prefix)

    def transact(self, body: Callable[[redis.client.Pipeline], T], *watch: str) -> T:
        """body(pipe) as one WATCH/MULTI transaction over `watch` (body reads, calls
        pipe.multi(), queues writes), run again from the start when a watched key changed
        before EXEC. Returns what body returned; an exception in body writes nothing."""
        return self.r.transaction(body, *watch, value_from_callable=True)

    # -- generic helpers ---------------------------------------------------------------------
    def _owned(self, kind: type[R], key: str, tenant: str | None, reader: Any = None
               ) -> R | None:
        """The dataset or model record (no weights) if it exists and is `tenant`'s (None:
        anyone's); `reader` may be a pipeline in WATCH mode."""
        return self._record_of(kind, (reader or self.r).hgetall(key), tenant)

    @staticmethod
    def _record_of(kind: type[R], raw: dict[bytes, bytes], tenant: str | None) -> R | None:
        record = kind.decode(raw, skip=BINARY_FIELDS) if raw else None
        return record if record and (tenant is None or record.tenant == tenant) else None

    def _listed(self, index_key: str, record_key: Callable[[str], str],
                decode: Callable[[dict], Any], limit: int, before: str | None,
                fields: list[str] | None = None) -> Page:
        """`limit` records of a sorted-set index, newest first, after cursor `before` (a score
        and an id: equal scores are ordered by id, as ZREVRANGEBYSCORE orders them). Ids whose
        record expired are dropped from the index on the way. `fields`: only those are read."""
        bound = parse_cursor(before) if before else None
        limit = max(limit, 1)
        found: list[tuple[float, str, Any]] = []
        while len(found) <= limit:  # one more than a page: is there a next one?
            want = limit + 1 - len(found)
            top = "+inf" if bound is None else repr(bound[0])
            rows = [(i.decode(), s) for i, s in self.r.zrevrangebyscore(
                index_key, top, "-inf", start=0, num=want + (0 if bound is None else TIES),
                withscores=True)]
            if bound is not None:  # ties with the cursor's score: only ids below its id
                rows = [(i, s) for i, s in rows if s < bound[0] or i < bound[1]]
            rows = rows[:want]
            if not rows:
                break
            pipe = self.r.pipeline(transaction=False)
            for item_id, _ in rows:
                key = record_key(item_id)
                pipe.hmget(key, fields) if fields else pipe.hgetall(key)
            gone = []
            for (item_id, score), raw in zip(rows, pipe.execute()):
                if fields:
                    raw = {f.encode(): v for f, v in zip(fields, raw) if v is not None}
                if raw:
                    found.append((score, item_id, decode(raw)))
                else:
                    gone.append(item_id)
            if gone:
                self.r.zrem(index_key, *gone)
            bound = (rows[-1][1], rows[-1][0])
        more = len(found) > limit
        return Page([item for _, _, item in found[:limit]],
                    cursor_of(*found[limit - 1][:2]) if more else None)

    # -- datasets ----------------------------------------------------------------------------
    def put_dataset(self, record: DatasetRecord, numeric: np.ndarray, codes: np.ndarray,
                    y: np.ndarray, max_tenant_bytes: int, reserve_bytes: int = 0
                    ) -> DatasetRecord:
        """Store the arrays core.dataset_schema describes and the record (returned with bytes
        and sha256 filled in), counting their bytes and the record's (its schema, with its
        categories, is in it) against the tenant's quota (quota.QuotaExceeded when over;
        quota.StoreFull when Redis would come within `reserve_bytes` of its maxmemory)."""
        keys = self.dataset_array_keys(record.id)
        return self._put_arrays(record, list(zip(keys, (numeric, codes, y))), max_tenant_bytes,
                                reserve_bytes)

    def _put_arrays(self, record: DatasetRecord, arrays: list[tuple[str, np.ndarray]],
                    max_tenant_bytes: int, reserve_bytes: int = 0) -> DatasetRecord:
        """A dataset of any arrays ([(key, array)], each stored as .npy bytes under its key):
        the bytes counted are the sum over all of them."""
        # .npy header, then APPEND of the array's own memory: no copy of a big X in the API.
        parts = [(key, npy_parts(array)) for key, array in arrays]
        size = sum(len(header) + data.nbytes for _, (header, data) in parts)
        record = record.model_copy(update={"bytes": size,
                                           "sha256": arrays_sha256(*(a for _, a in arrays))})
        k, tenant = self.keys, record.tenant
        encoded = record.encode()
        charged = size + quota.hash_bytes(encoded)  # the record holds the schema: charged too

        def write(pipe) -> None:
            quota.check(pipe, k, tenant, charged, max_tenant_bytes, "the dataset", "file")
            quota.check_room(self.r, charged, reserve_bytes, "the dataset", "file")
            pipe.multi()
            for key, (header, data) in parts:
                pipe.set(key, header)
                pipe.append(key, data)
            pipe.hset(k.dataset(record.id), mapping=encoded)
            pipe.zadd(k.datasets_of(tenant), {record.id: record.created_at})
            quota.charge(pipe, k, tenant, charged)

        self.transact(write, k.tenant_bytes(tenant))
        return record

    def dataset(self, tenant: str | None, dataset_id: str) -> DatasetRecord | None:
        return self._owned(DatasetRecord, self.keys.dataset(dataset_id), tenant)

    def datasets(self, tenant: str, limit: int = 1000, before: str | None = None) -> Page:
        """A page of DatasetSummary records (no schema), newest first."""
        return self._listed(self.keys.datasets_of(tenant), self.keys.dataset, DatasetSummary.decode,
                            limit, before, list(DatasetSummary.model_fields))

    def dataset_arrays(self, dataset_id: str
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(numeric, codes, y) as worker/schema.py describes them, or None once deleted."""
        raw = self.r.mget(*self.dataset_array_keys(dataset_id))
        if any(part is None for part in raw):
            return None
        return tuple(bytes_to_array(part) for part in raw)

    def dataset_targets(self, dataset_id: str) -> np.ndarray | None:
        """y alone (what a job submission checks), without fetching X."""
        y_bytes = self.r.get(self.keys.dataset_y(dataset_id))
        return None if y_bytes is None else bytes_to_array(y_bytes)

    def dataset_array_keys(self, dataset_id: str) -> list[str]:
        """Every key that holds one of a dataset's arrays: numeric, codes, y."""
        k = self.keys
        return [k.dataset_x(dataset_id), k.dataset_codes(dataset_id), k.dataset_y(dataset_id)]

    def delete_dataset(self, tenant: str, dataset_id: str) -> bool:
        k = self.keys

        def delete(pipe) -> bool:
            record = self._owned(DatasetRecord, k.dataset(dataset_id), tenant, pipe)
            if record is None:
                return False
            meta_size = quota.stored_hash_bytes(self.r, k.dataset(dataset_id))
            pipe.multi()
            pipe.delete(k.dataset(dataset_id), *self.dataset_array_keys(dataset_id))
            pipe.zrem(k.datasets_of(tenant), dataset_id)
            quota.charge(pipe, k, tenant, -record.bytes - meta_size)
            return True

        return self.transact(delete, k.dataset(dataset_id))

    # -- jobs --------------------------------------------------------------------------------
    def put_job(self, pipe, job: JobRecord, inline: dict[str, bytes] | None = None) -> None:
        """Write a new job inside the caller's transaction (core.fairness.submit), with its
        inline data (inline_blobs), charging the tenant its inline data (job.data_bytes), its
        record (job.stored_bytes) and what it reserves (job.reserved_bytes)."""
        k = self.keys
        if inline:
            pipe.hset(k.job_data(job.id), mapping=inline)
        pipe.hset(k.job(job.id), mapping=job.encode())
        pipe.zadd(k.jobs_of(job.tenant), {job.id: job.created_at})
        pipe.zadd(k.jobs_in_status(job.tenant, job.status.value), {job.id: job.created_at})
        quota.charge(pipe, k, job.tenant, job.data_bytes + job.stored_bytes + job.reserved_bytes)

    @staticmethod
    def inline_blobs(X: np.ndarray, y: np.ndarray) -> dict[str, bytes]:
        """Inline job data as put_job stores it (.npy bytes; job_inline_data reads them)."""
        return {"x": array_to_bytes(X), "y": array_to_bytes(y)}

    def job(self, tenant: str | None, job_id: str, reader: Any = None) -> JobRecord | None:
        """The job record (None when missing or another tenant's); `reader` may be a pipeline
        in immediate (WATCH) mode, to read inside a transaction."""
        raw = (reader or self.r).hgetall(self.keys.job(job_id))
        if not raw:
            return None
        job = JobRecord.decode(raw)
        return job if tenant is None or job.tenant == tenant else None

    def jobs(self, tenant: str, status: JobStatus | None = None, limit: int = 1000,
             before: str | None = None) -> Page:
        """A page of a tenant's jobs, newest first; with `status`, from that status's index,
        so the filter comes before the limit."""
        index = (self.keys.jobs_of(tenant) if status is None
                 else self.keys.jobs_in_status(tenant, JobStatus(status).value))
        return self._listed(index, self.keys.job, JobRecord.decode, limit, before)

    def job_inline_data(self, job_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        x_bytes, y_bytes = self.r.hmget(self.keys.job_data(job_id), "x", "y")
        if x_bytes is None or y_bytes is None:
            return None
        return bytes_to_array(x_bytes), bytes_to_array(y_bytes)

    def update_job(self, pipe, job_id: str, **fields: Any) -> None:
        """Set some fields of a job (type-checked); status changes go through set_status."""
        if "status" in fields:
            raise ValueError("set a job's status with Store.set_status")
        pipe.hset(self.keys.job(job_id), mapping=JobRecord.encode_fields(**fields))

    def set_status(self, pipe, job: JobRecord, status: JobStatus, **fields: Any) -> None:
        """Move `job` (as read in this transaction) to `status`, setting `fields` too, and keep
        the running set and the per-status index in step."""
        k = self.keys
        pipe.hset(k.job(job.id), mapping=JobRecord.encode_fields(status=status, **fields))
        if status == JobStatus.RUNNING:
            pipe.sadd(k.running_jobs(), job.id)
        else:
            pipe.srem(k.running_jobs(), job.id)
        if status != job.status:
            pipe.zrem(k.jobs_in_status(job.tenant, job.status.value), job.id)
            pipe.zadd(k.jobs_in_status(job.tenant, status.value), {job.id: job.created_at})

    def history(self, job_id: str, since_epoch: int = 0) -> list[dict]:
        """Epochs after `since_epoch` (epochs count from 1; item i holds epoch i + 1)."""
        return [json.loads(line) for line in self.r.lrange(self.keys.job_history(job_id),
                                                           max(since_epoch, 0), -1)]

    def epochs_recorded(self, job_id: str) -> int:
        return int(self.r.llen(self.keys.job_history(job_id)))

    def checkpoint(self, job_id: str) -> bytes | None:
        return self.r.get(self.keys.job_checkpoint(job_id))

    def lease_alive(self, job_id: str) -> bool:
        return bool(self.r.exists(self.keys.job_lease(job_id)))

    def running_job_ids(self) -> list[str]:
        return sorted(i.decode() for i in self.r.smembers(self.keys.running_jobs()))

    def request_cancel(self, job_id: str) -> None:
        """Flag a job for cancel (a no-op once it is deleted: no half record left behind)."""
        key = self.keys.job(job_id)

        def write(pipe) -> None:
            if pipe.exists(key):
                pipe.multi()
                pipe.hset(key, mapping=JobRecord.encode_fields(cancel_requested=True))

        self.transact(write, key)

    def delete_job(self, tenant: str, job_id: str, with_model: bool = True) -> bool:
        """Remove a finished job of `tenant`, its history and (with_model) its model."""
        k = self.keys

        def delete(pipe) -> bool:
            job = self.job(tenant, job_id, reader=pipe)
            if job is None or not job.finished:
                return False
            drop_model = with_model and job.model_id
            size = self.model_bytes(pipe, job.model_id) if drop_model else 0
            pipe.multi()
            pipe.delete(k.job(job_id), k.job_history(job_id), k.job_checkpoint(job_id),
                        k.job_data(job_id), k.job_lease(job_id))
            # Its record and history (finish gave back its data, checkpoint and reservation).
            quota.charge(pipe, k, tenant, -job.stored_bytes)
            pipe.zrem(k.jobs_expiring(), job_id)
            pipe.zrem(k.jobs_of(tenant), job_id)
            for status in JobStatus:
                pipe.zrem(k.jobs_in_status(tenant, status.value), job_id)
            pipe.srem(k.running_jobs(), job_id)
            if drop_model:
                self._drop_model(pipe, tenant, job.model_id, size)
            return True

        return self.transact(delete, k.job(job_id))

    # -- models ------------------------------------------------------------------------------
    def put_model(self, record: ModelRecord, weights: bytes, pipe: Any = None) -> None:
        """Write a model (inside the caller's transaction `pipe`, as a job's end does); its
        bytes (meta and weights) count against its tenant."""
        k = self.keys
        target = pipe if pipe is not None else self.r.pipeline(transaction=True)
        mapping = {**record.encode(), WEIGHTS_FIELD: weights}
        target.hset(k.model(record.id), mapping=mapping)
        target.zadd(k.models_of(record.tenant), {record.id: record.created_at})
        quota.charge(target, k, record.tenant, quota.hash_bytes(mapping))
        if pipe is None:
            target.execute()

    def model(self, tenant: str | None, model_id: str) -> ModelRecord | None:
        """The model record, without the weights."""
        return self._owned(ModelRecord, self.keys.model(model_id), tenant)

    def model_owner(self, model_id: str) -> str | None:
        """The tenant owning a model (None: no such model), in one HGET: neither its meta nor
        its weights are read."""
        raw = self.r.hget(self.keys.model(model_id), "tenant")
        return None if raw is None else ModelRecord.decode_field("tenant", raw)

    def model_with_weights(self, tenant: str | None, model_id: str
                           ) -> tuple[ModelRecord, bytes] | None:
        """The record and npz weights in one round trip (what the predict cache loads)."""
        raw = self.r.hgetall(self.keys.model(model_id))
        record = self._record_of(ModelRecord, raw, tenant)
        return None if record is None else (record, raw[WEIGHTS_FIELD])

    def model_bytes(self, reader: Any, model_id: str) -> int:
        """Stored size of a model, meta and weights, as charged (0 when it is gone); read on
        the client, after the caller's WATCH of the model."""
        return quota.stored_hash_bytes(self.r, self.keys.model(model_id))

    def _drop_model(self, pipe, tenant: str, model_id: str, size: int) -> None:
        k = self.keys
        pipe.delete(k.model(model_id))
        pipe.zrem(k.models_of(tenant), model_id)
        pipe.publish(k.models_deleted(), model_id)
        quota.charge(pipe, k, tenant, -size)

    def delete_model(self, tenant: str, model_id: str) -> bool:
        k = self.keys

        def delete(pipe) -> bool:
            if self._owned(ModelRecord, k.model(model_id), tenant, pipe) is None:
                return False
            size = self.model_bytes(pipe, model_id)
            pipe.multi()
            self._drop_model(pipe, tenant, model_id, size)
            return True

        return self.transact(delete, k.model(model_id))

    def tenant_bytes(self, tenant: str) -> int:
        return quota.used(self.r, self.keys, tenant)

    def job_counts(self) -> tuple[dict[str, int], int]:
        """(counters, number of running jobs) in one round trip: what /metrics reads."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.counters())
        pipe.scard(self.keys.running_jobs())
        counters, running = pipe.execute()
        return {k.decode(): int(v) for k, v in counters.items()}, int(running)

