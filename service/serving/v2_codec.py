"""Tensors of the Open Inference Protocol (KServe v2 REST): requests in, responses out.

JSON tensors carry `data` flat in row-major order (or nested); the binary tensor extension
puts the JSON header first, its length in the `Inference-Header-Content-Length` header, then
each binary tensor's raw little-endian bytes, in order, sized by `binary_data_size`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import orjson

from core.settings import env_name
from service import arrays, json_numbers
from service.errors import ApiError
from engine.preparation import ClassTarget
from service.model_cache import LoadedModel
from service.table_inputs import column_blocks
from service.tensor_names import INPUT, LABEL, OUTPUT
from service.serving.predict import Budget, Prediction, check_json_size

HEADER_LENGTH = "inference-header-content-length"
"""Length in bytes of the JSON header when binary tensors follow it (request and response)."""

DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(kind).newbyteorder("<") for name, kind in (
        ("FP16", "f2"), ("FP32", "f4"), ("FP64", "f8"), ("INT8", "i1"), ("INT16", "i2"),
        ("INT32", "i4"), ("INT64", "i8"), ("UINT8", "u1"), ("UINT16", "u2"),
        ("UINT32", "u4"), ("UINT64", "u8"))}
"""The protocol's numeric datatypes, as the little-endian NumPy types of their raw bytes."""

DATATYPE_OF = {np.dtype(name): datatype for name, datatype in (
    ("float32", "FP32"), ("float64", "FP64"), ("int64", "INT64"))}
"""NumPy type -> protocol datatype, for what the service answers (keyed by the type itself:
dtype.name costs 2.5 us, a tenth of a one-row answer's encoding)."""


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: dict[str, bool] | None = None
    """Requested output name -> binary; None means every output."""
    binary_output: bool = False
    """`binary_data_output`: the default for outputs that do not say."""

    @property
    def count(self) -> int:
        """Rows, as decoded: the longest first dimension of the inputs."""
        return max((len(a) if a.ndim else 1) for a in self.inputs.values())

    @property
    def raw(self) -> bool:
        """Whether some input is text (BYTES), read a string at a time into category codes."""
        return any(a.dtype == object for a in self.inputs.values())


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def split_body(body: bytes, header_length: str | None,
               budget: Budget) -> tuple[dict, memoryview]:
    """(JSON header, the binary bytes after it)."""
    binary = memoryview(b"")
    if header_length is not None:
        digits = header_length.strip()
        # ASCII digits only: int() also reads '١' (Arabic-Indic one) and str.isdigit() passes '²'.
        if not (digits.isascii() and digits.isdigit()) or int(digits) > len(body):
            raise bad_request(f"Inference-Header-Content-Length {header_length!r} must be the "
                              f"byte length of the JSON header (ASCII digits), at most the "
                              f"body's {len(body)}")
        binary = memoryview(body)[int(digits):]
        body = body[:int(digits)]
    check_json_size(body, budget, "the request")
    header = json_numbers.inference_request(body)
    if header is not None:
        return header, binary
    try:
        header = arrays.parse_json(body)
    except ApiError as exc:
        raise bad_request(f"the request is {exc.message.removeprefix('body: ')}; send "
                          f'{{"inputs": [{{"name", "shape", "datatype", "data"}}]}}') from None
    return _object(header, "the request"), binary


def tensor_shape(tensor: dict, where: str) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad_request(f"{where}: shape must be a list of non-negative integers, "
                          f"got {shape!r}")
    return tuple(shape)


TEXT = np.dtype(object)
"""BYTES tensors (a table model's text columns) parse to object arrays of str."""


def tensor_datatype(tensor: dict, where: str) -> np.dtype:
    name = tensor.get("datatype")
    if name == "BYTES":
        return TEXT
    if name not in DATATYPES:
        raise bad_request(f"{where}: datatype {name!r} is not supported; use one of "
                          f"{', '.join(sorted([*DATATYPES, 'BYTES']))} (FP32 or FP64 for this "
                          f"service's models; BYTES for the text columns of table models)")
    return DATATYPES[name]


