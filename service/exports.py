"""Model exports (ONNX, JSON and NPZ weights) streamed in chunks of about CHUNK_BYTES, and the
slots that bound how many run at once.

A 49M-parameter model used to be serialized whole in the API process (ONNX: +1.1 GB, its JSON
weights: a 1 GB body, +1.4 GB) while /healthz waited seconds for the GIL. Here each body is
written a chunk at a time from the weights the model cache already holds, in a worker thread,
so an export holds about one chunk more than the model, and the event loop gets the GIL back
between chunks.

ONNX: the graph is built and checked by onnx with stand-in weights, serialized without them,
and the real weights follow as further `graph` fields of the ModelProto, one initializer each.
Protobuf merges repeated occurrences of a message field, so every ONNX reader sees one graph
with every initializer (tests/service/test_hostile_exports.py checks the bytes parse to the
same model as onnx's own serialization).
"""

from __future__ import annotations

import threading
import time
import zipfile
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterable, Iterator

import numpy as np
import orjson
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import StreamingResponse

from service.errors import ApiError

CHUNK_BYTES = 256 * 1024
RETRY_AFTER_S = 5
GRAPH_FIELD, INITIALIZER_FIELD, RAW_DATA_FIELD = 7, 5, 9


# -- slots ---------------------------------------------------------------------------------------
@dataclass
class ExportSlots:
    """Exports running in this API process, per tenant and in all; `take` is non-blocking
    (the API answers 429 with Retry-After when it returns a reason)."""

    per_tenant: int
    total: int
    running: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, tenant: str) -> str | None:
        """None when a slot was taken (give it back with `give`), else why not."""
        with self._lock:
            mine, everyone = self.running.get(tenant, 0), sum(self.running.values())
            if mine >= self.per_tenant:
                return (f"tenant {tenant!r} has {mine} model exports running in this API "
                        f"process, its most (BACKPROP_MAX_EXPORTS_PER_TENANT="
                        f"{self.per_tenant}); retry once one has finished")
            if everyone >= self.total:
                return (f"{everyone} model exports are running in this API process, its most "
                        f"(BACKPROP_MAX_EXPORTS={self.total}); retry shortly")
            self.running[tenant] = mine + 1
            return None

    def give(self, tenant: str) -> None:
        with self._lock:
            left = self.running.get(tenant, 0) - 1
            if left > 0:
                self.running[tenant] = left
            else:
                self.running.pop(tenant, None)


# -- protobuf framing ----------------------------------------------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_prefix(field_number: int, length: int) -> bytes:
    """The tag and length of a length-delimited field (wire type 2)."""
    return varint(field_number << 3 | 2) + varint(length)


