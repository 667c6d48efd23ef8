"""Request bodies that routes read themselves (off the event loop): their media type, and JSON
parsed into a pydantic model with FastAPI's own 422 when it does not fit."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from service.arrays import parse_json
from service.errors import ApiError

JSON_TYPES = ("application/json",)


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
        # process (pools.decode_json_body); no answer shows it.
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
