"""Issue 22, item 10, against a stack of its own (loopback, as `backprop up` runs it):
connections that never finish their headers, or dribble a body, are closed after
BACKPROP_HTTP_HEADER_TIMEOUT_S / BACKPROP_HTTP_BODY_TIMEOUT_S, at most
BACKPROP_MAX_CONNECTIONS are held open, and /healthz answers throughout."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.service.hostile_helpers import (KEYS, HealthProbe, closed_by_server, connect,
                                           keyed_stack, read_response, request_bytes)

HEADER_S, BODY_S, CAP = 2, 2, 150


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with keyed_stack(tmp_path_factory.mktemp("hostile-slowloris"),
                     BACKPROP_HTTP_HEADER_TIMEOUT_S=str(HEADER_S),
                     BACKPROP_HTTP_BODY_TIMEOUT_S=str(BODY_S),
                     BACKPROP_MAX_CONNECTIONS=str(CAP)) as running:
        yield running


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def dawdlers(url: str, count: int) -> list[socket.socket]:
    """Connections that send half a request line and a header, then nothing more."""
    socks = []
    for _ in range(count):
        sock = connect(url)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-a: ")
        socks.append(sock)
    return socks


def test_connections_that_never_finish_their_headers_are_closed(stack):
    """Before: every one stayed open (19,981 of 20,050 after 30 s), until the API's file
    descriptors ran out and /healthz failed for everyone."""
    before = open_fds(stack.api.pid)
    with HealthProbe(stack.url) as probe:
        socks = dawdlers(stack.url, 100)
        for step in range(int(HEADER_S / 0.5) + 1):  # a byte of header now and then
            time.sleep(0.5)
            for sock in socks:
                try:
                    sock.sendall(b"x")
                except OSError:
                    pass
        time.sleep(2)
        closed = sum(closed_by_server(s) for s in socks)
    for sock in socks:
        sock.close()
    assert closed == len(socks), f"{len(socks) - closed} dawdling connections still open"
    assert open_fds(stack.api.pid) <= before + 5
    assert probe.worst < 1.0, f"/healthz took {probe.worst:.2f} s"


def test_a_body_that_stops_coming_is_closed(stack):
    sock = connect(stack.url)
    sock.sendall(request_bytes("POST", "/v1/datasets", {
        "Authorization": f"Bearer {KEYS['alice']}", "Content-Type": "application/json",
        "Content-Length": "100000"}, b'{"X": [[1'))
    time.sleep(BODY_S + 2)
    assert closed_by_server(sock)
    sock.close()


def test_at_most_the_cap_of_connections_is_held_and_healthz_answers(stack):
    """Three times the cap of dawdlers at once: the oldest are closed to make room, the API
    holds no more than the cap, and /healthz (a kept-alive client that completed requests)
    keeps answering."""
    before = open_fds(stack.api.pid)
    with HealthProbe(stack.url) as probe:
        socks = dawdlers(stack.url, 3 * CAP)
        # The API takes the connections as it gets to them: wait for it to have made room.
        deadline = time.monotonic() + 20
        while True:
            held = open_fds(stack.api.pid) - before
            still_open = sum(not closed_by_server(s) for s in socks)
            made_room = held <= CAP + 5 and still_open <= CAP
            if (made_room and len(probe.latencies) > 5) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    for sock in socks:
        sock.close()
    assert held <= CAP + 5, f"the API holds {held} more descriptors than before"
    assert still_open <= CAP, still_open
    assert probe.worst < 1.0 and len(probe.latencies) > 5, probe.latencies[-5:]


def ask(sock: socket.socket) -> None:
    """One GET /healthz on `sock`, kept alive."""
    sock.sendall(request_bytes("GET", "/healthz", {}))
    assert read_response(sock)[0] == 200


def test_past_the_cap_the_connection_idle_longest_is_closed_not_a_busy_one(stack):
    """The cap reached with kept-alive connections that all completed a request: a new one
    closes the connection idle longest (b), not the oldest (a, which asks again between the
    others); then dawdlers close each other, never-served ones going first."""
    a, b = connect(stack.url), connect(stack.url)
    ask(a)
    ask(b)
    others = []
    for _ in range(CAP):
        others.append(connect(stack.url))
        ask(others[-1])
        ask(a)
    deadline = time.monotonic() + 5
    while not closed_by_server(b) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed_by_server(b), "the connection idle longest is still open"
    slow = dawdlers(stack.url, CAP // 2)
    ask(a)
    for sock in [a, b, *others, *slow]:
        sock.close()


@pytest.mark.parametrize("dribbled", [False, True], ids=["at-once", "dribbled"])
def test_headers_over_16_kib_are_answered_400_and_closed(stack, dribbled):
    """llhttp bounds no header: the guard does (16 KiB for the request line and headers),
    whether they come in one piece or one header keeps growing, a chunk at a time."""
    sock = connect(stack.url)
    head = b"GET /healthz HTTP/1.1\r\nHost: test\r\n"
    if dribbled:                                    # one header value that never ends
        sock.sendall(head + b"X-long: ")
        try:
            for _ in range(24):
                sock.sendall(b"v" * 1024)
                time.sleep(0.01)
        except OSError:                             # closed by the server on the way: fine
            pass
    else:
        sock.sendall(head + b"".join(b"X-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(20))
                     + b"\r\n")
    status, _, _ = read_response(sock)
    assert status == 400
    deadline = time.monotonic() + 5
    while not closed_by_server(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed_by_server(sock)
    sock.close()
    ok = connect(stack.url)                         # headers within the bound are served
    ok.sendall(head + b"X-h: " + b"v" * 8000 + b"\r\n\r\n")
    assert read_response(ok)[0] == 200
    ok.close()
