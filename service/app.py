"""The FastAPI application: wiring only; routes live in service/routes/."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from core import queues
from core.blas_threads import limit_blas_threads
from core.logs import setup_logging
from core.settings import Settings, get_settings
from core.store import Store
from service.body_limit import BodySizeLimit
from service.deps import Authenticate, check_path_ids, key_digest
from service.errors import UnexpectedErrors, install_error_handlers
from service.model_cache import ModelCache
from service.prometheus_metrics import install_metrics
from service.routes.api_docs import install_api_docs
from service.routes import dashboard, datasets, events, health, jobs, models
from service.routes import onnx, v2
from service.schemas import JobIn, PredictIn, document_errors


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_logging("api")
    limit_blas_threads(settings.api_blas_threads)  # requests, not BLAS threads, fill the cores
    app = FastAPI(title="backprop-service", version="0.1.0",
                  description="Train neural networks by backpropagation over HTTP.",
                  dependencies=[Depends(check_path_ids)], docs_url=None, redoc_url=None)
    store = Store(queues.connect(settings), settings.key_prefix)
    app.state.settings = settings
    app.state.store = store
    app.state.models = ModelCache(store, settings.model_cache_size)
    app.state.key_digests = {key_digest(k): t for k, t in settings.tenant_keys.items()}
    install_error_handlers(app)
    # Routes are matched in order, at ~10 us a route: predict and infer, the hot paths, first.
    for module in (models, v2, health, datasets, jobs, events, dashboard):
        app.include_router(module.router)
    app.include_router(onnx.router)
    install_api_docs(app)
    # Middleware, innermost first: each add_middleware wraps the ones before it.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Authenticate)  # the key, before anything reads a body
    app.add_middleware(UnexpectedErrors)  # any exception left: the JSON 500, connection kept
    install_metrics(app, store, settings)  # outermost: it also times the answers above
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus the bodies that routes parse themselves (for both content types)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (PredictIn, JobIn):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, nested in body.pop("$defs", {}).items():
                components.setdefault(name, nested)
            components[model.__name__] = body
        app.openapi_schema = document_errors(schema)
    return app.openapi_schema
