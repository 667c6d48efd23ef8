"""Whether the service can take work: Redis answers and a worker is alive (/readyz and /v2's
health/ready both ask here)."""

from __future__ import annotations

import redis

from core import queues


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
