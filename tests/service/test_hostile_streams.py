"""Event streams held open by one tenant, on an API of its own with two tenants' keys (the test
plays the worker through the Store): a tenant may hold BACKPROP_MAX_STREAMS_PER_TENANT streams,
the process BACKPROP_MAX_STREAMS, each refusal a JSON error before any stream starts, and
another tenant's stream and other requests are served meanwhile."""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from core import fairness
from core.records import JobStatus, Owner, new_id
from core.store import Store
from tests.service.events_helpers import (api_process, as_tenant, epochs_then_end, events_of,
                                          put_queued_job, read_all, record, settings_for)
from tests.service.helpers import started

PER_TENANT = 20  # the default of BACKPROP_MAX_STREAMS_PER_TENANT
TOTAL = 24       # BACKPROP_MAX_STREAMS of this API


@pytest.fixture(scope="module")
def api(valkey, redis_client):
    prefix = f"streams{os.getpid()}"
    os.environ["BACKPROP_MAX_STREAMS"] = str(TOTAL)
    try:
        with api_process(valkey.url, prefix, {"alice": "alice-key-0123",
                                              "bob": "bob-key-4567"}) as client:
            yield client, Store(redis_client, prefix)
    finally:
        del os.environ["BACKPROP_MAX_STREAMS"]


def streams_open(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("backprop_event_streams_open "):
            return float(line.split()[1])
    raise AssertionError("no backprop_event_streams_open in /metrics")


@pytest.fixture(autouse=True)
def all_streams_closed(api):
    """Each test starts with no stream open."""
    wait_until_no_streams(api[0])


def wait_until_no_streams(client: httpx.Client) -> None:
    """The API notices a client's closed stream within a moment, and gives its slot back."""
    deadline = time.monotonic() + 10
    while (still := streams_open(client)) > 0:
        assert time.monotonic() < deadline, f"{still} closed streams kept their slots"
        time.sleep(0.05)


def queued(store: Store, tenant: str) -> str:
    job_id = new_id("job")
    put_queued_job(store, tenant, job_id)
    return job_id


@contextlib.contextmanager
def open_streams(client: httpx.Client, tenant: str, job_id: str, n: int):
    """n streams of one job held open; yields their answers' statuses."""
    with contextlib.ExitStack() as held:
        statuses = []
        for _ in range(n):
            answer = held.enter_context(client.stream("GET", f"/v1/jobs/{job_id}/events",
                                                      headers=as_tenant(tenant)))
            statuses.append(answer.status_code)
        yield statuses


def test_a_tenant_at_its_quota_cannot_starve_another(api):
    """Before: with 100 streams open by alice (the size of redis-py's pool), bob's stream of
    his own job answered 200 with an empty body."""
    client, store = api
    alices, bobs = queued(store, "alice"), queued(store, "bob")
    bobs_worker = started(store, settings_for(store), store.job(None, bobs))
    with open_streams(client, "alice", alices, PER_TENANT) as statuses:
        assert statuses == [200] * PER_TENANT
        refused = client.get(f"/v1/jobs/{alices}/events", headers=as_tenant("alice"))
        assert refused.status_code == 429, refused.text
        assert "BACKPROP_MAX_STREAMS_PER_TENANT" in refused.json()["error"]["message"]
        assert refused.headers["Retry-After"]
        # Bob's stream is served, live, to its end.
        with client.stream("GET", f"/v1/jobs/{bobs}/events", headers=as_tenant("bob"),
                           timeout=30) as stream:
            assert stream.status_code == 200
            events = events_of(stream.iter_lines())
            bobs_worker.append_epoch(record(1))
            assert next(events)["data"] == record(1)
            bobs_worker.finish(JobStatus.SUCCEEDED)
            assert next(events)["event"] == "end"
        # And other requests are served meanwhile, many at once.
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: client.get(f"/v1/jobs/{alices}",
                                                         headers=as_tenant("alice")),
                                    range(64)))
        assert {a.status_code for a in answers} == {200}


def test_the_process_wide_cap_is_a_503_naming_its_setting(api):
    client, store = api
    alices, bobs = queued(store, "alice"), queued(store, "bob")
    with open_streams(client, "alice", alices, PER_TENANT) as alice_statuses, \
            open_streams(client, "bob", bobs, TOTAL - PER_TENANT) as statuses:
        assert alice_statuses == [200] * PER_TENANT
        assert statuses == [200] * (TOTAL - PER_TENANT)
        assert streams_open(client) == TOTAL
        refused = client.get(f"/v1/jobs/{bobs}/events", headers=as_tenant("bob"))
        assert refused.status_code == 503, refused.text
        assert "BACKPROP_MAX_STREAMS" in refused.json()["error"]["message"]


def test_slots_come_back_when_streams_end_or_are_closed(api):
    client, store = api
    finished = queued(store, "alice")
    fairness.finish(store, settings_for(store), finished, "alice", JobStatus.CANCELED,
                    Owner(1, JobStatus.QUEUED))
    for _ in range(PER_TENANT + 5):  # each stream ends by itself: no slot stays taken
        assert epochs_then_end(read_all(client, f"/v1/jobs/{finished}/events",
                                        headers=as_tenant("alice")))[0] == []
    assert streams_open(client) == 0
    waiting = queued(store, "alice")
    for _ in range(3):  # held to the quota, closed by the client, again
        with open_streams(client, "alice", waiting, PER_TENANT) as statuses:
            assert statuses == [200] * PER_TENANT
            assert streams_open(client) == PER_TENANT
        wait_until_no_streams(client)


@pytest.mark.parametrize("value", ["99999999999999999999", str(2**63), "1000000001", "١٢",
                                   "²", "-1", "1e3"])
def test_last_event_id_must_be_an_ascii_epoch_number(api, value):
    """Before: above 2**63 an empty stream, and a non-ASCII digit a 500."""
    client, store = api
    job_id = queued(store, "alice")
    raw = value.encode("latin-1") if max(map(ord, value)) < 256 else value.encode()
    answer = client.get(f"/v1/jobs/{job_id}/events",
                        headers={**as_tenant("alice"), "Last-Event-ID": raw})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "Last-Event-ID"
