"""The hot path of POST /v1/models/{model_id}/predict, answered without FastAPI's per-request
machinery.

For a one-row JSON predict the real work (parse, forward pass, serialize) is a few tens of
microseconds, and FastAPI's routing and dependency resolution around it cost several times that
(bench/service.py; issue 6). This pure ASGI middleware answers the common case itself: a predict
for a model this process has already loaded. It calls the route's own functions
(tenant_for_key, predicted, rendered), so the answer is the
route's answer byte for byte (JSON, or .npy either way). Everything else (a model not loaded
yet, a body over the limit, any error at all) goes on to the FastAPI route with the body handed
on as it arrived, so that errors and their bodies are made in one place.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import Counter
from starlette.routing import get_route_path

from service.deps import tenant_for_key
from service.errors import ApiError
from service.routes.models import PREDICT_MEDIA, PREDICT_PATH, media_type, predicted, rendered
from service.routes.models import router as models_router

ROUTE_PATH = models_router.prefix + PREDICT_PATH
HEADERS = (b"content-type", b"accept", b"authorization", b"content-length")


def _first_headers(raw: list[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The first value of each header the fast path reads (what Starlette's headers.get gives)."""
    found: dict[bytes, str] = {}
    for name, value in raw:
        if name in HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _bearer_key(authorization: str | None) -> str | None:
    """The key of `Authorization: Bearer KEY`, parsed as FastAPI's HTTPBearer parses it."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


class FastPredict:
    """Pure ASGI middleware; install it inside the metrics middleware, outside the body limit."""

    def __init__(self, app):
        self.app = app
        self._route: APIRoute | None = None
        self._answered = self._handed_on = None

    def _setup(self, fastapi_app) -> None:
        """The predict route (its template labels metrics; its regex matches paths) and this
        path's counter, looked up once the app has all its routes."""
        self._route = next(r for r in models_router.routes if isinstance(r, APIRoute)
                           and r.path == ROUTE_PATH and "POST" in r.methods)
        outcomes = Counter(
            "backprop_predict_fast_path", "predicts answered on the fast path (answered) or "
            "handed on to the FastAPI route (handed_on: model not loaded yet, errors)",
            ["outcome"], registry=fastapi_app.state.metrics_home)
        self._answered, self._handed_on = outcomes.labels("answered"), outcomes.labels("handed_on")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        if self._route is None:
            self._setup(scope["app"])
        match = self._route.path_regex.match(get_route_path(scope))
        if match is None:
            return await self.app(scope, receive, send)
        messages: list[dict] = []
        answer = await self._answer(scope, receive, match["model_id"], messages)
        if answer is None:
            self._handed_on.inc()
            return await self.app(scope, _replay(messages, receive), send)
        self._answered.inc()
        content_type, body = answer
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(len(body)).encode()), (b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope, receive, model_id: str,
                      messages: list) -> tuple[bytes, bytes] | None:
        """(content type, body) of the answer, or None to hand the request on (`messages`:
        what was received)."""
        state = scope["app"].state
        headers = _first_headers(scope["headers"])
        media = media_type(headers.get(b"content-type", ""))
        if media not in PREDICT_MEDIA:
            return None
        length = headers.get(b"content-length")
        limit = state.settings.max_body_bytes
        if length is not None and (not length.isdigit() or int(length) > limit):
            return None
        try:
            tenant = tenant_for_key(_bearer_key(headers.get(b"authorization")),
                                    state.key_digests)
        except ApiError:        # 401: the route's dependency answers it
            return None
        loaded = state.models.peek(tenant, model_id)
        if loaded is None:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            payload = predicted(loaded, media, b"".join(chunks), state.settings.max_predict_rows)
        except Exception:       # the route answers it again, as every error is answered
            return None
        # What the route's path operation leaves in the scope, for metrics and the access log.
        scope["route"] = self._route
        scope["path_params"] = {"model_id": model_id}
        scope.setdefault("state", {})["tenant"] = tenant
        content_type, body = rendered(payload, headers.get(b"accept", ""))
        return content_type.encode(), body


def _replay(messages: list[dict], receive):
    """receive() that first gives back the messages the fast path already took."""
    pending = list(messages)

    async def replay():
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
