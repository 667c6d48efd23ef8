"""The FastAPI application: wiring only; routes live in service/routes/."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core import queues
from core.blas_threads import limit_blas_threads
from core.logs import setup_logging
from core.settings import Settings, get_settings
from core.store import Store
from service.openapi_extra import openapi
from service.auth import Authenticate, key_digest
from service.body_limit import BodySizeLimit
from service.errors import UnexpectedErrors, install_error_handlers
from service.exports import ExportSlots
from service.model_cache import ModelCache
from service.prometheus_metrics import install_metrics
from service.routes import dashboard, datasets, evaluate, events, health, jobs, models
from service.routes import onnx, sweeps, v2
from service.routes.api_docs import install_api_docs
from service.serving import DataPlane
from service.state import ServiceState, state_of
from service.stream_slots import StreamSlots


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At startup: freeze the garbage collector's view of what importing and building the app
    made (about 115,000 objects), so that full collections, which stop the event loop, skip
    it. They walked it all: 40-55 ms every second while bodies of 10,000 records were parsed,
    180 ms while 3000 connections arrived at once (bench/isolation.py); now about 10 ms.
    At shutdown: stop the model-deletion listener, close the event streams' Redis pool."""
    gc.collect()
    gc.freeze()
    yield
    state = state_of(app)
    state.models.close()
    if state.events_redis is not None:
        await state.events_redis.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_logging("api")
    limit_blas_threads(settings.api_blas_threads)  # requests, not BLAS threads, fill the cores
    app = FastAPI(title="backprop-service", version="0.1.0",
                  description="Train neural networks by backpropagation over HTTP.",
                  lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    store = Store(queues.connect(settings), settings.key_prefix)
    cache = ModelCache(store, settings.model_cache_size)
    app.state.service = ServiceState(
        settings=settings, store=store, models=cache, serving=DataPlane(cache, settings),
        key_digests={key_digest(k): t for k, t in settings.tenant_keys.items()},
        stream_slots=StreamSlots(settings.max_streams_per_tenant, settings.max_streams),
        export_slots=ExportSlots(settings.max_exports_per_tenant, settings.max_exports))
    install_error_handlers(app)
    # Routes are matched in order, at ~10 us a route: predict and infer, the hot paths, first.
    for module in (models, v2, health, datasets, jobs, sweeps, events, dashboard, evaluate):
        app.include_router(module.router)
    app.include_router(onnx.router)
    install_api_docs(app)
    # Middleware, innermost first: each add_middleware wraps the ones before it.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Authenticate)  # the key, before anything reads a body
    app.add_middleware(UnexpectedErrors)  # any exception left: the JSON 500, connection kept
    install_metrics(app, store, settings)  # outermost: it also times the answers above
    app.openapi = lambda: openapi(app)
    return app
