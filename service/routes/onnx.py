"""/v1/models/{id}/onnx: a trained model as an ONNX file, for onnxruntime and other runtimes."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import ServingDep, TenantDep
from service.onnx_export import onnx_bytes
from service.schemas import ErrorOut

router = APIRouter(prefix="/v1/models", tags=["models"],
                   responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}})

ONNX_MEDIA = "application/octet-stream"


@router.get("/{model_id}/onnx", response_class=Response,
            responses={200: {"content": {ONNX_MEDIA: {}},
                             "description": "the ONNX model (opset 17): input `input` (or "
                                            "one per column for models with text columns), "
                                            "outputs `output` and, for classifiers, `label`"}})
def get_onnx(model_id: str, tenant: TenantDep, serving: ServingDep):
    """The model as ONNX: Gemm then the activation, per layer; same outputs as /predict."""
    loaded = serving.model(tenant, model_id)
    return Response(onnx_bytes(loaded.meta, loaded.net.params, loaded.preparation),
                    media_type=ONNX_MEDIA,
                    headers={"Content-Disposition": f'attachment; filename="{model_id}.onnx"'})
