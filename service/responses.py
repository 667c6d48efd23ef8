"""JSON responses serialized by orjson (NumPy arrays included)."""

from __future__ import annotations

import orjson
from fastapi import Response


class JSONBytes(Response):
    """application/json from orjson, with NumPy arrays serialized natively."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
