"""The data plane: one protocol-neutral path from a request body to an answer body, which the
/v1 and /v2 route modules both call (as MLServer's REST face calls its DataPlane). It looks the
model up (this process's cache, else Redis off the event loop), decodes the body with the
protocol's codec, predicts, and encodes the answer; routes only hand it the request's parts.
"""

from __future__ import annotations

from functools import partial
from typing import Awaitable, Callable, Mapping

from core.settings import Settings
from service import pools
from service.errors import not_found
from service.model_cache import LoadedModel, ModelCache
from service.serving import v1_codec, v2_codec
from service.serving.predict import Budget, predict_outputs

LIGHT_BODY_BYTES = 32 * 1024
"""JSON and .npy bodies up to this size are decoded on the event loop: a parse costs tens of
microseconds (a row of 784 numbers written as a float32 array's tolist() is 15.4 kB, 17 kB
with spaces), less than a hop to a decoder thread and back. Not CSV: pyarrow took 51 ms of
CPU for a 23 kB CSV of 2,000 columns."""
LIGHT_MULTIPLY_ADDS = 8_000_000
"""Predicts of up to this many multiply-adds (rows x the network's) stay on the event loop."""
LIGHT_CELLS = 1024
"""Raw values (records, CSV cells, per-column tensors: rows x the model's columns) read one
at a time into a preparation's blocks that may stay on the event loop: about 0.6 us each."""


def light(rows: int, raw: bool, loaded: LoadedModel) -> bool:
    """Whether predicting `rows` rows, as decoded (not guessed from the body's size), is sure
    to be light work (well under a millisecond), fit for the event loop: their multiply-adds
    through the network, and for `raw` rows the values still to be read one at a time."""
    widths = loaded.net.widths
    cells = rows * loaded.input_width if raw else 0
    return (cells <= LIGHT_CELLS and
            rows * sum(a * b for a, b in zip(widths, widths[1:])) <= LIGHT_MULTIPLY_ADDS)


PROCESS_CELLS = 65_536
"""Raw values (records, CSV cells) from this many are read in a decoder process: each holds
the GIL about 0.6 us, and from two threads, records predicts of 4.4 million cells each held
/healthz for seconds (bench/isolation.py). Below it a thread is cheaper than the round trip."""


async def answered(body: bytes, loaded: LoadedModel, decode, decode_args: tuple, respond,
                   tenant: str, process_decode=None, raw: bool = False,
                   parse_on_loop: bool = True, builds: bool = False):
    """respond(decode(body, *decode_args)), where it costs the event loop least. A small body
    that parses in time proportional to its size (`parse_on_loop`) is decoded on it (cheaper
    than a thread hop), then answered on it too when the rows it holds are light work; other
    bodies are decoded and answered in a decoder thread. Two kinds go to a decoder process
    instead, decoded there by `process_decode` (then answered in a decoder thread): a JSON body
    of pools.PROCESS_DECODE_BYTES or more (its parse holds the GIL: from a thread, a 25 MiB
    JSON predict held /healthz up to 0.43 s), and where `process_decode` also builds the rows
    (`builds`), rows of PROCESS_CELLS raw values or more.
    Decoded bodies have `count` (rows) and `raw` (values still to read); `raw` says so for
    every body of this model. `process_decode` and its arguments must pickle; `respond` need
    not. Decoder slots are shared fairly between tenants (pools)."""
    def far(decoded) -> bool:
        return (builds and (raw or decoded.raw) and
                decoded.count * loaded.input_width >= PROCESS_CELLS)

    if process_decode is not None and len(body) >= pools.PROCESS_DECODE_BYTES:
        decoded = await pools.in_process(process_decode, body, *decode_args, tenant=tenant)
        return await pools.off_loop(respond, decoded, tenant=tenant)
    if parse_on_loop and len(body) <= LIGHT_BODY_BYTES:
        decoded = decode(body, *decode_args)
        if light(decoded.count, raw or decoded.raw, loaded):
            return respond(decoded)
        if not far(decoded):
            return await pools.off_loop(respond, decoded, tenant=tenant)
    else:
        def in_thread():                # (answered, answer): not answered if it goes far
            decoded = decode(body, *decode_args)
            return (False, None) if far(decoded) else (True, respond(decoded))

        done, answer = await pools.off_loop(in_thread, tenant=tenant)
        if done:
            return answer
    decoded = await pools.in_process(process_decode, body, *decode_args, tenant=tenant)
    return await pools.off_loop(respond, decoded, tenant=tenant)


