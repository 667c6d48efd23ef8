"""Prometheus metrics at /metrics and one structured log line per request.

Requests are counted by route template (`/v1/models/{model_id}/predict`, never the raw path),
so label values stay bounded. Job, queue, epoch and worker figures are read from Redis when
Prometheus scrapes, in a handful of round trips, never per request.
With several API processes (`--workers N`) request metrics are shared through
PROMETHEUS_MULTIPROC_DIR, so any process's /metrics counts all of them (service/cli.py).
"""

from __future__ import annotations

import logging
import os
import time

import redis
from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from core import fairness, queues
from core.logs import AccessLog
from core.records import FINISHED
from core.settings import Settings
from core.store import Store
from service.auth import KEYLESS_TENANT
from service.state import state_of

log = logging.getLogger("backprop.api.access")

UNMATCHED = "unmatched"
"""The route label of requests that no route serves (their raw paths are unbounded)."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds; from a cached 1-row predict (sub-millisecond) to a large upload."""

PATH_IDS = ("job_id", "model_id")
"""Path parameters worth a field of their own in the request log."""


class HttpMetrics:
    """Request count by method, route and status, and latency by method and route."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter("backprop_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("backprop_http_request_duration_seconds",
                                 "time from request to the end of the response",
                                 ["method", "route"], buckets=LATENCY_BUCKETS,
                                 registry=registry)
        self._children: dict[tuple, tuple] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)),
                        self.latency.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class StoreCollector(Collector):
    """Jobs by state, queue lengths, epochs trained and live workers, read at scrape time."""

    def __init__(self, store: Store, settings: Settings):
        self.store, self.settings = store, settings

    def collect(self):
        up = GaugeMetricFamily("backprop_redis_up", "1 when the job store (Redis) answered")
        try:
            counters, running = self.store.job_counts()
            lengths = queues.queue_lengths(self.store.r, self.settings)
            backlogged = fairness.backlog_length(self.store)
            workers = len(queues.live_workers(self.store.r))
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = GaugeMetricFamily("backprop_jobs", "jobs waiting in a queue (queued), in their "
                                "tenants' backlogs (backlogged) or running now", labels=["state"])
        now.add_metric(["queued"], sum(lengths.values()))
        now.add_metric(["backlogged"], backlogged)
        now.add_metric(["running"], running)
        yield now
        ended = CounterMetricFamily("backprop_jobs_finished", "jobs that ended, by final state",
                                    labels=["state"])
        for state in sorted(s.value for s in FINISHED):
            ended.add_metric([state], counters.get(f"jobs_{state}", 0))
        yield ended
        queued = GaugeMetricFamily("backprop_queue_length", "RQ jobs waiting, per queue",
                                   labels=["queue"])
        for name, length in lengths.items():
            queued.add_metric([name], length)
        yield queued
        yield CounterMetricFamily("backprop_epochs_trained", "epochs trained by all workers",
                                  value=counters.get("epochs_trained", 0))
        yield GaugeMetricFamily("backprop_workers", "live RQ worker processes", value=workers)


class StreamsCollector(Collector):
    """Job event streams open in the API process that answers /metrics (service.stream_slots)."""

    def __init__(self, app: FastAPI):
        self.app = app

    def collect(self):
        yield GaugeMetricFamily("backprop_event_streams_open", "job event streams open in "
                                "this API process",
                                value=state_of(self.app).stream_slots.in_use)


def route_of(scope: dict) -> str:
    """The template of the route that served the request, e.g. /v1/jobs/{job_id}."""
    return getattr(scope.get("route"), "path", None) or UNMATCHED


def tenant_of(scope: dict) -> str | None:
    tenant = scope.get("state", {}).get("tenant")
    if tenant is None and not state_of(scope["app"]).key_digests:
        tenant = KEYLESS_TENANT
    return tenant


class RequestMetrics:
    """Pure ASGI middleware: metrics and a JSON log line for every HTTP request. It logs the
    route, status, duration, tenant and path ids only: never headers, keys or bodies."""

    def __init__(self, app, http: HttpMetrics, access_log: bool):
        self.app, self.http = app, http
        self.access_log = AccessLog(log) if access_log else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500                            # what the client gets if the app raises

        async def send_noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            seconds = time.perf_counter() - start
            route, method = route_of(scope), scope["method"]
            self.http.observe(method, route, status, seconds)
            if self.access_log is not None:
                params = scope.get("path_params", {})
                self.access_log.info(f"{method} {route} {status}", {
                    "route": route, "status": status, "duration_ms": round(seconds * 1000, 3),
                    "tenant": tenant_of(scope),
                    **{name: params[name] for name in PATH_IDS if name in params}})


router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request):
    """Prometheus text format: requests, latency, jobs, queues, epochs, workers, streams."""
    return Response(generate_latest(state_of(request.app).metrics_registry),
                    media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI, store: Store, settings: Settings) -> None:
    """The /metrics route, its registries and the request middleware.

    ServiceState.metrics_registry is what /metrics reads; .metrics_home is where request
    metrics register (None under PROMETHEUS_MULTIPROC_DIR: their values then live in files,
    which one MultiProcessCollector adds up over the API's processes)."""
    registry = CollectorRegistry()
    home: CollectorRegistry | None = registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
        home = None
    http = HttpMetrics(home)
    registry.register(StoreCollector(store, settings))
    registry.register(StreamsCollector(app))
    state = state_of(app)
    state.metrics_registry, state.metrics_home = registry, home
    app.add_middleware(RequestMetrics, http=http, access_log=settings.access_log)
    app.include_router(router)
