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
  never completed a request, else the one idle longest between requests, else itself.
h11's own bound on incomplete headers (16 KiB, uvicorn's h11_max_incomplete_event_size) keeps
what each holds small.

A flood costs the event loop little per connection: the candidates to close wait in two
queues, oldest first, kept as connections change state, so finding one takes no scan (a scan
of the 1000 open for each of 2000 connections past the cap held the loop over a second), and
closings are logged as at most one line a second, with counts.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter, OrderedDict

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from core.settings import get_settings

log = logging.getLogger("backprop.http")

CLOSINGS_LOG_EVERY_S = 1.0
"""Connections closed by the guard are logged at most once this often, as counts by reason
(a flood of dawdlers would otherwise write a line per connection, on the event loop)."""


class Waiting:
    """One server's connections that hold no request in the app, each in one queue, oldest
    first: `never` those that never completed a request (in opening order), `idle` kept-alive
    ones between requests (the longest idle first). Plus the guard's closings, counted."""

    def __init__(self) -> None:
        self.never: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self.idle: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self.closed: Counter[str] = Counter()
        self.last_client = None
        self.log_at = 0.0
        self.logging: asyncio.TimerHandle | None = None

    def oldest(self) -> GuardedH11Protocol | None:
        """The oldest never-served connection, else the one idle longest, taken out of its
        queue; None if neither has an open one."""
        for queue in (self.never, self.idle):
            while queue:
                connection, _ = queue.popitem(last=False)
                if not connection.transport.is_closing():
                    return connection
        return None

    def count_closed(self, loop: asyncio.AbstractEventLoop, reason: str, client) -> None:
        """Count a closing, logged with the others of its second (at once if none was)."""
        self.closed[reason] += 1
        self.last_client = client
        if self.logging is None:
            self.logging = loop.call_at(max(loop.time(), self.log_at), self._log, loop)

    def _log(self, loop: asyncio.AbstractEventLoop) -> None:
        self.logging, self.log_at = None, loop.time() + CLOSINGS_LOG_EVERY_S
        total = sum(self.closed.values())
        log.info("closed %d connection%s (the last from %s): %s", total,
                 "" if total == 1 else "s", self.last_client,
                 "; ".join(f"{n} {reason}" for reason, n in self.closed.items()))
        self.closed.clear()


_waiting: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""uvicorn's ServerState -> that server's Waiting (one per server, so per event loop)."""


class GuardedH11Protocol(H11Protocol):
    """uvicorn's H11Protocol with the module's timeouts and connection cap."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout_s = settings.http_header_timeout_s
        self.body_timeout_s = settings.http_body_timeout_s
        self.max_connections = settings.max_connections
        self._guard: asyncio.TimerHandle | None = None
        self._served = 0
        self._waiting_queues = _waiting.get(self.server_state)
        if self._waiting_queues is None:
            self._waiting_queues = _waiting[self.server_state] = Waiting()

    # -- uvicorn's protocol interface ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)
        if len(self.connections) > self.max_connections:
            self._make_room()
        if not transport.is_closing():
            self._waiting_queues.never[self] = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing() or self not in self.connections:  # or a WebSocket's now
            self._unqueue()
            return
        state = self.conn.their_state
        if state is h11.IDLE:          # headers not complete yet: the deadline stands
            if self._guard is None:    # (a next request on a kept-alive connection: from now)
                self._arm(self.header_timeout_s)
            return
        if not self._waiting():        # a request is in the app: not a candidate to close
            self._unqueue()
        if state is h11.SEND_BODY:     # each chunk of body buys another body_timeout_s
            self._arm(self.body_timeout_s)
        else:                          # the request is in: the app has it
            self._disarm()

    def on_response_complete(self) -> None:
        self._served += 1
        self._disarm()
        super().on_response_complete()   # (starts a pipelined next request, if any)
        self._unqueue()
        if not self.transport.is_closing() and self._waiting():
            self._waiting_queues.idle[self] = None    # idle from now: the newest

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unqueue()
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
            self._close("that dawdled over their " + ("headers" if state is h11.IDLE
                                                       else "body"))

    def _close(self, reason: str) -> None:
        self._disarm()
        self._unqueue()
        self.transport.close()
        self._waiting_queues.count_closed(self.loop, reason, self.client)

    def _unqueue(self) -> None:
        self._waiting_queues.never.pop(self, None)
        self._waiting_queues.idle.pop(self, None)

    def _waiting(self) -> bool:
        """Holding a connection without a request in the app: headers (or nothing) pending."""
        return self.cycle is None or self.cycle.response_complete

    def _make_room(self) -> None:
        """Close the oldest connection that never completed a request, else the one idle
        longest between requests, else this new one (not queued yet)."""
        victim = self._waiting_queues.oldest() or self
        victim._close(f"to make room (BACKPROP_MAX_CONNECTIONS={self.max_connections} were "
                      f"open)")
