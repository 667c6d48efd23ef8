"""Heavy work off the event loop: parsing bodies, loading models and forward passes run in a
bounded set of threads of each API process (BACKPROP_API_THREADS), so /healthz, status reads
and small requests never queue behind a large predict."""

from __future__ import annotations

from typing import Callable, TypeVar

from anyio import CapacityLimiter, to_thread
from starlette.requests import Request

T = TypeVar("T")


def limiter(request: Request) -> CapacityLimiter:
    """This app's limiter, made on first use (inside the event loop it belongs to)."""
    state = request.app.state
    found = getattr(state, "work_limiter", None)
    if found is None:
        found = state.work_limiter = CapacityLimiter(state.settings.api_threads)
    return found


async def run(request: Request, fn: Callable[[], T], light: bool = False) -> T:
    """fn() in one of the app's work threads, once one is free; on the event loop itself when
    `light`: work bounded well under a millisecond, which costs less than the trip to a thread
    and back (a cached one-row predict spent 60% more CPU with it: GIL hand-offs)."""
    if light:
        return fn()
    return await to_thread.run_sync(fn, limiter=limiter(request))
