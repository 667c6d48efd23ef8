"""/v1/models/{id}/onnx: a trained model as an ONNX file, for onnxruntime and other runtimes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from service.deps import IdCheckedRoute, ServingDep, TenantDep
from service.exports import onnx_stream, streamed, take_slot
from service.schemas import ErrorOut
from service.state import state_of

router = APIRouter(route_class=IdCheckedRoute, prefix="/v1/models", tags=["models"],
                   responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut},
                              429: {"model": ErrorOut}})

ONNX_MEDIA = "application/octet-stream"


@router.get("/{model_id}/onnx", response_class=Response,
            responses={200: {"content": {ONNX_MEDIA: {}},
                             "description": "the ONNX model (opset 17): input `input` (or "
                                            "one per column for models with text columns), "
                                            "outputs `output` and, for classifiers, `label`"}})
async def get_onnx(model_id: str, request: Request, tenant: TenantDep, serving: ServingDep):
    """The model as ONNX: Gemm then the activation, per layer; same outputs as /predict.
    Streamed, written off the event loop; at most BACKPROP_MAX_EXPORTS_PER_TENANT exports of
    a tenant at once per API process (429 with Retry-After past that)."""
    slots = take_slot(state_of(request.app).export_slots, tenant)
    try:
        loaded = await serving.loaded(tenant, model_id)
        # The live arrays, not `params` (a copy of them all): written a block at a time.
        length, chunks = await run_in_threadpool(onnx_stream, loaded.meta, loaded.net.weights,
                                                 loaded.preparation)
    except BaseException:
        slots.give(tenant)
        raise
    return streamed(slots, tenant, chunks, ONNX_MEDIA, headers={
        "Content-Length": str(length),
        "Content-Disposition": f'attachment; filename="{model_id}.onnx"'})
