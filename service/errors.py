"""Every error answers JSON `{"error": {"status", "message", "field"?, "details"?}}` (on /v2,
the inference protocol's `{"error": "message"}`), an unexpected one included."""

from __future__ import annotations

import logging

import orjson
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from service.responses import JSONBytes
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from core import quota

log = logging.getLogger("backprop.api")


class ApiError(Exception):
    """An error a person can act on: `message` says what to change, `field` where."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers

    def __reduce__(self):  # raised in a decoder process, re-raised in the API (arrays.py)
        return type(self), (self.status, self.message, self.field, self.headers)


def not_found(kind: str, item_id: str) -> ApiError:
    """The one answer for a record that is missing, another tenant's, or not an id at all."""
    shown = item_id if len(item_id) <= 80 else item_id[:80] + "..."
    return ApiError(404, f"no {kind} with id {shown!r} (for this API key)")


def invalid(field: str, message: str, status: int = 422) -> ApiError:
    """The one factory of "`field`: what to change" errors (422 unless told)."""
    return ApiError(status, f"{field}: {message}", field)


def error_body(status: int, message: str, field: str | None = None,
               details: list | None = None) -> dict:
    error: dict = {"status": status, "message": message}
    if field is not None:
        error["field"] = field
    if details:
        error["details"] = details
    return {"error": error}


def is_protocol_path(path: str) -> bool:
    """/v2 speaks the Open Inference Protocol, whose errors are `{"error": "message"}`."""
    return path == "/v2" or path.startswith("/v2/")


def error_bytes(path: str, status: int, message: str) -> bytes:
    """An error body in the form the API at `path` uses, for answers made outside FastAPI."""
    body = {"error": message} if is_protocol_path(path) else error_body(status, message)
    return orjson.dumps(body)


async def send_error(send, path: str, status: int, message: str,
                     headers: dict[str, str] | None = None) -> None:
    """Answer an error from a pure ASGI middleware (before FastAPI saw the request)."""
    body = error_bytes(path, status, message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


UNEXPECTED = ("the service failed unexpectedly on this request (logged on the server as "
              "\"unexpected error\"); retry it, and if it fails again report it with the time")


class UnexpectedErrors:
    """Pure ASGI middleware: an exception no handler answered becomes the JSON 500 body, and
    is not re-raised, so the server keeps the keep-alive connection open (Starlette's own
    handler answers plain text and re-raises, and uvicorn then drops the connection). An
    exception after the response has started can only end the connection."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def noting_start(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, noting_start)
        except ClientDisconnect:  # the client left mid-body: nobody to answer
            return
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if started:
                raise
            await send_error(send, scope["path"], 500, UNEXPECTED)


def redis_failure(exc: redis.RedisError) -> tuple[int, str, dict[str, str] | None]:
    """(status, message, headers) for a failed Redis call: full (507), unreachable (503), or
    data it cannot read (500)."""
    if isinstance(exc, redis.OutOfMemoryError):
        return 507, ("the job store (Redis) is full and refused to store this (its maxmemory, "
                     "BACKPROP_REDIS_MAXMEMORY, is reached); delete datasets, models or "
                     "finished jobs you no longer need, or raise BACKPROP_REDIS_MAXMEMORY"), None
    if isinstance(exc, redis.ResponseError):  # WRONGTYPE and the like: not a dropped link
        return 500, (f"the job store (Redis) refused a command ({str(exc).rstrip('.')}); "
                     f"report this with the time"), None
    return 503, (f"the job store (Redis) is unreachable ({str(exc).rstrip('.')}); retry "
                 f"shortly, the service reconnects by itself"), {"Retry-After": "2"}


def field_path(loc: tuple) -> str:
    """('body', 'network', 'layers', 0, 'units') -> 'network.layers[0].units'; the tags that
    pydantic puts in for the members of a union ('list[float]') are left out."""
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        if isinstance(part, str) and "[" in part:
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or (str(loc[0]) if loc else "body")


def validation_details(errors: list[dict]) -> list[dict]:
    return [_json_invalid(e) if e.get("type") == "json_invalid" else
            {"field": field_path(tuple(e.get("loc", ()))),
             "message": e.get("msg", "invalid").removeprefix("Value error, ")}
            for e in errors]


def _json_invalid(error: dict) -> dict:
    """FastAPI puts the character offset where a field goes: ('body', 12)."""
    loc, reason = tuple(error.get("loc", ())), (error.get("ctx") or {}).get("error", "")
    where = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
    return {"field": "body", "message": f"not valid JSON ({reason}{where})"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONBytes(error_body(exc.status, exc.message, exc.field), exc.status,
                              headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        details = validation_details(list(exc.errors()))
        first = details[0] if details else {"field": "body", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}"
        if len(details) > 1:
            message += f" (and {len(details) - 1} more problem(s), see details)"
        return JSONBytes(error_body(422, message, first["field"], details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 400:  # Starlette/FastAPI could not parse the body at all
            return JSONBytes(error_body(422, f"body: could not be read ({message}); send UTF-8 "
                                             f"JSON, or a well-formed multipart/form-data upload",
                                        "body"), 422)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        return JSONBytes(error_body(exc.status_code, message), exc.status_code,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(quota.QuotaExceeded)
    async def over_quota(request: Request, exc: quota.QuotaExceeded):
        return JSONBytes(error_body(413, exc.message, exc.field), 413)

    @app.exception_handler(redis.RedisError)
    async def redis_failed(request: Request, exc: redis.RedisError):
        status, message, headers = redis_failure(exc)
        log.warning("redis call failed (%s): %s", status, exc)
        return JSONBytes(error_body(status, message), status, headers=headers)
