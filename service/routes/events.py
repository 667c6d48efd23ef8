"""GET /v1/jobs/{id}/events: a job's progress as server-sent events (text/event-stream).

    id: 7
    event: epoch
    data: {"epoch": 7, "loss": 0.31, "val_loss": 0.35, "grad_norms": [...], ...}

    event: end
    data: {"id": "job_...", "status": "succeeded", "model_id": "mdl_...", ...}

One `epoch` event per epoch (the record as in /history, its `id:` the epoch number), then one
`end` event with the job as GET /v1/jobs/{id} shows it, then the stream closes. A client that
reconnects with `Last-Event-ID` (or `?since_epoch=`) gets only the epochs after that one.

No epoch is missed: the stream subscribes to the job's channel first, then replays the history,
then follows the channel, skipping epochs already sent. It re-reads the job after
settings.events_recheck_s of silence, so an end whose message was lost (Redis restarted, say)
still ends the stream.
FastAPI sends a keep-alive comment after 15 s without an event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from core.store import Store
from service.deps import IdCheckedRoute, SettingsDep, StateDep, StoreDep, TenantDep
from service.errors import ApiError
from service.job_views import job_view, owned_job
from service.schemas import ErrorOut


router = APIRouter(route_class=IdCheckedRoute, prefix="/v1/jobs", tags=["jobs"],
                   responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}})


MAX_EPOCH = 10**9


def events_redis(state: StateDep) -> aioredis.Redis:
    """The app's asyncio Redis client for pub/sub, made on first use. Its pool is the streams'
    own, one connection per open stream (StreamSlots caps them), so open streams never take
    the connections other requests use."""
    if state.events_redis is None:
        state.events_redis = aioredis.Redis.from_url(
            state.settings.redis_url, socket_connect_timeout=2, health_check_interval=10,
            max_connections=state.settings.max_streams)
    return state.events_redis


async def stream_slot(state: StateDep, tenant: TenantDep) -> AsyncIterator[None]:
    """Holds one of the tenant's stream slots from before the answer starts (a refusal is a
    429, not a broken stream) until the stream has ended."""
    state.stream_slots.take(tenant)
    try:
        yield
    finally:
        state.stream_slots.give_back(tenant)


def resume_point(since_epoch: int, last_event_id: str | None) -> int:
    """The last epoch the client has: the larger of ?since_epoch= and Last-Event-ID."""
    if last_event_id is None or not last_event_id.strip():
        return since_epoch
    value = last_event_id.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > MAX_EPOCH:
        raise ApiError(422, f"Last-Event-ID must be an epoch number from 0 to {MAX_EPOCH} (the "
                            f"`id:` of the last event received), not {last_event_id[:40]!r}",
                       "Last-Event-ID")
    return max(since_epoch, int(value))


def epoch_event(record: dict) -> ServerSentEvent:
    return ServerSentEvent(event="epoch", id=str(record["epoch"]), raw_data=json.dumps(record))


def end_event(meta: dict) -> ServerSentEvent:
    return ServerSentEvent(event="end", raw_data=json.dumps(job_view(meta)))


class EpochCursor:
    """Which epochs the client has; turns history and channel records into new events."""

    def __init__(self, store: Store, job_id: str, last_sent: int):
        self.store, self.job_id, self.last_sent = store, job_id, last_sent

    async def catch_up(self, upto: int | None = None) -> list[ServerSentEvent]:
        """Events for the stored epochs after the last one sent (up to `upto`)."""
        records = await run_in_threadpool(self.store.history, self.job_id, self.last_sent)
        return self.take([r for r in records if upto is None or r["epoch"] <= upto])

    async def live(self, record: dict) -> list[ServerSentEvent]:
        """Events for one record from the channel: none if sent already, the gap first if any."""
        epoch = record["epoch"]
        if epoch <= self.last_sent:
            return []
        events = await self.catch_up(upto=epoch - 1) if epoch > self.last_sent + 1 else []
        return events + self.take([record])

    def take(self, records: list[dict]) -> list[ServerSentEvent]:
        events = []
        for record in records:
            if record["epoch"] > self.last_sent:
                events.append(epoch_event(record))
                self.last_sent = record["epoch"]
        return events


async def job_events(store: Store, client: aioredis.Redis, job_id: str, since: int,
                     recheck_s: float) -> AsyncIterator[ServerSentEvent]:
    """Replay the history after epoch `since`, follow the job live, end with its status."""
    cursor = EpochCursor(store, job_id, since)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        # Subscribe before reading the history: an epoch published in between is then both
        # in the history and on the channel, and the cursor drops the second copy.
        await pubsub.subscribe(store.keys.job_events(job_id))
        for event in await cursor.catch_up():
            yield event
        while True:
            meta = await run_in_threadpool(store.job, None, job_id)
            if meta is None:  # deleted or expired while we streamed
                return
            if meta.finished:
                for event in await cursor.catch_up():
                    yield event
                yield end_event(meta)
                return
            message = await pubsub.get_message(timeout=recheck_s)
            while message is not None:
                payload = json.loads(message["data"])
                if payload.get("event") == "end":
                    break  # the loop's next pass reads the final status and ends
                for event in await cursor.live(payload["record"]):
                    yield event
                message = await pubsub.get_message(timeout=recheck_s)
    finally:
        await pubsub.aclose()


def streamed_job(job_id: str, store: StoreDep, tenant: TenantDep,
                 since_epoch: int = Query(0, ge=0, le=MAX_EPOCH,
                                          description="only epochs after this one"),
                 last_event_id: str | None = Header(None, alias="Last-Event-ID",
                                                    description="resume after this epoch"),
                 ) -> int:
    """Checks run before the stream starts (a 404 must not arrive as a broken stream);
    returns the last epoch the client already has."""
    since = resume_point(since_epoch, last_event_id)
    owned_job(store, tenant, job_id)
    return since


@router.get("/{job_id}/events", response_class=EventSourceResponse,
            dependencies=[Depends(stream_slot)],
            responses={200: {"description": "`epoch` events, then one `end` event"},
                       422: {"model": ErrorOut}, 429: {"model": ErrorOut}})
async def stream_job_events(job_id: str, store: StoreDep, settings: SettingsDep,
                            since: Annotated[int, Depends(streamed_job)],
                            client: Annotated[aioredis.Redis, Depends(events_redis)]):
    """Every epoch as an `epoch` event, then an `end` event with the final job, then close.

    A finished job's stream replays its history and ends at once. Reconnect with
    `Last-Event-ID: N` (or `?since_epoch=N`) to get only the epochs after N.
    """
    async for event in job_events(store, client, job_id, since, settings.events_recheck_s):
        yield event
