"""Connections that dawdle cost their sender, not the API: uvicorn's HTTP/1.1 protocol (h11)
with a header timeout, a body idle timeout and a cap on open connections per API process.

uvicorn (0.55) has no header timeout: it arms `timeout_keep_alive` only after a response,
and the first byte of a next request disarms it, so a connection that sends half a request
line, or a byte of header every minute, is held forever; 20,050 of them took every file
descriptor of the API process. `limit_concurrency` answers 503 to *everyone* once the
dawdlers fill it. No proxy image can be pulled here to put in front (compose), so the guard
lives in our process, as a subclass of uvicorn's own protocol (`http=` of uvicorn.run):

- a request's headers must arrive within settings.http_header_timeout_s of the connection
  opening, or of the first byte after the previous response;
- a request body may go settings.http_body_timeout_s without a byte (unless the app is the
  slow one: reading paused);
- past settings.max_connections open connections, a new one first closes the oldest that
  never completed a request, else the oldest idle between requests, else itself.
h11's own bound on incomplete headers (16 KiB, uvicorn's h11_max_incomplete_event_size) keeps
what each holds small.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from core.settings import get_settings

log = logging.getLogger("backprop.http")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's H11Protocol with the module's timeouts and connection cap."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout_s = settings.http_header_timeout_s
        self.body_timeout_s = settings.http_body_timeout_s
        self.max_connections = settings.max_connections
        self._guard: asyncio.TimerHandle | None = None
        self._opened = 0.0
        self._served = 0

    # -- uvicorn's protocol interface ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = self.loop.time()
        self._arm(self.header_timeout_s)
        if len(self.connections) > self.max_connections:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:          # headers not complete yet: the deadline stands
            if self._guard is None:    # (a next request on a kept-alive connection: from now)
                self._arm(self.header_timeout_s)
        elif state is h11.SEND_BODY:   # each chunk of body buys another body_timeout_s
            self._arm(self.body_timeout_s)
        else:                          # the request is in: the app has it
            self._disarm()

    def on_response_complete(self) -> None:
        self._served += 1
        self._disarm()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- the guard -------------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._guard = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _expired(self) -> None:
        self._guard = None
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY and self.flow.read_paused:  # the app is the slow one
            self._arm(self.body_timeout_s)
            return
        if state in (h11.IDLE, h11.SEND_BODY):
            self._close("headers" if state is h11.IDLE else "body")

    def _close(self, what: str) -> None:
        self._disarm()
        self.transport.close()
        log.info("closed a connection from %s that dawdled over its %s", self.client, what)

    def _waiting(self) -> bool:
        """Holding a connection without a request in the app: headers (or nothing) pending."""
        return self.cycle is None or self.cycle.response_complete

    def _make_room(self) -> None:
        """Close the oldest connection that never completed a request, else the oldest idle
        one between requests, else this new one."""
        others = [c for c in self.connections if c is not self and isinstance(
            c, GuardedH11Protocol) and not c.transport.is_closing() and c._waiting()]
        never = [c for c in others if c._served == 0]
        victims = never or others
        victim = min(victims, key=lambda c: c._opened) if victims else self
        victim._close(f"place: {len(self.connections)} connections are open, the most "
                      f"(BACKPROP_MAX_CONNECTIONS={self.max_connections})")
