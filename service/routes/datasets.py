"""/v1/datasets: upload (a CSV or Parquet table, JSON records, NPZ or JSON X/y), list, read,
delete. Every upload records a schema: per column its kind, missing values, categories or
statistics, and the target's kind and classes."""

from __future__ import annotations

import json

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from core.records import DatasetRecord
from core.settings import Settings
from core.store import BadCursor
from service import arrays
from service.deps import IdCheckedRoute, SettingsDep, StoreDep, TenantDep
from service.errors import ApiError, not_found, validation_details
from service.multipart import read_form
from service.schemas import (DatasetFields, DatasetIn, DatasetList, DatasetOut, RecordsIn,
                             error_responses)
from service.table_builder import Table, TableOptions
from service.tables import read_csv_table, read_parquet_table, read_records, table_from_arrays
from service.upload_limits import DatasetLimits

router = APIRouter(route_class=IdCheckedRoute, prefix="/v1/datasets", tags=["datasets"],
                   responses=error_responses(401, 422, 503))

UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"oneOf": [
        DatasetIn.model_json_schema(ref_template="#/components/schemas/{model}"),
        RecordsIn.model_json_schema(ref_template="#/components/schemas/{model}")]}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "CSV with a header row, Parquet, or NPZ with arrays X and y"},
        "name": {"type": "string"},
        "target": {"type": "string", "description": "the target column(s), comma-separated "
                                                    "(default: the last column)"},
        "ignore": {"type": "string", "description": "columns to leave out, comma-separated"},
        "columns": {"type": "string", "description": "JSON object declaring kinds, e.g. "
                                                     "{\"year\": \"categorical\"}"},
        "dtype": {"type": "string", "enum": ["float32", "float64"]}}}}}}}


def table_options(settings: Settings, dtype: str, target: list[str] | None = None,
                  ignore: list[str] | None = None, kinds: dict | None = None) -> TableOptions:
    return TableOptions(target=target or None, ignore=ignore or [], kinds=kinds or {},
                        dtype=dtype, limits=DatasetLimits.of(settings))


def names_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def declared_kinds(value: str) -> dict:
    try:
        kinds = json.loads(value) if value.strip() else {}
    except ValueError:
        kinds = None
    if not isinstance(kinds, dict) or not all(isinstance(k, str) for k in kinds.values()):
        raise ApiError(422, "columns: must be a JSON object of column name -> kind, e.g. "
                            "{\"year\": \"categorical\"}", "columns")
    return kinds


def read_file(file, filename: str, options: TableOptions) -> tuple[str, Table]:
    """(source, table) of an uploaded file, by its content: NPZ, Parquet, else CSV."""
    magic = file.read(4)
    file.seek(0)
    if filename.endswith(".npz") or magic.startswith(b"PK"):
        X, y = arrays.from_npz(file, options.limits, options.dtype)
        arrays.rows_match(X, y)
        return "npz", table_from_arrays(X, y, options)
    if filename.endswith(".parquet") or magic == b"PAR1":
        return "parquet", read_parquet_table(file, options)
    return "csv", read_csv_table(file, options)


def read_form_upload(form: FormData, settings: Settings) -> tuple[str, str, Table]:
    """(name, source, table) from a multipart upload's fields and its file (field `file`,
    spooled to disk past 1 MB: read from there in blocks, never whole)."""
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(422, "file: attach the data as a file field named `file`", "file")
    dtype = str(form.get("dtype") or "float32")
    if dtype not in arrays.FLOAT_DTYPES:
        raise ApiError(422, "dtype: must be float32 or float64", "dtype")
    options = table_options(settings, dtype, names_list(str(form.get("target") or "")),
                            names_list(str(form.get("ignore") or "")),
                            declared_kinds(str(form.get("columns") or "")))
    name = str(form.get("name") or upload.filename or "dataset")[:200]
    source, table = read_file(upload.file, (upload.filename or "").lower(), options)
    return name, source, table


def parse_json_upload(body: bytes, settings: Settings) -> tuple[str, str, Table]:
    """(name, source, table) from a JSON body: X/y arrays or records."""
    payload = arrays.parse_json(body)
    if not isinstance(payload, dict):
        raise ApiError(422, "body: must be a JSON object: {\"name\", \"X\", \"y\"} or "
                            "{\"name\", \"records\", \"target\"}", "body")
    if "records" in payload:
        # The records themselves are checked by read_records as it reads them, not copied
        # by a pydantic pass first.
        fields = validated(RecordsIn, {**payload, "records": []})
        options = table_options(settings, fields.dtype, names_list(fields.target or ""),
                                fields.ignore, fields.columns)
        return fields.name, "records", read_records(payload["records"], options)
    fields = validated(DatasetFields, payload)
    try:
        X = arrays.matrix(payload["X"], "X")
        y = arrays.vector_or_matrix(payload["y"], "y")
    except ApiError:
        validated(DatasetIn, payload)  # names the element at fault (X[0][1]) where it can
        raise
    arrays.rows_match(X, y)
    return fields.name, "json", table_from_arrays(X, y, table_options(settings, fields.dtype))


