"""Where request bodies are decoded off the event loop: a few decoder threads, and for big JSON
bodies anyio's decoder processes, both capped by one limiter."""

from __future__ import annotations

import anyio
import anyio.to_process
import anyio.to_thread
from anyio import BrokenWorkerProcess

from service.errors import ApiError

DECODE_THREADS = 2
"""Request bodies decoded at once per API process; more wait their turn, so a burst of big
uploads holds at most this many decodes' memory (a JSON body takes about 9x its size)."""
_decoders = anyio.CapacityLimiter(DECODE_THREADS)


async def off_loop(decode, *args):
    """decode(*args) in one of the decoder threads, so the event loop keeps answering other
    requests (health checks, status polls) meanwhile."""
    return await anyio.to_thread.run_sync(decode, *args, limiter=_decoders)


PROCESS_DECODE_BYTES = 1 << 20
"""JSON bodies from this size are decoded in a decoder process rather than a thread. Parsing
JSON and turning lists into arrays hold the GIL (about 10 ms a MiB), so in a thread a 39 MiB
upload still held /healthz up to 0.74 s; from a process the API only copies bytes and arrays
(bench/isolation.py). Smaller bodies stay in a thread: a process round trip costs more."""


async def decode_json_body(decode, body: bytes, *args):
    """decode(body, *args) off the event loop: the same function in a decoder thread, or for a
    body of PROCESS_DECODE_BYTES or more in a decoder process (anyio's pool: at most
    DECODE_THREADS at once, shared with the threads; idle ones exit after 5 minutes). `decode`
    and what it returns or raises must pickle."""
    if len(body) < PROCESS_DECODE_BYTES:
        return await off_loop(decode, body, *args)
    try:
        return await anyio.to_process.run_sync(decode, body, *args, limiter=_decoders)
    except BrokenWorkerProcess:
        raise ApiError(503, "body: the process decoding this body ended before it finished "
                            "(out of memory?); retry, or send the data as an NPZ, CSV or "
                            "Parquet file, which take far less memory to read than JSON",
                       "body", headers={"Retry-After": "5"}) from None
