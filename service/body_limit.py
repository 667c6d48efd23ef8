"""Refuse request bodies over a size limit with 413, before they are read into memory."""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException

from core.settings import env_name
from service.errors import error_body


def too_large_message(max_bytes: int) -> str:
    return (f"the request body is larger than {max_bytes} bytes ({env_name('max_body_bytes')}); "
            f"upload big data sets as NPZ files")


class BodyTooLarge(HTTPException):
    """Raised from receive() so FastAPI and our routes answer it as an HTTP 413."""

    def __init__(self, max_bytes: int):
        super().__init__(413, too_large_message(max_bytes))


class BodySizeLimit:
    """Pure ASGI middleware: checks Content-Length up front and counts chunked bodies."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            body = orjson.dumps(error_body(413, too_large_message(self.max_bytes)))
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)