ReadBody = Callable[[], Awaitable[bytes]]


class DataPlane:
    """Model lookup and predict for both protocols, within the settings' rows and memory."""

    def __init__(self, models: ModelCache, settings: Settings):
        self.models, self.budget = models, Budget.of(settings)

    def model(self, tenant: str, model_id: str) -> LoadedModel:
        """The tenant's model, or 404 (blocking: for `def` routes, which run in a thread)."""
        loaded = self.models.get(tenant, model_id)
        if loaded is None:
            raise not_found("model", model_id)
        return loaded

    async def loaded(self, tenant: str, model_id: str) -> LoadedModel:
        """The tenant's model, from this process's cache, else loaded off the event loop (a
        load takes up to a second for a large model); or 404."""
        loaded = self.models.peek(tenant, model_id)
        if loaded is None:
            loaded = await pools.off_loop(self.model, tenant, model_id, tenant=tenant)
        return loaded

    async def predict(self, tenant: str, model_id: str, headers: Mapping[str, str],
                      read_body: ReadBody) -> tuple[str, bytes]:
        """/v1: (media type, body) of the answer to a predict body of any INPUT_CODECS type.
        The media type (415) and the model (404) are checked before the body is read."""
        decode = v1_codec.input_codec(headers.get("content-type", ""))
        loaded = await self.loaded(tenant, model_id)
        body, accept = await read_body(), headers.get("accept", "")

        def respond(rows: v1_codec.Rows) -> tuple[str, bytes]:
            rows = rows.built(loaded.preparation, self.budget)
            prediction = predict_outputs(loaded, rows.X, self.budget, "inputs", rows.codes)
            return v1_codec.rendered(model_id, rows, prediction, accept, loaded)

        return await answered(
            body, loaded, decode, (loaded.preparation, self.budget, loaded.meta.dtype),
            respond, tenant, partial(v1_codec.rows_built, decode),
            parse_on_loop=decode is not v1_codec.csv_rows, builds=True)

    async def infer(self, tenant: str, model_id: str, headers: Mapping[str, str],
                    read_body: ReadBody) -> tuple[bytes, dict[str, str]]:
        """/v2: (body, headers with content-type) of the answer to an inference request,
        JSON or with the binary tensor extension."""
        loaded = await self.loaded(tenant, model_id)
        header_length = headers.get(v2_codec.HEADER_LENGTH)
        body = await read_body()

        def respond(request: v2_codec.InferRequest) -> tuple[bytes, dict[str, str]]:
            X, codes = v2_codec.model_input(request, loaded, self.budget)
            prediction = predict_outputs(loaded, X, self.budget,
                                         f"input {v2_codec.INPUT!r}", codes)
            produced = v2_codec.model_outputs(prediction)
            return v2_codec.encode_response(model_id, request.id,
                                            v2_codec.select_outputs(request, produced))

        return await answered(
            body, loaded, v2_codec.parse_request, (header_length, self.budget), respond, tenant,
            v2_codec.parse_request if header_length is None else None,
            raw=v2_codec.per_column(loaded))

    def metadata(self, tenant: str, model_id: str) -> dict:
        """/v2's model metadata."""
        return v2_codec.model_metadata(model_id, self.model(tenant, model_id))
