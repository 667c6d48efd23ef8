"""API keys: which tenant a request is, checked from its headers before anything reads its body
(service.auth.Authenticate, a pure ASGI middleware)."""

from __future__ import annotations

import hashlib
import hmac

from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.routing import get_route_path

from core.settings import env_name
from service.errors import ApiError, send_error
from service.state import state_of

KEYLESS_TENANT = "public"
# Declares the scheme in the OpenAPI document; the checks below are ours (401, not 403).
BEARER = HTTPBearer(auto_error=False, scheme_name="ApiKey", description=(
    f"An API key from {env_name('api_keys')}, as `Authorization: Bearer <key>`. Each key is a "
    f"tenant that sees only its own datasets, jobs and models. Keyless when no keys are "
    f"configured."))
KEYED_PATHS = ("/v1/", "/v2/models/")
"""Every operation under these takes a key; /healthz, /readyz, /metrics, the dashboard's page
and /v2's server and health routes do not."""


def key_digest(key: str) -> bytes:
    """Keys are held only as SHA-256 digests once the app has started."""
    return hashlib.sha256(key.encode()).digest()


def authenticated(scope: dict) -> str:
    """The request's tenant, from its headers alone (noted in the scope: the access log and
    the routes read it there), or ApiError 401."""
    state = scope.setdefault("state", {})
    if "tenant" not in state:
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        state["tenant"] = tenant_for_key(
            bearer_key(authorization.decode("latin-1") if authorization else None),
            state_of(scope["app"]).key_digests)
    return state["tenant"]


def bearer_key(authorization: str | None) -> str | None:
    """The key of `Authorization: Bearer KEY`, parsed as FastAPI's HTTPBearer parses it."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


class Authenticate:
    """Pure ASGI middleware: the key is checked from the headers before anything reads or
    parses a body, so a request without a valid key costs no more than its headers (FastAPI
    parses a route's body before its dependencies run). Install it outside every middleware
    that reads bodies."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and get_route_path(scope).startswith(KEYED_PATHS):
            try:
                authenticated(scope)
            except ApiError as exc:
                return await send_error(send, get_route_path(scope), exc.status, exc.message,
                                        exc.headers)
        await self.app(scope, receive, send)


def tenant_for_key(key: str | None, keys: dict[bytes, str]) -> str:
    """The tenant owning `key` (None: no bearer credentials sent), or ApiError 401. Every
    configured key is compared, in constant time, as digests; the key itself is never logged
    or stored."""
    if not keys:
        return KEYLESS_TENANT
    if key is None or not key.strip():
        raise ApiError(401, "this service needs an API key: send `Authorization: Bearer <key>`",
                       headers={"WWW-Authenticate": "Bearer"})
    digest = key_digest(key.strip())
    tenant = None
    for known, owner in keys.items():
        if hmac.compare_digest(known, digest):
            tenant = owner
    if tenant is None:
        raise ApiError(401, f"the API key is not valid; check {env_name('api_keys')} on the "
                            f"server", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return tenant
