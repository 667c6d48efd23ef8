"""Connections that dawdle cost their sender, not the API: uvicorn's HTTP/1.1 protocol on
httptools (llhttp, in C) with a header timeout, a bound on a request's headers, a body idle
timeout and a cap on open connections per API process.

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
- a request line and headers of over MAX_HEADER_BYTES are answered 400 and closed (llhttp sets
  no bound), so what each connection holds stays small.

It subclasses uvicorn's httptools protocol rather than its pure-Python h11 one: on the same
1-row predict the API spent 0.73 ms of CPU a request instead of 0.97 ms, the rest of the
difference being h11's parsing (bench/service.py).

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

from enum import Enum

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.settings import get_settings

log = logging.getLogger("backprop.http")

MAX_HEADER_BYTES = 16 * 1024
"""A request line and headers (names and values) larger than this are refused."""

CLOSINGS_LOG_EVERY_S = 1.0
"""Connections closed by the guard are logged at most once this often, as counts by reason
(a flood of dawdlers would otherwise write a line per connection, on the event loop)."""


class Reading(Enum):
    """Where a connection is in reading its current request."""
    NOTHING = "nothing"      # no byte of a request yet (new, or kept alive after a response)
    HEADERS = "headers"      # the request line and headers, not yet complete
    BODY = "body"            # headers in (the app has the request), body still coming
    DONE = "done"            # the whole request is in


class HeadersTooLarge(Exception):
    """Raised in a parser callback: httptools turns it into an HttpParserError, which uvicorn
    answers 400 before closing the connection."""


class Waiting:
    """One server's connections that hold no request in the app, each in one queue, oldest
    first: `never` those that never completed a request (in opening order), `idle` kept-alive
    ones between requests (the longest idle first). Plus the guard's closings, counted."""

    def __init__(self) -> None:
        self.never: OrderedDict[GuardedHttpToolsProtocol, None] = OrderedDict()
        self.idle: OrderedDict[GuardedHttpToolsProtocol, None] = OrderedDict()
        self.closed: Counter[str] = Counter()
        self.last_client = None
        self.log_at = 0.0
        self.logging: asyncio.TimerHandle | None = None

    def oldest(self) -> GuardedHttpToolsProtocol | None:
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


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol with the module's timeouts, header bound and connection
    cap."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout_s = settings.http_header_timeout_s
        self.body_timeout_s = settings.http_body_timeout_s
        self.max_connections = settings.max_connections
        self._guard: asyncio.TimerHandle | None = None
        self._reading = Reading.NOTHING
        self._header_bytes = 0        # the request line and headers parsed so far
        # Bytes fed while the headers stayed incomplete: llhttp holds a header that is still
        # coming, however long, until it ends, so the parsed ones alone would not bound it.
        self._raw_header_bytes = 0
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
        began = self._reading
        super().data_received(data)
        if self.transport.is_closing() or self not in self.connections:  # or a WebSocket's now
            self._unqueue()
            return
        if self._reading in (Reading.NOTHING, Reading.HEADERS):  # the deadline stands
            if self._guard is None:    # (a next request on a kept-alive connection: from now)
                self._arm(self.header_timeout_s)
            if began is Reading.HEADERS:    # all of it went into headers not yet complete
                self._raw_header_bytes += len(data)
                if self._headers_too_large():
                    self.send_400_response(f"Request line and headers over {MAX_HEADER_BYTES} "
                                           f"bytes.")
                    self._close("whose headers grew too large")
            return
        if not self._waiting():        # a request is in the app: not a candidate to close
            self._unqueue()
        if self._reading is Reading.BODY:   # each chunk of body buys another body_timeout_s
            self._arm(self.body_timeout_s)
        else:                          # the request is in: the app has it
            self._disarm()

    # -- httptools' parser callbacks: where the request being read stands ------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = Reading.HEADERS
        self._header_bytes = self._raw_header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading = Reading.BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading = Reading.DONE
        super().on_message_complete()

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
        if self._reading is Reading.BODY and self.flow.read_paused:  # the app is the slow one
            self._arm(self.body_timeout_s)
            return
        if self._reading is not Reading.DONE:
            self._close("that dawdled over their " + ("body" if self._reading is Reading.BODY
                                                       else "headers"))

    def _count_header_bytes(self, n: int) -> None:
        """In a parser callback: past the bound, the parser fails and uvicorn answers 400."""
        self._header_bytes += n
        if self._headers_too_large():
            raise HeadersTooLarge(f"request line and headers over {MAX_HEADER_BYTES} bytes")

    def _headers_too_large(self) -> bool:
        return max(self._header_bytes, self._raw_header_bytes) > MAX_HEADER_BYTES

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
