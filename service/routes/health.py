"""/healthz (the process is up) and /readyz (Redis answers and a worker is alive)."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import IdCheckedRoute, SettingsDep, StoreDep
from service.readiness import readiness
from service.responses import JSONBytes

router = APIRouter(route_class=IdCheckedRoute, tags=["health"])


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready, with the reason"}})
def readyz(store: StoreDep, settings: SettingsDep):
    ready, body = readiness(store, settings)
    return JSONBytes(body, status_code=200 if ready else 503)
