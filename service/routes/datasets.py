"""/v1/datasets: upload (JSON, CSV or NPZ), list, read, delete."""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from service import arrays
from service.csv_reader import read_csv
from service.deps import SettingsDep, StoreDep, TenantDep
from service.errors import ApiError, not_found, validation_details
from service.multipart import read_form
from service.schemas import DatasetFields, DatasetIn, DatasetList, DatasetOut, error_responses
from worker.settings import Settings
from worker.store import BadCursor
from worker.records import new_id

router = APIRouter(prefix="/v1/datasets", tags=["datasets"],
                   responses=error_responses(401, 422, 503))

UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": DatasetIn.model_json_schema(ref_template="#/components/schemas/{model}")},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "CSV with a header row, or NPZ with arrays X and y"},
        "name": {"type": "string"},
        "target": {"type": "string", "description": "CSV label column(s), comma-separated (default: the last column)"},
        "dtype": {"type": "string", "enum": ["float32", "float64"]}}}}}}}


async def parse_form(form: FormData, settings: Settings
                     ) -> tuple[str, str, np.ndarray, np.ndarray, str]:
    """(name, source, X, y, dtype) from a multipart upload: CSV or NPZ in field `file`."""
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(422, "file: attach the data as a file field named `file`", "file")
    file = upload.file  # spooled to disk past 1 MB: parsed from there, never read whole
    filename = (upload.filename or "").lower()
    dtype = str(form.get("dtype") or "float32")
    if dtype not in arrays.FLOAT_DTYPES:
        raise ApiError(422, "dtype: must be float32 or float64", "dtype")
    name = str(form.get("name") or upload.filename or "dataset")[:200]
    magic = file.read(2)
    file.seek(0)
    # Parsing takes seconds for big files: in a thread, so the event loop keeps answering.
    if filename.endswith(".npz") or magic == b"PK":
        X, y = await arrays.off_loop(arrays.from_npz, file, settings.max_dataset_rows,
                                     settings.max_dataset_bytes, dtype)
        return name, "npz", X, y, dtype
    target = [t.strip() for t in str(form.get("target") or "").split(",") if t.strip()]
    X, y = await run_in_threadpool(read_csv, file, target or None, dtype)
    return name, "csv", X, y, dtype


async def parse_upload(request: Request) -> tuple[str, str, np.ndarray, np.ndarray, str]:
    """(name, source, X, y, dtype) from a JSON body or a multipart file upload."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await read_form(request)
        try:
            return await parse_form(form, request.app.state.settings)
        finally:
            await form.close()
    if not content_type.startswith("application/json"):
        raise ApiError(415, "send JSON ({\"name\", \"X\", \"y\"}) or a multipart file upload "
                            "(CSV or NPZ in field `file`)")
    return await arrays.off_loop(json_upload, await request.body())


def json_upload(raw: bytes) -> tuple[str, str, np.ndarray, np.ndarray, str]:
    """(name, source, X, y, dtype) from a JSON upload's body."""
    body = arrays.parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(422, "body: must be a JSON object with name, X and y", "body")
    payload = validated(DatasetFields, body)
    try:
        X = arrays.matrix(body["X"], "X")
        y = arrays.vector_or_matrix(body["y"], "y")
    except ApiError:
        validated(DatasetIn, body)  # names the element at fault (X[0][1]) where it can
        raise
    return payload.name, "json", X, y, payload.dtype


def validated(model: type[DatasetFields], body: dict) -> DatasetFields:
    """model.model_validate(body), its first error as a 422 naming the field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = validation_details(exc.errors())
        raise ApiError(422, f"{details[0]['field']}: {details[0]['message']}",
                       details[0]["field"]) from None


def dataset_meta(tenant: str, name: str, source: str, X: np.ndarray, y: np.ndarray) -> dict:
    labels = y.ndim == 1 and (y.dtype.kind in "iu" or bool(np.all(y == np.round(y))))
    return {"id": new_id("dataset"), "tenant": tenant, "name": name, "source": source,
            "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
            "n_outputs": 1 if y.ndim == 1 else int(y.shape[1]),
            "classes": int(len(np.unique(y))) if labels else None,
            "dtype": str(X.dtype), "created_at": time.time()}


def check_limits(settings: Settings, X: np.ndarray, y: np.ndarray) -> None:
    if X.shape[0] > settings.max_dataset_rows:
        raise ApiError(413, f"the dataset has {X.shape[0]} rows; this service takes at most "
                            f"{settings.max_dataset_rows} (BACKPROP_MAX_DATASET_ROWS)", "X")
    if X.nbytes + y.nbytes > settings.max_dataset_bytes:
        raise ApiError(413, f"the dataset takes {X.nbytes + y.nbytes} bytes; this service takes "
                            f"at most {settings.max_dataset_bytes} (BACKPROP_MAX_DATASET_BYTES)", "X")


@router.post("", status_code=201, response_model=DatasetOut, openapi_extra=UPLOAD_BODY,
             responses=error_responses(413, 415))
async def upload_dataset(request: Request, response: Response, store: StoreDep,
                         settings: SettingsDep, tenant: TenantDep):
    """Upload a dataset as JSON `{name, X, y}`, or as a CSV/NPZ file (multipart field `file`)."""
    name, source, X, y, dtype = await parse_upload(request)
    arrays.rows_match(X, y)
    X = arrays.as_float(X, "X", dtype)
    y = arrays.targets(y, dtype)
    check_limits(settings, X, y)
    meta = await run_in_threadpool(store.put_dataset, dataset_meta(tenant, name, source, X, y),
                                   X, y, settings.max_tenant_bytes)
    response.headers["Location"] = f"/v1/datasets/{meta['id']}"
    return meta


@router.get("", response_model=DatasetList)
def list_datasets(store: StoreDep, tenant: TenantDep, limit: int = Query(1000, ge=1, le=1000),
                  before: str | None = Query(None, max_length=200,
                                             description="the `next` cursor of the previous page")):
    """Newest first; follow `next` with `?before=` for older datasets."""
    try:
        page = store.datasets(tenant, limit, before)
    except BadCursor as exc:
        raise ApiError(422, str(exc), "before") from None
    return {"datasets": page.items, "next": page.next}


@router.get("/{dataset_id}", response_model=DatasetOut, responses=error_responses(404))
def get_dataset(dataset_id: str, store: StoreDep, tenant: TenantDep):
    meta = store.dataset(tenant, dataset_id)
    if meta is None:
        raise not_found("dataset", dataset_id)
    return meta


@router.delete("/{dataset_id}", status_code=204, responses=error_responses(404))
def delete_dataset(dataset_id: str, store: StoreDep, tenant: TenantDep):
    if not store.delete_dataset(tenant, dataset_id):
        raise not_found("dataset", dataset_id)
    return Response(status_code=204)