def row_blocks(array: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
    """`array` (1-D or 2-D) in blocks of whole rows of about chunk_bytes each."""
    if array.ndim < 2:
        yield array
        return
    rows = max(1, chunk_bytes // max(array.shape[1] * array.itemsize, 1))
    for start in range(0, array.shape[0], rows):
        yield array[start:start + rows]


def onnx_initializer(name: str, array: np.ndarray, dtype: str) -> tuple[int, Iterator[bytes]]:
    """(length, chunks) of one `graph { initializer { ... } }` field of a ModelProto holding
    `array` as `dtype`, little-endian raw data written a block at a time."""
    from onnx import TensorProto  # (see onnx_stream)

    from service.onnx_export import ONNX_TYPES
    head = TensorProto(name=name, data_type=ONNX_TYPES[dtype], dims=list(array.shape))
    head_bytes = head.SerializeToString()
    raw_length = array.size * np.dtype(dtype).itemsize
    tensor_length = len(head_bytes) + len(length_prefix(RAW_DATA_FIELD, raw_length)) + raw_length
    initializer = length_prefix(INITIALIZER_FIELD, tensor_length)
    graph = length_prefix(GRAPH_FIELD, len(initializer) + tensor_length)
    little = np.dtype(dtype).newbyteorder("<")

    def chunks() -> Iterator[bytes]:
        yield graph + initializer + head_bytes + length_prefix(RAW_DATA_FIELD, raw_length)
        for block in row_blocks(np.asarray(array)):
            yield np.ascontiguousarray(block, dtype=little).tobytes()

    return len(graph) + len(initializer) + tensor_length, chunks()


def onnx_stream(meta: dict, params: list, preparation=None) -> tuple[int, Iterator[bytes]]:
    """(Content-Length, chunks) of the model as ONNX: the same model as
    onnx_export.onnx_bytes, written with about CHUNK_BYTES held at a time."""
    # onnx is imported on the first export, not with the API: importing it (its ml_dtypes)
    # took 0.65 s of the 1.4 s every API process spent importing before it could serve.
    from service.onnx_export import onnx_model
    dtype = meta.dtype
    stand_ins = [(np.zeros((1, 1), dtype), np.zeros(1, dtype)) for _ in params]
    model = onnx_model(meta, stand_ins, preparation)  # built and checked by onnx
    weight_names = {f"{kind}{i}" for i in range(len(params)) for kind in "Wb"}
    kept = [t for t in model.graph.initializer if t.name not in weight_names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    parts = [onnx_initializer(f"{kind}{i}", array, dtype)
             for i, (W, b) in enumerate(params) for kind, array in (("W", W), ("b", b))]
    head = model.SerializeToString()

    def chunks() -> Iterator[bytes]:
        yield head
        for _, part in parts:
            yield from part

    return len(head) + sum(length for length, _ in parts), chunks()


# -- weights ------------------------------------------------------------------------------------
def json_weights_stream(model_id: str, params: list) -> Iterator[bytes]:
    """{"model_id": ..., "layers": [{"W": [[...]], "b": [...]}, ...]} (float64 values, as
    orjson writes them), a block of rows at a time."""
    yield b'{"model_id":' + orjson.dumps(model_id) + b',"layers":['
    for i, (W, b) in enumerate(params):
        yield (b"," if i else b"") + b'{"W":['
        for j, block in enumerate(row_blocks(np.asarray(W), CHUNK_BYTES // 4)):
            text = orjson.dumps(np.asarray(block, dtype=np.float64),
                                option=orjson.OPT_SERIALIZE_NUMPY)
            yield (b"," if j else b"") + text[1:-1]
        yield b'],"b":' + orjson.dumps(np.asarray(b, dtype=np.float64),
                                        option=orjson.OPT_SERIALIZE_NUMPY) + b"}"
    yield b"]}"


class Drain:
    """A write-only, unseekable file that keeps what is written until taken: what zipfile
    writes an archive into, a piece at a time."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def npz_weights_stream(params: list) -> Iterator[bytes]:
    """An uncompressed .npz of W0, b0, W1, ... (what np.load reads), a block at a time."""
    import numpy.lib.format as npy

    sink = Drain()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for i, (W, b) in enumerate(params):
            for name, array in ((f"W{i}", np.asarray(W)), (f"b{i}", np.asarray(b))):
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    npy.write_array_header_1_0(member, npy.header_data_from_array_1_0(array))
                    for block in row_blocks(array):
                        member.write(np.ascontiguousarray(block).tobytes())
                        yield sink.take()
                yield sink.take()
    yield sink.take()


def in_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The non-empty chunks (an empty one means nothing to a client). After each, the thread
    making them lets go of the GIL (sleep(0)): the event loop, which wants it to answer
    other requests, gets it then instead of after the interpreter's 5 ms switch interval."""
    for chunk in chunks:
        if chunk:
            yield chunk
            time.sleep(0)


# -- responses ----------------------------------------------------------------------------------
def take_slot(slots: ExportSlots, tenant: str) -> ExportSlots:
    """`slots` with one taken for `tenant`, or ApiError 429."""
    reason = slots.take(tenant)
    if reason is not None:
        raise ApiError(429, reason, None, headers={"Retry-After": str(RETRY_AFTER_S)})
    return slots


async def released_after(chunks: Iterable[bytes], slots: ExportSlots,
                         tenant: str) -> AsyncIterator[bytes]:
    """The chunks, each made in a worker thread (never on the event loop); the slot is given
    back when the body is done or the client has gone."""
    try:
        async for chunk in iterate_in_threadpool(in_chunks(chunks)):
            yield chunk
    finally:
        slots.give(tenant)


def streamed(slots: ExportSlots, tenant: str, chunks: Iterable[bytes], media_type: str,
             headers: dict[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(released_after(chunks, slots, tenant), media_type=media_type,
                             headers=headers)
