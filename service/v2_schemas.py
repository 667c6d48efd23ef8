"""Bodies of the Open Inference Protocol (KServe v2 REST), for the OpenAPI document.

routes/v2.py parses infer requests itself (v2_tensors.py: JSON and binary tensors alike);
these models describe the same shapes for clients and for the docs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Datatype = Literal["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16",
                   "UINT32", "UINT64"]


class ProtocolError(BaseModel):
    error: str = Field(..., description="what went wrong and what to change")


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool
    error: str | None = Field(None, description="why the server is not ready")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(..., description="-1 for a dimension of any size (rows)")


class ModelMetadata(BaseModel):
    name: str
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


class RequestTensor(BaseModel):
    name: str = Field(..., description="`input`, as the model metadata names it")
    shape: list[int] = Field(..., description="[rows, n_inputs]")
    datatype: Datatype
    data: list[Any] | None = Field(
        None, description="row-major values, flat or nested; leave out for a binary tensor")
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_size`: bytes of this tensor after the JSON header")


class RequestedOutput(BaseModel):
    name: str = Field(..., description="`output`, or `label` for classifiers")
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data`: true answers this output as raw bytes")


class InferRequestIn(BaseModel):
    id: str | None = Field(None, description="echoed in the response")
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_output`: true answers every output as raw bytes")
    inputs: list[RequestTensor]
    outputs: list[RequestedOutput] | None = Field(None, description="default: all outputs")


class ResponseTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float] | None = Field(None, description="row-major values (absent if binary)")
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_size` of a binary output")


class InferResponseOut(BaseModel):
    model_name: str
    id: str | None = None
    outputs: list[ResponseTensor]


def inline_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema with its $defs written in place, for an OpenAPI requestBody."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)
