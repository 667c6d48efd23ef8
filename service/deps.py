"""Shared route dependencies, declared once as Annotated aliases, and the API key check that
runs before any route (service.deps.Authenticate)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError
from starlette.routing import get_route_path

from core.records import is_id
from core.settings import Settings
from core.store import Store
from service.arrays import parse_json
from service.errors import ApiError, not_found, send_error
from service.model_cache import ModelCache

KEYLESS_TENANT = "public"
# Declares the scheme in the OpenAPI document; the checks below are ours (401, not 403).
BEARER = HTTPBearer(auto_error=False, scheme_name="ApiKey", description=(
    "An API key from BACKPROP_API_KEYS, as `Authorization: Bearer <key>`. Each key is a tenant "
    "that sees only its own datasets, jobs and models. Keyless when no keys are configured."))
JSON_TYPES = ("application/json",)
KEYED_PATHS = ("/v1/", "/v2/models/")
"""Every operation under these takes a key; /healthz, /readyz, /metrics, the dashboard's page
and /v2's server and health routes do not."""
PATH_IDS = {"dataset_id": "dataset", "job_id": "job", "model_id": "model"}


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
    service runs without keys. Authenticate has checked it already for every keyed path;
    `credentials` is there for the OpenAPI document's security scheme."""
    return authenticated(request.scope)


def authenticated(scope: dict) -> str:
    """The request's tenant, from its headers alone (noted in the scope: the access log and
    the routes read it there), or ApiError 401."""
    state = scope.setdefault("state", {})
    if "tenant" not in state:
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        state["tenant"] = tenant_for_key(
            bearer_key(authorization.decode("latin-1") if authorization else None),
            scope["app"].state.key_digests)
    return state["tenant"]


def hot_route_docs(path_id: str) -> dict:
    """openapi_extra of an operation that takes no FastAPI parameters (the predict routes: the
    dependency machinery cost about 50 us of a 250 us one-row predict). It reads its tenant
    with authenticated() and its path id from request.path_params; this documents the
    parameter and security FastAPI would have."""
    return {"security": [{BEARER.scheme_name: []}], "parameters": [
        {"name": path_id, "in": "path", "required": True,
         "schema": {"type": "string", "title": path_id.replace("_", " ").title()}}]}


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


async def check_path_ids(request: Request) -> None:
    """A path id not of its kind's form is a missing record (404, the same answer), before
    any Redis access: `job_x:history` would otherwise name another key, and another tenant's
    ids would answer differently from made-up ones. Runs for every route (app dependency)."""
    for name, kind in PATH_IDS.items():
        value = request.path_params.get(name)
        if value is not None and not is_id(kind, value):
            raise not_found(kind, value)


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


def parsed(model: type[BaseModel], body: bytes) -> BaseModel:
    """A JSON body read as `model`, for routes that parse their body themselves (off the event
    loop); a body that does not fit answers the 422 FastAPI's own parsing would."""
    try:
        return model.model_validate(parse_json(body))
    except ValidationError as exc:
        # No `input`: for a big body it would be the whole body, pickled back from a decoder
        # process (arrays.decode_json_body); no answer shows it.
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
TenantDep = Annotated[str, Depends(get_tenant)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
