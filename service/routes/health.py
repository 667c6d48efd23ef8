"""/healthz (the process is up) and /readyz (Redis answers and a worker is alive)."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from service.responses import JSONBytes

from service.deps import StoreDep
from worker import queues

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


def readiness(store) -> tuple[bool, dict]:
    """(ready, body): Redis reachable and at least one RQ worker registered and alive."""
    try:
        store.r.ping()
        workers = len(queues.live_workers(store.r))
    except redis.RedisError as exc:
        return False, {"status": "unavailable", "redis": "unreachable",
                       "reason": f"Redis is unreachable: {exc}"}
    if workers == 0:
        return False, {"status": "unavailable", "redis": "ok", "workers": 0,
                       "reason": "no worker is running: start one with `backprop worker`"}
    return True, {"status": "ok", "redis": "ok", "workers": workers}


@router.get("/readyz", responses={503: {"description": "not ready, with the reason"}})
def readyz(store: StoreDep):
    ready, body = readiness(store)
    return JSONBytes(body, status_code=200 if ready else 503)
