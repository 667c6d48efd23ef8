"""Where request bodies are decoded off the event loop: a few decoder threads, and for big JSON
bodies anyio's decoder processes, both behind one set of slots shared fairly between tenants."""

from __future__ import annotations

from collections import Counter

import anyio
import anyio.to_process
import anyio.to_thread
from anyio import BrokenWorkerProcess

from service.errors import ApiError

DECODE_THREADS = 2
"""Request bodies decoded at once per API process; more wait their turn, so a burst of big
uploads holds at most this many decodes' memory (a JSON body takes about 9x its size)."""


class FairSlots:
    """DECODE_THREADS slots, handed out fairly: a free slot goes to a waiting request of the
    tenant holding fewest slots (the longest-waiting among equals), so one tenant's slow or
    large bodies keep another tenant's request waiting for at most one slot's time, however
    many it sends. A lone tenant may use every slot. Event-loop only (no locks needed)."""

    def __init__(self, total: int):
        self.free = total
        self.held: Counter[str] = Counter()
        self.waiting: list[tuple[str, anyio.Event]] = []

    async def acquire(self, tenant: str) -> None:
        if self.free and not self.waiting:
            self._take(tenant)
            return
        waiter = (tenant, anyio.Event())
        self.waiting.append(waiter)
        try:
            await waiter[1].wait()
        except BaseException:               # cancelled: give back a slot handed over meanwhile
            if waiter[1].is_set():
                self.release(tenant)
            else:
                self.waiting.remove(waiter)
            raise

    def release(self, tenant: str) -> None:
        self.held[tenant] -= 1
        if not self.held[tenant]:
            del self.held[tenant]
        self.free += 1
        if self.waiting:
            # min() keeps the first of equals: the longest-waiting request of the tenant
            # holding fewest slots.
            waiter = min(self.waiting, key=lambda w: self.held[w[0]])
            self.waiting.remove(waiter)
            self._take(waiter[0])
            waiter[1].set()

    def _take(self, tenant: str) -> None:
        self.free -= 1
        self.held[tenant] += 1


_slots: FairSlots | None = None


def slots() -> FairSlots:
    """This process's slots, made on first use (inside the event loop: anyio.Event needs it)."""
    global _slots
    if _slots is None:
        _slots = FairSlots(DECODE_THREADS)
    return _slots


async def off_loop(decode, *args, tenant: str):
    """decode(*args) in a decoder thread, once `tenant` has a slot, so the event loop keeps
    answering other requests (health checks, status polls) meanwhile."""
    fair = slots()
    await fair.acquire(tenant)
    try:
        return await anyio.to_thread.run_sync(decode, *args)
    finally:
        fair.release(tenant)


PROCESS_DECODE_BYTES = 1 << 20
"""JSON bodies from this size are decoded in a decoder process rather than a thread. Parsing
JSON and turning lists into arrays hold the GIL (about 10 ms a MiB), so in a thread a 39 MiB
upload still held /healthz up to 0.74 s; from a process the API only copies bytes and arrays
(bench/isolation.py). Smaller bodies stay in a thread: a process round trip costs more."""

_processes = anyio.CapacityLimiter(DECODE_THREADS)
"""anyio's pool of decoder processes: never more than the slots, whichever tenants hold them."""


async def decode_json_body(decode, body: bytes, *args, tenant: str):
    """decode(body, *args) off the event loop, once `tenant` has a slot: in a decoder thread,
    or for a body of PROCESS_DECODE_BYTES or more in a decoder process (in_process). `decode`
    and what it returns or raises must pickle."""
    if len(body) < PROCESS_DECODE_BYTES:
        return await off_loop(decode, body, *args, tenant=tenant)
    return await in_process(decode, body, *args, tenant=tenant)


async def in_process(decode, *args, tenant: str):
    """decode(*args) in a decoder process (anyio's pool; idle ones exit after 5 minutes), once
    `tenant` has a slot: for work that holds the GIL long. `decode`, its arguments and what it
    returns or raises must pickle."""
    fair = slots()
    await fair.acquire(tenant)
    try:
        return await anyio.to_process.run_sync(decode, *args, limiter=_processes)
    except BrokenWorkerProcess:
        raise ApiError(503, "body: the process decoding this body ended before it finished "
                            "(out of memory?); retry, or send the data as an NPZ, CSV or "
                            "Parquet file, which take far less memory to read than JSON",
                       "body", headers={"Retry-After": "5"}) from None
    finally:
        fair.release(tenant)
