"""The parts of the OpenAPI document that FastAPI cannot infer: bodies that routes parse
themselves (for each content type), and the parameters of the hot routes, which declare none."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.auth import BEARER
from service.schemas import JobIn, PredictIn, document_errors
from service.serving.v1_codec import CSV, NPY
from service.serving.v2_codec import HEADER_LENGTH
from service.v2_schemas import InferRequestIn, inline_schema


def hot_route_docs(path_id: str) -> dict:
    """openapi_extra of an operation that takes no FastAPI parameters (the predict routes: the
    dependency machinery cost about 50 us of a 250 us one-row predict). It reads its tenant
    with auth.authenticated() and its path id from request.path_params; this documents the
    parameter and security FastAPI would have."""
    return {"security": [{BEARER.scheme_name: []}], "parameters": [
        {"name": path_id, "in": "path", "required": True,
         "schema": {"type": "string", "title": path_id.replace("_", " ").title()}}]}


PREDICT_DOCS = {**hot_route_docs("model_id"), "requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/PredictIn"}},
    NPY: {"schema": {"type": "string", "format": "binary",
                     "description": "a 2-D .npy array (rows x n_inputs); answered as .npy "
                                    "when Accept is application/x-npy"}},
    CSV: {"schema": {"type": "string", "description": (
        "for a model trained with preprocessing: a CSV with a header row, answered as the same "
        "CSV with the predictions appended")}}}}}

BINARY = "application/octet-stream"
INFER_DOCS = hot_route_docs("model_id")
INFER_DOCS["parameters"].append({
    "name": HEADER_LENGTH, "in": "header", "required": False,
    "schema": {"type": "string"},
    "description": "length of the JSON header when binary tensors follow it"})
INFER_DOCS["requestBody"] = {"required": True, "content": {
    "application/json": {"schema": inline_schema(InferRequestIn)},
    BINARY: {"schema": {"type": "string", "format": "binary", "description": (
        "binary tensor extension: the JSON request (inputs with parameters.binary_data_size "
        "instead of data), then each such tensor's little-endian bytes in order; the "
        "Inference-Header-Content-Length header gives the JSON part's length")}}}}

JOB_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/JobIn"}}}}}


def openapi(app: FastAPI) -> dict:
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
