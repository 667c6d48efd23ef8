"""Shared route dependencies, declared once as Annotated aliases."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from service.errors import ApiError
from service.model_cache import ModelCache
from worker.settings import Settings
from worker.store import Store

KEYLESS_TENANT = "public"
# Declares the scheme in the OpenAPI document; the checks below are ours (401, not 403).
BEARER = HTTPBearer(auto_error=False, scheme_name="ApiKey", description=(
    "An API key from BACKPROP_API_KEYS, as `Authorization: Bearer <key>`. Each key is a tenant "
    "that sees only its own datasets, jobs and models. Keyless when no keys are configured."))
JSON_TYPES = ("application/json",)


def key_digest(key: str) -> bytes:
    """Keys are held only as SHA-256 digests once the app has started."""
    return hashlib.sha256(key.encode()).digest()


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.models


async def get_tenant(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> str:
    """The tenant of the request's API key (`Authorization: Bearer KEY`), or `public` when the
    service runs without keys."""
    tenant = tenant_for_key(credentials.credentials if credentials else None,
                            request.app.state.key_digests)
    request.state.tenant = tenant
    return tenant


def request_tenant(request: Request) -> str:
    """What the TenantDep dependency gives, without FastAPI's dependency machinery (about 50 us
    a request, a fifth of a one-row predict): for the predict routes, which declare the ApiKey
    scheme themselves (hot_route_docs). The header is parsed as HTTPBearer parses it."""
    scheme, key = get_authorization_scheme_param(request.headers.get("authorization"))
    tenant = tenant_for_key(key if key and scheme.lower() == "bearer" else None,
                            request.app.state.key_digests)
    request.state.tenant = tenant
    return tenant


def hot_route_docs(path_id: str) -> dict:
    """openapi_extra of an operation that reads its key with request_tenant and its path id
    from request.path_params (the parameter and security FastAPI would have documented)."""
    return {"security": [{BEARER.scheme_name: []}], "parameters": [
        {"name": path_id, "in": "path", "required": True,
         "schema": {"type": "string", "title": path_id.replace("_", " ").title()}}]}


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
        raise ApiError(401, "the API key is not valid; check BACKPROP_API_KEYS on the server",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return tenant


async def require_json(request: Request) -> None:
    """415 for a body of another type, before FastAPI reports it as a missing object."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in JSON_TYPES and not media.endswith("+json"):
        raise ApiError(415, f"body: Content-Type {media!r} is not read here; send JSON with "
                            f"`Content-Type: application/json`", "body")


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
TenantDep = Annotated[str, Depends(get_tenant)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