async def parse_upload(request: Request, settings: Settings,
                       tenant: str) -> tuple[str, str, Table]:
    """(name, source, table) from a JSON body or a multipart file upload, decoded in one of
    `tenant`'s fair share of the decoder slots."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await read_form(request)
        try:
            # Parsing takes seconds for big files, and a form field (`columns`, JSON) can be
            # a MiB: all of it in a decoder thread, so the event loop keeps answering.
            return await arrays.off_loop(read_form_upload, form, settings, tenant=tenant)
        finally:
            await form.close()
    if not content_type.startswith("application/json"):
        raise ApiError(415, "send JSON ({\"name\", \"X\", \"y\"} or {\"name\", \"records\", "
                            "\"target\"}) or a multipart file upload (CSV, Parquet or NPZ in "
                            "field `file`)")
    return await arrays.decode_json_body(parse_json_upload, await request.body(), settings,
                                         tenant=tenant)


def validated(model, body: dict):
    """model.model_validate(body), its first error as a 422 naming the field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = validation_details(exc.errors())
        raise ApiError(422, f"{details[0]['field']}: {details[0]['message']}",
                       details[0]["field"]) from None


def dataset_record(tenant: str, name: str, source: str, table: Table) -> DatasetRecord:
    schema, target = table.schema, table.schema.target
    features = [c for c in schema.columns if c.kind != "ignored"]
    return DatasetRecord(tenant=tenant, name=name, source=source, n_samples=table.n_rows,
                         n_features=len(features), n_outputs=len(target.names),
                         classes=len(target.classes) if target.classes is not None else None,
                         dtype=str(table.numeric.dtype), table_schema=schema)


@router.post("", status_code=201, response_model=DatasetOut, openapi_extra=UPLOAD_BODY,
             responses=error_responses(413, 415))
async def upload_dataset(request: Request, response: Response, store: StoreDep,
                         settings: SettingsDep, tenant: TenantDep):
    """Upload a table (CSV or Parquet file, or JSON records) or X/y arrays (NPZ file or JSON).
    Form fields (or JSON fields for records): target, ignore, columns, name, dtype."""
    name, source, table = await parse_upload(request, settings, tenant)
    record = await run_in_threadpool(
        store.put_dataset, dataset_record(tenant, name, source, table), table.numeric,
        table.codes, table.y, settings.max_tenant_bytes, settings.redis_reserve_bytes)
    response.headers["Location"] = f"/v1/datasets/{record.id}"
    return dataset_view(record)


def dataset_view(record: DatasetRecord) -> dict:
    """A dataset as clients see it: its record, the schema's columns and target at top level."""
    schema = record.table_schema
    return {**record.model_dump(exclude={"table_schema"}),
            "columns": schema.model_dump(exclude_none=True)["columns"],
            "target": schema.target.model_dump(exclude_none=True)}


@router.get("", response_model=DatasetList)
def list_datasets(store: StoreDep, tenant: TenantDep, limit: int = Query(1000, ge=1, le=1000),
                  before: str | None = Query(None, max_length=200,
                                             description="the `next` cursor of the previous page")):
    """Newest first; follow `next` with `?before=` for older datasets. Each is listed without
    its columns and target (its schema is not read): GET /v1/datasets/{id} has them."""
    try:
        page = store.datasets(tenant, limit, before)
    except BadCursor as exc:
        raise ApiError(422, str(exc), "before") from None
    return {"datasets": [m.model_dump(exclude={"tenant"}) for m in page.items],
            "next": page.next}


@router.get("/{dataset_id}", response_model=DatasetOut, responses=error_responses(404))
def get_dataset(dataset_id: str, store: StoreDep, tenant: TenantDep):
    record = store.dataset(tenant, dataset_id)
    if record is None:
        raise not_found("dataset", dataset_id)
    return dataset_view(record)


@router.delete("/{dataset_id}", status_code=204, responses=error_responses(404))
def delete_dataset(dataset_id: str, store: StoreDep, tenant: TenantDep):
    if not store.delete_dataset(tenant, dataset_id):
        raise not_found("dataset", dataset_id)
    return Response(status_code=204)

