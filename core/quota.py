"""Bytes each tenant makes the store hold, counted in one Redis integer per tenant.

What is charged: a dataset's arrays and its meta hash (the schema, with its categories, is
in it); a job's record (with an allowance for the fields it gains later and its index
entries, backlog included: RECORD_ALLOWANCE), its inline data, its history (each epoch's line,
charged as the worker writes it), its checkpoint; a model's hash (meta and weights). What a job
will write while it trains is *reserved* at submit (job_reservation: its model, checkpoint and
history), so jobs submitted together cannot each pass the check for the same free bytes; the
worker's writes use the reservation up first, and finish gives back what is left of it.

The counter moves in the same transaction (or Lua script) as the bytes it counts (core.store,
core.fairness and worker.attempts charge it next to every write and delete), so it never
drifts from what is stored. `check` reads it inside a WATCH on the counter: two writes racing
for the last bytes cannot both get in. Sizes are the bytes of field names and values; Valkey's
own bookkeeping per key (some tens of bytes) is not counted.
"""

from __future__ import annotations

from typing import Any, Mapping

from core.keys import Keys

SETTING = "BACKPROP_MAX_TENANT_BYTES"
RECORD_ALLOWANCE = 4096
"""Bytes charged for a job on top of its record as submitted: the metrics, error and
checkpoint fields it gains, and its entries in the tenant's job, status and backlog indexes."""
EPOCH_BYTES = 256
"""Bytes reserved per epoch of history: a line holds the epoch, loss, metric and their
validation values as JSON (about 150 bytes measured); a longer line is charged as written."""
MODEL_META_BYTES = 8192
"""Bytes reserved for a model's meta (network, preparation, metrics); charged as written."""
RESERVE_SHARE_MAX = 0.25
"""The most of Valkey's maxmemory that BACKPROP_REDIS_RESERVE_BYTES keeps for running jobs."""
CHECKPOINT_COPIES = 3
"""A checkpoint holds the weights and up to two optimizer moments per weight (Adam)."""


class QuotaExceeded(Exception):
    """Storing this would take the tenant past its byte quota (the API answers 413)."""

    status = 413

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


class StoreFull(QuotaExceeded):
    """Storing this would eat into the memory kept for running jobs (the API answers 507)."""

    status = 507


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def used(reader, keys: Keys, tenant: str) -> int:
    return int(reader.get(keys.tenant_bytes(tenant)) or 0)


def check(reader, keys: Keys, tenant: str, adding: int, limit: int, what: str,
          field: str | None = None) -> None:
    """Raise QuotaExceeded when `adding` more bytes would take `tenant` past `limit`.
    `reader` is the client, or a pipeline WATCHing keys.tenant_bytes(tenant)."""
    now = used(reader, keys, tenant)
    if adding > 0 and now + adding > limit:
        raise QuotaExceeded(
            f"{what} needs {mib(adding)} of storage; tenant {tenant!r} stores {mib(now)} of "
            f"its {mib(limit)} ({SETTING}={limit}): delete datasets, models or finished jobs "
            f"it no longer needs (DELETE /v1/datasets/{{id}}, /v1/models/{{id}}, "
            f"/v1/jobs/{{id}}) or wait for its running jobs to end", field)


def charge(pipe, keys: Keys, tenant: str, delta: int) -> None:
    """Queue the counter's change (negative when bytes are deleted) on a transaction."""
    if delta:
        pipe.incrby(keys.tenant_bytes(tenant), int(delta))


def check_room(connection, adding: int, reserve: int, what: str,
                field: str | None = None) -> None:
    """Raise StoreFull when `adding` bytes would take Valkey within `reserve` bytes of its
    maxmemory: that last stretch is kept for running jobs' writes (epochs, checkpoints,
    models), so one tenant filling the store cannot make another's running job fail. A
    server without maxmemory (0) is not checked. At most RESERVE_SHARE_MAX of maxmemory is
    kept, so a small store still takes uploads."""
    memory = connection.info("memory")
    limit, now = int(memory.get("maxmemory", 0)), int(memory.get("used_memory", 0))
    reserve = min(reserve, int(limit * RESERVE_SHARE_MAX))
    if limit and now + adding > limit - reserve:
        raise StoreFull(
            f"{what} needs {mib(adding)}; the job store (Redis) holds {mib(now)} of its "
            f"{mib(limit)} (BACKPROP_REDIS_MAXMEMORY), of which the last {mib(reserve)} "
            f"(BACKPROP_REDIS_RESERVE_BYTES) is kept for running jobs: delete datasets, models "
            f"or finished jobs you no longer need, or raise BACKPROP_REDIS_MAXMEMORY", field)


def hash_bytes(mapping: Mapping[Any, Any]) -> int:
    """Size of a hash as written: its field names and values (str or bytes)."""
    return sum(len(_raw(name)) + len(_raw(value)) for name, value in mapping.items())


def stored_hash_bytes(connection, key: str) -> int:
    """Size of a stored hash (field names and values), without reading its values: what a
    delete gives back. Call after WATCHing `key` (read on another connection)."""
    fields = connection.hkeys(key)
    if not fields:
        return 0
    reads = connection.pipeline(transaction=False)
    for name in fields:
        reads.hstrlen(key, name)
    return sum(len(name) for name in fields) + sum(reads.execute())


def job_reservation(n_params: int, itemsize: int, epochs: int) -> int:
    """What a job will write while it trains, reserved at submit: its checkpoint (weights and
    optimizer moments), its model's meta (the model's weights replace the checkpoint at the
    end) and its history."""
    return CHECKPOINT_COPIES * n_params * itemsize + MODEL_META_BYTES + epochs * EPOCH_BYTES


def use_reservation(delta: int, reserved: int) -> tuple[int, int]:
    """(taken from the reservation, charged on top of it) for `delta` new bytes of a job that
    has `reserved` bytes reserved; bytes given back (delta < 0) go to the tenant."""
    taken = min(max(delta, 0), max(reserved, 0))
    return taken, delta - taken


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