def check_texts(shape: tuple[int, ...], budget: Budget, where: str) -> None:
    """Before a BYTES tensor is read string by string: a text column takes one string a row,
    so more than max_rows of them is 413 at once (a 30 MiB binary tensor of empty strings
    took 11 s to read before its rows were counted)."""
    if math.prod(shape) > budget.max_rows:
        raise ApiError(413, f"{where}: datatype 'BYTES' with shape {list(shape)} holds "
                            f"{math.prod(shape)} strings; a text column takes one a row, at most "
                            f"{budget.max_rows} rows per request "
                            f"({env_name('max_predict_rows')})", where)


def text_tensor(values, shape: tuple[int, ...], where: str) -> np.ndarray:
    """BYTES `data` (flat or nested strings) as an object array of str of `shape`."""
    flat = np.asarray(values, dtype=object).ravel()
    if flat.size != math.prod(shape) or not all(isinstance(v, str) for v in flat):
        raise bad_request(f"{where}: datatype 'BYTES' needs {math.prod(shape)} strings for "
                          f"shape {list(shape)} (text columns of table models take BYTES; "
                          f"numbers go as FP32 or FP64)")
    return flat.reshape(shape)


def binary_text(raw: memoryview, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A BYTES tensor's binary form (each element: a 4-byte little-endian length, then its
    UTF-8 bytes) as an object array of str."""
    values, offset = [], 0
    for _ in range(math.prod(shape)):
        if offset + 4 > len(raw):
            raise bad_request(f"{where}: binary BYTES data ends before its "
                              f"{math.prod(shape)} elements do")
        size = int.from_bytes(raw[offset:offset + 4], "little")
        try:
            values.append(bytes(raw[offset + 4:offset + 4 + size]).decode())
        except UnicodeDecodeError:
            raise bad_request(f"{where}: BYTES element {len(values)} is not UTF-8 text") from None
        offset += 4 + size
    if offset != len(raw):
        raise bad_request(f"{where}: binary_data_size is {len(raw)} but its elements take "
                          f"{offset} bytes")
    return np.array(values, dtype=object).reshape(shape)


def json_tensor(tensor: dict, shape: tuple[int, ...], dtype: np.dtype, where: str,
                budget: Budget) -> np.ndarray:
    """`data` (flat row-major, or nested) as an array of `shape`; integer types must hold
    whole numbers."""
    if "data" not in tensor:
        raise bad_request(f"{where}: has no `data` (and no binary_data_size parameter)")
    if dtype is TEXT:
        check_texts(shape, budget, where)
        return text_tensor(tensor["data"], shape, where)
    # FP16/32/64 data is converted once, straight to its datatype (predict checks it for NaN
    # and infinities as it casts); integer types go through float64, to be checked whole.
    number = dtype.newbyteorder("=") if dtype.kind == "f" else np.dtype(np.float64)
    try:
        with np.errstate(over="raise"):
            values = np.asarray(tensor["data"], dtype=number)
    except (TypeError, ValueError):
        raise bad_request(f"{where}: data must hold numbers only, as a flat list or nested "
                          f"lists of equal length") from None
    except OverflowError:               # a JSON integer beyond float64, such as 10**400
        raise bad_request(f"{where}: data holds an integer too large for a number "
                          f"(beyond ±1.8e308); send values within float64's range") from None
    except FloatingPointError:          # beyond the datatype's range, such as 1e39 as FP32
        raise bad_request(f"{where}: data holds values too large for {number.name} (largest "
                          f"allowed {np.finfo(number).max:.3g}); send FP64 or smaller "
                          f"values") from None
    if values.size != math.prod(shape):
        raise bad_request(f"{where}: data holds {values.size} values but shape {list(shape)} "
                          f"needs {math.prod(shape)}")
    if dtype.kind in "iu" and not np.array_equal(values, np.round(values)):
        raise bad_request(f"{where}: datatype is an integer type but data holds fractions; "
                          f"send FP32 or FP64")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise bad_request(f"{where}: data holds values outside {dtype.name}'s range")
    return values.reshape(shape)


def binary_tensor(raw: memoryview, offset: int, size, shape: tuple[int, ...], dtype: np.dtype,
                  where: str, budget: Budget) -> np.ndarray:
    if dtype is TEXT:
        check_texts(shape, budget, where)
        if not isinstance(size, int) or isinstance(size, bool) or offset + size > len(raw):
            raise bad_request(f"{where}: binary_data_size {size!r} runs past the body")
        return binary_text(raw[offset:offset + size], shape, where)
    need = math.prod(shape) * dtype.itemsize
    if not isinstance(size, int) or isinstance(size, bool) or size != need:
        raise bad_request(f"{where}: binary_data_size is {size!r} but shape {list(shape)} of "
                          f"{dtype.name} needs {need} bytes")
    if offset + size > len(raw):
        raise bad_request(f"{where}: the body ends {offset + size - len(raw)} bytes before "
                          f"this tensor's binary data does")
    return np.frombuffer(raw[offset:offset + size], dtype=dtype).reshape(shape)


def parse_inputs(header: dict, raw: memoryview, budget: Budget) -> dict[str, np.ndarray]:
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad_request('the request needs "inputs": a non-empty list of tensors '
                          '{"name", "shape", "datatype", "data"}')
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        tensor = _object(tensor, f"inputs[{i}]")
        name = tensor.get("name")
        where = f"input {name!r}" if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(name, str) or name in arrays:
            raise bad_request(f"{where}: every input needs a distinct string `name`")
        shape, dtype = tensor_shape(tensor, where), tensor_datatype(tensor, where)
        parameters = _object(tensor.get("parameters", {}), f"{where}: parameters")
        if "binary_data_size" in parameters:
            size = parameters["binary_data_size"]
            arrays[name] = binary_tensor(raw, offset, size, shape, dtype, where, budget)
            offset += size
        else:
            arrays[name] = json_tensor(tensor, shape, dtype, where, budget)
    if offset != len(raw):
        raise bad_request(f"the body has {len(raw) - offset} bytes after the JSON header that "
                          f"no input's binary_data_size accounts for")
    return arrays


def parse_outputs(header: dict) -> dict[str, bool] | None:
    requested = header.get("outputs")
    if requested is None:
        return None
    if not isinstance(requested, list):
        raise bad_request('"outputs" must be a list of {"name": ...}')
    outputs: dict[str, bool] = {}
    for i, tensor in enumerate(requested):
        tensor = _object(tensor, f"outputs[{i}]")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise bad_request(f"outputs[{i}] needs a string `name`")
        parameters = _object(tensor.get("parameters", {}), f"output {name!r}: parameters")
        if parameters.get("classification"):
            raise bad_request(f"output {name!r}: the classification extension is not "
                              f"supported; request the `label` output instead")
        outputs[name] = bool(parameters.get("binary_data", False))
    return outputs


def parse_request(body: bytes, header_length: str | None, budget: Budget) -> InferRequest:
    header, raw = split_body(body, header_length, budget)
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request(f'"id" must be a string, got {request_id!r}')
    parameters = _object(header.get("parameters", {}), "parameters")
    return InferRequest(request_id, parse_inputs(header, raw, budget), parse_outputs(header),
                        bool(parameters.get("binary_data_output", False)))


def select_outputs(request: InferRequest, produced: dict[str, np.ndarray]
                   ) -> list[tuple[str, np.ndarray, bool]]:
    """(name, array, binary) for each output to answer, in the order requested."""
    if request.outputs is None:
        return [(name, array, request.binary_output) for name, array in produced.items()]
    unknown = sorted(set(request.outputs) - set(produced))
    if unknown:
        raise bad_request(f"unknown output(s) {unknown}; this model's outputs are "
                          f"{sorted(produced)}")
    return [(name, produced[name], binary or request.binary_output)
            for name, binary in request.outputs.items()]


def bytes_blob(values: np.ndarray) -> bytes:
    """A BYTES tensor's binary form: each element's UTF-8 bytes after their length (4 bytes,
    little-endian)."""
    parts = []
    for value in values.tolist():
        raw = str(value).encode()
        parts += [len(raw).to_bytes(4, "little"), raw]
    return b"".join(parts)


def encode_response(model_name: str, request_id: str | None,
                    outputs: list[tuple[str, np.ndarray, bool]]) -> tuple[bytes, dict[str, str]]:
    """(body, extra headers): JSON alone, or the JSON header then the binary outputs."""
    tensors, blobs = [], []
    for name, array, binary in outputs:
        text = array.dtype.kind in "US"     # BYTES: the classes' own names
        tensor = {"name": name, "datatype": "BYTES" if text else DATATYPE_OF[array.dtype],
                  "shape": list(array.shape)}
        if binary:
            blob = bytes_blob(array.ravel()) if text else np.ascontiguousarray(
                array, dtype=array.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.ravel().tolist() if text else np.ascontiguousarray(
                array).ravel()
        tensors.append(tensor)
    answer: dict = {"model_name": model_name}
    if request_id is not None:
        answer["id"] = request_id
    answer["outputs"] = tensors
    header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, {"content-type": "application/json"}
    return b"".join([header, *blobs]), {"content-type": "application/octet-stream",
                                         HEADER_LENGTH: str(len(header))}


# -- a model's tensors -------------------------------------------------------------------------
def per_column(loaded: LoadedModel) -> bool:
    """Whether the model takes one input per raw column: a preparation with text or date
    columns."""
    return loaded.preparation is not None and loaded.preparation.per_column


def model_input(request: InferRequest, loaded: LoadedModel, budget: Budget
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows, category codes or None): the one input tensor (its name may differ from `input`:
    KServe's examples say `input-0`), or for a model with text columns one tensor per column
    (its blocks sized from the tensors' rows, before they are built)."""
    if per_column(loaded):
        budget.check_cells(request.count, len(loaded.preparation.columns), "inputs")
        return column_blocks(request.inputs, loaded.preparation)
    if len(request.inputs) != 1:
        raise bad_request(f"this model takes one input tensor ({INPUT!r}); got "
                          f"{len(request.inputs)}: {sorted(request.inputs)}")
    [X] = request.inputs.values()
    if X.dtype == object:
        raise bad_request(f"input {INPUT!r}: this model takes numbers (FP32 or FP64), not BYTES")
    return X, None


