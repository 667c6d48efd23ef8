"""Every error answers JSON `{"error": {"status", "message", "field"?, "details"?}}` (on /v2,
the inference protocol's `{"error": "message"}`), an unexpected one included.

One place decides statuses: an ApiError carries its own, and ANSWERS maps each domain
exception of core/ (and Redis's) to an ApiError. install_error_handlers registers one handler,
`answer_error`, for all of them, so /v1 and /v2 answer the same failure with the same status;
only the body's form differs. Anything else is a bug: UnexpectedErrors logs it and answers 500.
"""

from __future__ import annotations

import logging
from typing import Callable

import orjson
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from core import quota
from core.settings import env_name
from core.store import BadCursor
from core.training_data import DataMismatch
from service.responses import JSONBytes

log = logging.getLogger("backprop.api")


class ApiError(Exception):
    """An error a person can act on: `message` says what to change, `field` where."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, details: list | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers
        self.details = details

    def __reduce__(self):  # raised in a decoder process, re-raised in the API (service/pools.py)
        return type(self), (self.status, self.message, self.field, self.headers, self.details)


def invalid(field: str, message: str, status: int = 422) -> ApiError:
    """The one error factory for bad input: `field: message`, naming the field."""
    return ApiError(status, f"{field}: {message}", field)


def not_found(kind: str, item_id: str) -> ApiError:
    """The one answer for a record that is missing, another tenant's, or not an id at all."""
    shown = item_id if len(item_id) <= 80 else item_id[:80] + "..."
    return ApiError(404, f"no {kind} with id {shown!r} (for this API key)")


# -- domain exceptions -> statuses: the one registry -------------------------------------------
def redis_failure(exc: redis.RedisError) -> ApiError:
    """A failed Redis call: full (507), unreachable or not serving (503), or a command it
    refused, which is a bug of ours (500)."""
    if isinstance(exc, redis.OutOfMemoryError):
        setting = env_name("redis_maxmemory")
        return ApiError(507, f"the job store (Redis) is full and refused to store this (its "
                             f"maxmemory, {setting}, is reached); delete datasets, models or "
                             f"finished jobs you no longer need, or raise {setting}")
    reason = str(exc).rstrip(".")
    if isinstance(exc, redis.ResponseError) and not isinstance(exc, redis.ReadOnlyError):
        return ApiError(500, f"the job store (Redis) refused a command ({reason}); report "
                             f"this with the time")
    return ApiError(503, f"the job store (Redis) is unreachable ({reason}); retry shortly, "
                         f"the service reconnects by itself", headers={"Retry-After": "2"})


ANSWERS: dict[type[Exception], Callable[[Exception], ApiError]] = {
    redis.RedisError: redis_failure,
    quota.QuotaExceeded: lambda exc: ApiError(exc.status, exc.message, exc.field),  # 413, 507
    DataMismatch: lambda exc: invalid(exc.field, str(exc)),
    BadCursor: lambda exc: ApiError(422, str(exc), "before"),
}
"""Exceptions core/ (and redis-py) raise on purpose, and the ApiError each is answered as."""


def as_api_error(exc: Exception) -> ApiError:
    """`exc` as the ApiError it is answered as (its class or the nearest base in ANSWERS)."""
    if isinstance(exc, ApiError):
        return exc
    for kind in type(exc).__mro__:
        if kind in ANSWERS:
            return ANSWERS[kind](exc)
    raise TypeError(f"{type(exc).__name__} has no entry in service.errors.ANSWERS")


# -- bodies, in each protocol's form -----------------------------------------------------------
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


def protocol_status(status: int) -> int:
    """The inference protocol's "bad request" is 400 where /v1 answers 422."""
    return 400 if status == 422 else status


def error_bytes(path: str, status: int, message: str) -> bytes:
    """An error body in the form the API at `path` uses, for answers made outside FastAPI."""
    body = {"error": message} if is_protocol_path(path) else error_body(status, message)
    return orjson.dumps(body)


def error_response(path: str, error: ApiError) -> JSONBytes:
    if is_protocol_path(path):
        message = error.message
        if error.details:           # the protocol has one message: every problem in it
            message = "; ".join(f"{d['field']}: {d['message']}" for d in error.details)
        return JSONBytes({"error": message}, protocol_status(error.status),
                         headers=error.headers)
    return JSONBytes(error_body(error.status, error.message, error.field, error.details),
                     error.status, headers=error.headers)


async def send_error(send, path: str, status: int, message: str,
                     headers: dict[str, str] | None = None) -> None:
    """Answer an error from a pure ASGI middleware (before FastAPI saw the request)."""
    status = protocol_status(status) if is_protocol_path(path) else status
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


# -- FastAPI's own errors ----------------------------------------------------------------------
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


def validation_error(exc: RequestValidationError) -> ApiError:
    details = validation_details(list(exc.errors()))
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}"
    if len(details) > 1:
        message += f" (and {len(details) - 1} more problem(s), see details)"
    return ApiError(422, message, first["field"], details=details)


def http_error(request: Request, exc: StarletteHTTPException) -> ApiError:
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 400:  # Starlette/FastAPI could not parse the body at all
        return invalid("body", f"could not be read ({message}); send UTF-8 JSON, or a "
                               f"well-formed multipart/form-data upload")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /docs"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs"
    return ApiError(exc.status_code, message, headers=getattr(exc, "headers", None))


async def answer_error(request: Request, exc: Exception) -> JSONBytes:
    """The one exception handler: the ApiError an exception stands for, in the form of the
    protocol at the request's path."""
    if isinstance(exc, RequestValidationError):
        error = validation_error(exc)
    elif isinstance(exc, StarletteHTTPException):
        error = http_error(request, exc)
    else:
        error = as_api_error(exc)
    if isinstance(exc, redis.RedisError):
        log.warning("redis call failed (%s): %s", error.status, exc)
    return error_response(request.url.path, error)


def install_error_handlers(app: FastAPI) -> None:
    for kind in (ApiError, RequestValidationError, StarletteHTTPException, *ANSWERS):
        app.add_exception_handler(kind, answer_error)
