"""Bytes each tenant stores (datasets, models, inline job data), counted in one Redis integer.

The counter moves in the same transaction as the bytes it counts (core.store and
core.fairness charge it next to every write and delete), so it never drifts from what is
stored. `check` reads it inside a WATCH on the counter: two uploads racing for the last bytes
cannot both get in.
"""

from __future__ import annotations

from core.keys import Keys

SETTING = "BACKPROP_MAX_TENANT_BYTES"


class QuotaExceeded(Exception):
    """Storing this would take the tenant past its byte quota (the API answers 413)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


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
            f"its {mib(limit)} ({SETTING}={limit}): delete datasets or models it no longer "
            f"needs (DELETE /v1/datasets/{{id}}, /v1/models/{{id}}, /v1/jobs/{{id}})", field)


def charge(pipe, keys: Keys, tenant: str, delta: int) -> None:
    """Queue the counter's change (negative when bytes are deleted) on a transaction."""
    if delta:
        pipe.incrby(keys.tenant_bytes(tenant), int(delta))
