"""What the app holds for its lifetime, typed: one ServiceState on app.state.service, built in
service.app.create_app and read with state_of(app)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.settings import Settings
from core.store import Store

if TYPE_CHECKING:  # type names only: the modules import this one
    import redis.asyncio as aioredis
    from prometheus_client import CollectorRegistry

    from service.exports import ExportSlots
    from service.model_cache import ModelCache
    from service.serving import DataPlane
    from service.stream_slots import StreamSlots


@dataclass
class ServiceState:
    settings: Settings
    store: Store
    models: "ModelCache"
    serving: "DataPlane"
    """The data plane: model lookup, decoding, predict and encoding for /v1 and /v2."""
    key_digests: dict[bytes, str]
    """SHA-256 of each API key -> its tenant (service.auth)."""
    stream_slots: "StreamSlots"
    export_slots: "ExportSlots"
    """Model exports running, per tenant and in all (service.exports)."""
    events_redis: "aioredis.Redis | None" = None
    """The job event streams' own asyncio Redis client, made on the first stream."""
    metrics_registry: "CollectorRegistry | None" = None
    """What /metrics reads (service.prometheus_metrics)."""
    metrics_home: "CollectorRegistry | None" = None
    """Where request metrics register: None under PROMETHEUS_MULTIPROC_DIR."""


def state_of(app) -> ServiceState:
    """The app's ServiceState (`app`: the FastAPI app, as request.app or scope["app"])."""
    return app.state.service
