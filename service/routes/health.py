"""/healthz (the process is up) and /readyz (Redis answers and a worker is alive)."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from service.responses import JSONBytes

from core import queues
from service.deps import SettingsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


def readiness(store, settings) -> tuple[bool, dict]:
    """(ready, body): Redis reachable and at least one RQ worker registered and alive; the
    body counts live workers per queue (a GPU queue without one is not ready for GPU jobs)."""
    try:
        store.r.ping()
        workers = len(queues.live_workers(store.r))
        serving = queues.workers_serving(store.r, settings)
    except redis.RedisError as exc:
        return False, {"status": "unavailable", "redis": "unreachable",
                       "reason": f"Redis is unreachable: {exc}"}
    if workers == 0:
        return False, {"status": "unavailable", "redis": "ok", "workers": 0, "queues": serving,
                       "reason": "no worker is running: start one with `backprop worker`"}
    return True, {"status": "ok", "redis": "ok", "workers": workers, "queues": serving}


@router.get("/readyz", responses={503: {"description": "not ready, with the reason"}})
def readyz(store: StoreDep, settings: SettingsDep):
    ready, body = readiness(store, settings)
    return JSONBytes(body, status_code=200 if ready else 503)
