"""GET /v1/jobs/{id}/events: every epoch once, in order, then `end`; replay; resume; tenants.

The first tests train real jobs on the session stack. The others run their own API process
with API keys (no workers): the test plays the worker through an Attempt, so it decides
exactly when each epoch is published, including duplicates and gaps on the channel.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from core import fairness
from core.records import JobRecord, JobStatus, Owner, new_id
from core.store import Store
from tests.service.events_helpers import (KEYS, api_process, as_tenant, epochs_then_end,
                                          events_of, put_queued_job, read_all, record,
                                          settings_for)
from tests.service.helpers import blobs, classifier, started, wait_for_job


# -- real jobs on the session stack ----------------------------------------------------------------

EPOCHS = 150


@pytest.fixture(scope="module")
def trained(stack) -> dict:
    """A job followed live from submission: its events and what the job looked like mid-way."""
    with httpx.Client(base_url=stack.url, timeout=30) as api:
        return follow_new_job(api)


def follow_new_job(api: httpx.Client) -> dict:
    X, y = blobs(n=1500, seed=3)
    answer = api.post("/v1/jobs", json={
        "network": classifier(), "data": {"X": X.tolist(), "y": y.tolist()},
        "training": {"epochs": EPOCHS, "validation_split": 0.2, "batch_size": 32}})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    events, status_at_first_event = [], None
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.status_code == 200
        for event in events_of(stream.iter_lines()):
            events.append(event)
            if status_at_first_event is None:
                status_at_first_event = api.get(f"/v1/jobs/{job_id}").json()["status"]
    return {"id": job_id, "events": events, "status_at_first_event": status_at_first_event}


def test_live_stream_has_every_epoch_once_in_order_then_end(api, trained):
    epochs, job = epochs_then_end(trained["events"])
    assert epochs == list(range(1, EPOCHS + 1))
    # The stream followed the job while it trained, not only replayed it afterwards.
    assert trained["status_at_first_event"] in ("queued", "running")
    assert job["id"] == trained["id"] and job["status"] == "succeeded" and job["model_id"]
    assert job["progress"]["epoch"] == EPOCHS
    history = api.get(f"/v1/jobs/{trained['id']}/history").json()["epochs"]
    assert [e["data"] for e in trained["events"][:-1]] == history
    assert len(history[0]["grad_norms"]) == 2 and history[0]["val_loss"] is not None


def test_finished_job_replays_its_history_and_ends(api, trained):
    events = read_all(api, f"/v1/jobs/{trained['id']}/events")
    assert events == trained["events"][:-1] + [events[-1]]
    assert epochs_then_end(events)[1]["status"] == "succeeded"


def test_since_epoch_and_last_event_id_resume_after_that_epoch(api, trained):
    path = f"/v1/jobs/{trained['id']}/events"
    assert epochs_then_end(read_all(api, f"{path}?since_epoch=140"))[0] == list(range(141, 151))
    resumed = read_all(api, path, headers={"Last-Event-ID": "145"})
    assert epochs_then_end(resumed)[0] == list(range(146, 151))
    # Both given: the client has the larger one.
    both = read_all(api, f"{path}?since_epoch=148", headers={"Last-Event-ID": "120"})
    assert epochs_then_end(both)[0] == [149, 150]
    assert epochs_then_end(read_all(api, f"{path}?since_epoch={EPOCHS}"))[0] == []


def test_a_failed_job_ends_with_its_error(api):
    X, y = blobs(n=60, seed=1)
    answer = api.post("/v1/jobs", json={
        "network": classifier(activation="relu"), "data": {"X": (X * 1e4).tolist(),
                                                           "y": y.tolist()},
        "training": {"epochs": 30, "learning_rate": 50.0, "optimizer": "sgd"}})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    epochs, job = epochs_then_end(read_all(api, f"/v1/jobs/{job_id}/events"))
    assert job["status"] == "failed" and job["error"]["message"]
    assert epochs == list(range(1, len(epochs) + 1))
    assert wait_for_job(api, job_id)["status"] == "failed"


def test_unknown_job_and_bad_last_event_id_are_refused(api, trained):
    answer = api.get("/v1/jobs/job_doesnotexist/events")
    assert answer.status_code == 404
    assert "no job with id 'job_doesnotexist'" in answer.json()["error"]["message"]
    answer = api.get(f"/v1/jobs/{trained['id']}/events", headers={"Last-Event-ID": "soon"})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "Last-Event-ID"
    assert api.get(f"/v1/jobs/{trained['id']}/events?since_epoch=-1").status_code == 422


# -- an API with keys, fed by the test through the Store ---------------------------------------------

@pytest.fixture(scope="module")
def keyed(valkey, redis_client):
    prefix = f"evt{os.getpid()}"
    with api_process(valkey.url, prefix, KEYS) as client:
        yield client, Store(redis_client, prefix)


def test_another_tenants_job_is_not_found(keyed):
    client, store = keyed
    job_id = new_id("job")  # ids of another form read as missing
    put_queued_job(store, "alice", job_id)
    fairness.finish(store, settings_for(store), job_id, "alice", JobStatus.CANCELED,
                    Owner(1, JobStatus.QUEUED))
    assert client.get(f"/v1/jobs/{job_id}/events").status_code == 401
    answer = client.get(f"/v1/jobs/{job_id}/events", headers=as_tenant("bob"))
    assert answer.status_code == 404
    events = read_all(client, f"/v1/jobs/{job_id}/events", headers=as_tenant("alice"))
    assert epochs_then_end(events) == ([], events[-1]["data"])
    assert events[-1]["data"]["status"] == "canceled"


def test_stream_follows_epochs_skips_repeats_and_fills_gaps(keyed):
    client, store = keyed
    job_id = new_id("job")
    worker = started(store, settings_for(store), put_queued_job(store, "alice", job_id))
    worker.append_epoch(record(1))
    worker.append_epoch(record(2))
    channel = store.keys.job_events(job_id)
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=as_tenant("alice")) as stream:
        events = events_of(stream.iter_lines())
        assert [next(events)["id"] for _ in range(2)] == ["1", "2"]  # the history so far
        worker.append_epoch(record(3))
        assert next(events)["data"] == record(3)
        # Epoch 3 again on the channel (as when an epoch lands between subscribe and the
        # history read): dropped. Then epoch 5 published while 4 only reached the history
        # (a message lost): 4 is read from the history, then 5.
        store.r.publish(channel, json.dumps({"event": "epoch", "record": record(3)}))
        store.r.rpush(store.keys.job_history(job_id), json.dumps(record(4)))
        worker.append_epoch(record(5), epoch=5)
        assert [next(events)["id"] for _ in range(2)] == ["4", "5"]
        worker.finish(JobStatus.SUCCEEDED)
        end = next(events)
        assert end["event"] == "end" and end["data"]["status"] == "succeeded"
        assert list(events) == []  # and the stream closed


def test_end_is_sent_even_when_its_message_is_lost(keyed):
    """A job that finished without a message on the channel (Redis restarted, say) still ends
    the stream: the stream re-reads the job's status after events_recheck_s of silence."""
    client, store = keyed
    job_id = new_id("job")
    put_queued_job(store, "alice", job_id)
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=as_tenant("alice"),
                       timeout=30) as stream:
        store.r.rpush(store.keys.job_history(job_id), json.dumps(record(1)))
        store.r.hset(store.keys.job(job_id), mapping=JobRecord.encode_fields(
            status=JobStatus.SUCCEEDED, finished_at=time.time()))  # and no end message
        events = list(events_of(stream.iter_lines()))
    assert epochs_then_end(events)[0] == [1]
    assert events[-1]["data"]["status"] == "succeeded"


def test_open_stream_does_not_hold_up_api_shutdown(valkey, redis_client):
    """uvicorn waits for open responses on SIGTERM; an events stream never ends by itself, so
    the API must cut it after its grace period instead of hanging until SIGKILL."""
    prefix = f"evtstop{os.getpid()}"
    store = Store(redis_client, prefix)
    job_id = new_id("job")
    put_queued_job(store, "alice", job_id)
    with api_process(valkey.url, prefix, KEYS) as client:
        with client.stream("GET", f"/v1/jobs/{job_id}/events",
                           headers=as_tenant("alice")) as stream:
            assert stream.status_code == 200
            client.process.send_signal(signal.SIGTERM)
            # Exits by itself (uvicorn's default would wait for the stream forever); uvicorn
            # re-raises the SIGTERM it caught once it has shut down.
            assert client.process.wait(20) in (0, -signal.SIGTERM)