def model_outputs(prediction: Prediction) -> dict[str, np.ndarray]:
    produced = {OUTPUT: prediction.outputs}
    if prediction.labels is not None:
        labels = prediction.labels      # the classes' own values: numbers, or text (BYTES)
        produced[LABEL] = labels.astype(np.int64) if labels.dtype.kind in "iub" else labels
    return produced


PLATFORM = "backprop_numpy"
"""What model metadata names as the platform: the service's own NumPy engine."""


def label_datatype(loaded: LoadedModel) -> str:
    """INT64 class indices, or the type of the classes a preparation maps them to."""
    target = loaded.preparation.target if loaded.preparation is not None else None
    if not isinstance(target, ClassTarget):
        return "INT64"
    if any(isinstance(c, str) for c in target.classes):
        return "BYTES"
    return "FP64" if any(isinstance(c, float) for c in target.classes) else "INT64"


def output_metadata(loaded: LoadedModel) -> list[dict]:
    meta = loaded.meta
    outputs = [{"name": OUTPUT, "datatype": DATATYPE_OF[np.dtype(meta.dtype)],
                "shape": [-1, meta.n_outputs]}]
    if meta.task in ("classification", "multilabel"):
        multilabel = meta.task == "multilabel" and meta.n_outputs > 1
        outputs.append({"name": LABEL, "datatype": label_datatype(loaded),
                        "shape": [-1, meta.n_outputs] if multilabel else [-1]})
    return outputs


def model_metadata(model_id: str, loaded: LoadedModel) -> dict:
    """The protocol's model metadata: its input tensors (one per column for a model with text
    columns) and outputs."""
    number = DATATYPE_OF[np.dtype(loaded.meta.dtype)]
    if per_column(loaded):
        # a date: BYTES of ISO 8601 text (FP64 days since 1970 are taken too)
        inputs = [{"name": c.name, "datatype": number if c.kind == "numeric" else "BYTES",
                   "shape": [-1, 1]} for c in loaded.preparation.columns]
    else:
        inputs = [{"name": INPUT, "datatype": number, "shape": [-1, loaded.input_width]}]
    return {"name": model_id, "platform": PLATFORM, "inputs": inputs,
            "outputs": output_metadata(loaded)}
