"""Shared by the event-stream tests (test_events, test_hostile_streams, test_dashboard): reading a
text/event-stream, and `backprop api` alone with tenant keys, fed by the test through the Store
(the test plays the worker)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from core.records import JobRecord
from core.settings import Settings
from core.store import Store
from service.embedded_redis import free_port
from tests.service.helpers import START_DEADLINE_S, job_record, private_settings, submitted

KEYS = {"alice": "alice-key-0123", "bob": "bob-key-4567"}
RECHECK_S = 0.3  # the keyed API's events_recheck_s, short so the lost-end test is quick


# -- reading a text/event-stream -----------------------------------------------------------------

def events_of(lines: Iterator[str]) -> Iterator[dict]:
    """{'event', 'id', 'data'} per event of an SSE line stream; comments are skipped."""
    event: dict = {}
    for line in lines:
        if line == "":
            if "data" in event:
                yield {"event": event.get("event", "message"), "id": event.get("id"),
                       "data": json.loads(event["data"])}
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")


def read_all(client: httpx.Client, path: str, **kwargs) -> list[dict]:
    with client.stream("GET", path, **kwargs) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        return list(events_of(answer.iter_lines()))


def epochs_then_end(events: list[dict]) -> tuple[list[int], dict]:
    """The epoch numbers and the end event's job; fails unless `end` comes once and last."""
    assert [e["event"] for e in events].count("end") == 1 and events[-1]["event"] == "end"
    epochs = [e["data"]["epoch"] for e in events[:-1]]
    assert all(e["event"] == "epoch" and e["id"] == str(e["data"]["epoch"])
               for e in events[:-1])
    return epochs, events[-1]["data"]


# -- an API with keys, fed by the test through the Store ----------------------------------------

@contextlib.contextmanager
def api_process(redis_url: str, prefix: str, keys: dict[str, str]) -> Iterator[httpx.Client]:
    """`backprop api` alone (no workers) on a free port, with tenant keys; stopped on exit."""
    port = free_port()
    env = {**os.environ, "BACKPROP_REDIS_URL": redis_url, "BACKPROP_KEY_PREFIX": prefix,
           "BACKPROP_API_KEYS": ",".join(f"{t}:{k}" for t, k in keys.items()),
           "BACKPROP_EVENTS_RECHECK_S": str(RECHECK_S)}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "api", "--port", str(port)],
                            env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            assert proc.poll() is None, f"the API exited with status {proc.returncode}"
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, \
                f"the API did not answer /healthz in {START_DEADLINE_S} s"
            time.sleep(0.1)
        client.process = proc
        yield client
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def as_tenant(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def settings_for(store: Store) -> Settings:
    return private_settings(store.keys.prefix)


def put_queued_job(store: Store, tenant: str, job_id: str, epochs: int = 10,
                   layers: tuple[tuple[int, str], ...] = ((8, "tanh"), (3, "softmax"))
                   ) -> JobRecord:
    """A job as the API stores it on submission, queued where no worker listens (the test
    then plays its worker)."""
    network = {"layers": [{"units": u, "activation": a} for u, a in layers]}
    return submitted(store, settings_for(store),
                     job_record(tenant, epochs, id=job_id, network=network))


def record(epoch: int) -> dict:
    return {"epoch": epoch, "loss": 1.0 / epoch, "val_loss": None, "grad_norms": [0.5, 0.25]}
