"""Every error answers JSON `{"error": {"status", "message", "field"?, "details"?}}`."""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from service.responses import JSONBytes
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker import quota

log = logging.getLogger("backprop.api")


class ApiError(Exception):
    """An error a person can act on: `message` says what to change, `field` where."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def not_found(kind: str, item_id: str) -> ApiError:
    return ApiError(404, f"no {kind} with id {item_id!r} (for this API key)")


def error_body(status: int, message: str, field: str | None = None,
               details: list | None = None) -> dict:
    error: dict = {"status": status, "message": message}
    if field is not None:
        error["field"] = field
    if details:
        error["details"] = details
    return {"error": error}


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
    async def redis_down(request: Request, exc: redis.RedisError):
        log.warning("redis unavailable: %s", exc)
        return JSONBytes(error_body(
            503, f"the job store (Redis) is unreachable ({str(exc).rstrip('.')}); retry "
                 f"shortly, the service reconnects by itself"), 503, headers={"Retry-After": "2"})
