"""What the hostile-caller tests measure on the real API process: its memory (from
/proc/<pid>/status), /healthz latency while an attack runs, and requests written byte by byte
on a socket (headers without their body, several requests on one connection)."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
import zipfile
from pathlib import Path
from typing import Iterator

import httpx

from tests.service.helpers import own_stack

KEYS = {"alice": "alice-key-5d1c0a", "bob": "bob-key-93e2f7"}
"""Two tenants' keys for the stacks of the hostile-caller tests."""


@contextlib.contextmanager
def keyed_stack(root: Path, **env: str):
    """A stack of its own (own_stack) whose API takes KEYS."""
    stack = own_stack(root, extra_env={
        "BACKPROP_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()), **env})
    try:
        yield stack
    finally:
        stack.stop()


def as_tenant(stack, tenant: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=30,
                        headers={"Authorization": f"Bearer {KEYS[tenant]}"})


# -- memory --------------------------------------------------------------------------------------
def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[dict]:
    """{'before', 'peak'} in MB: the process's resident memory when the block starts, and the
    most it held during the block (VmHWM, reset at the start through clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    figures = {"before": rss_mb(pid)}
    yield figures
    figures["peak"] = _status_kb(pid, "VmHWM") / 1024
    figures["grew"] = figures["peak"] - figures["before"]


# -- /healthz while something else runs --------------------------------------------------------
class HealthProbe:
    """Polls GET /healthz on its own connection every 10 ms while the `with` block runs;
    `.worst` is the slowest answer in seconds (a stalled event loop shows up here)."""

    def __init__(self, url: str):
        self.url, self.latencies = url, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                self.latencies.append(time.perf_counter() - start)
                self._stop.wait(0.01)

    def __enter__(self) -> "HealthProbe":
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    @property
    def worst(self) -> float:
        assert len(self.latencies) >= 2, "the probe got no answers"
        return max(self.latencies)


# -- raw HTTP ------------------------------------------------------------------------------------
def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one response with a Content-Length, read off the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of a response body")
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


# -- archives -------------------------------------------------------------------------------------
def zip_of(members: dict[str, bytes | tuple[bytes, int]]) -> bytes:
    """A zip (an .npz to numpy) of members given as bytes, or as (block, repeats) written in
    streaming deflate, so a gigabyte of zeros costs a megabyte here as in the file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, content in members.items():
            if isinstance(content, bytes):
                archive.writestr(name, content)
                continue
            block, repeats = content
            with archive.open(name, "w", force_zip64=True) as member:
                for _ in range(repeats):
                    member.write(block)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A version 1.0 .npy header declaring `shape` of `descr` (the data are up to the caller)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (63 - (len(text) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


def refused(answer: httpx.Response, status: int, field: str, *words: str) -> dict:
    assert answer.status_code == status, (answer.status_code, answer.text[:500])
    error = answer.json()["error"]
    assert error["field"] == field, error
    for word in words:
        assert word in error["message"], error
    return error


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.setblocking(True)
