"""Shared route dependencies, declared once as Annotated aliases."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.errors import ApiError
from service.model_cache import ModelCache
from worker.settings import Settings
from worker.store import Store

KEYLESS_TENANT = "public"


def key_digest(key: str) -> bytes:
    """Keys are held only as SHA-256 digests once the app has started."""
    return hashlib.sha256(key.encode()).digest()


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.models


def get_tenant(request: Request) -> str:
    """The tenant of the request's API key (`Authorization: Bearer KEY`), or `public` when the
    service runs without keys. Every configured key is compared, in constant time."""
    keys: dict[bytes, str] = request.app.state.key_digests
    if not keys:
        return KEYLESS_TENANT
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(401, "this service needs an API key: send `Authorization: Bearer <key>`",
                       headers={"WWW-Authenticate": "Bearer"})
    digest = key_digest(presented.strip())
    tenant = None
    for known, owner in keys.items():
        if hmac.compare_digest(known, digest):
            tenant = owner
    if tenant is None:
        raise ApiError(401, "the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    request.state.tenant = tenant
    return tenant


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
TenantDep = Annotated[str, Depends(get_tenant)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
