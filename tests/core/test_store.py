"""Store lists against the session's real Valkey: the status filter comes before the limit,
cursors page past 1000 records, ties and expired records are handled; a model's owner."""

import secrets

import numpy as np
import pytest

from core.records import JobStatus, ModelRecord
from core.store import BadCursor, Store
from tests.service.helpers import dataset_record, job_record, private_settings, started, submitted


@pytest.fixture()
def settings(service_env):
    return private_settings(f"t-store-{secrets.token_hex(4)}")


def stored(store: Store, jobs: list) -> None:
    """Write job records as submit does, in one transaction (no queue: listing only)."""
    def write(pipe):
        pipe.multi()
        for job in jobs:
            store.put_job(pipe, job)
    store.transact(write)


def every_page(store: Store, limit: int, **filters) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = store.jobs("t", limit=limit, before=cursor, **filters)
        pages.append([job.id for job in page.items])
        if page.next is None:
            return pages
        cursor = page.next


def test_cursors_page_past_1000_jobs_newest_first_with_ties(store):
    # 1105 jobs; 40 of them share one submit time (ids then order them).
    jobs = [job_record(created_at=1000.0 + (i if i % 25 else 500.0)) for i in range(1105)]
    stored(store, jobs)
    pages = every_page(store, limit=1000)
    assert [len(p) for p in pages] == [1000, 105]
    listed = [job_id for page in pages for job_id in page]
    expected = [j.id for j in sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)]
    assert listed == expected
    assert [len(p) for p in every_page(store, limit=7)][:3] == [7, 7, 7]
    assert [i for page in every_page(store, limit=7) for i in page] == expected


def test_status_filter_comes_before_the_limit(store, settings):
    old_running = [submitted(store, settings, job_record(created_at=10.0 + i)) for i in range(3)]
    for job in old_running:
        started(store, settings, job)
    stored(store, [job_record(created_at=100.0 + i) for i in range(30)])  # newer, queued
    first = store.jobs("t", JobStatus.RUNNING, limit=2)
    assert [j.id for j in first.items] == [old_running[2].id, old_running[1].id]
    rest = store.jobs("t", JobStatus.RUNNING, limit=2, before=first.next)
    assert [j.id for j in rest.items] == [old_running[0].id] and rest.next is None
    assert all(j.status == JobStatus.RUNNING for j in first.items + rest.items)
    assert len(store.jobs("t", JobStatus.QUEUED, limit=1000).items) == 30
    # Each status change moves the job between the indexes.
    started(store, settings, submitted(store, settings)).finish(JobStatus.SUCCEEDED)
    assert len(store.jobs("t", JobStatus.SUCCEEDED).items) == 1
    assert len(store.jobs("t", JobStatus.RUNNING).items) == 3
    assert len(store.jobs("t").items) == 34


def test_expired_records_are_skipped_and_dropped_from_the_index(store):
    jobs = [job_record(created_at=float(i)) for i in range(6)]
    stored(store, jobs)
    store.r.delete(store.keys.job(jobs[4].id))  # as when its retention ran out
    page = store.jobs("t", limit=3)
    assert [j.id for j in page.items] == [jobs[5].id, jobs[3].id, jobs[2].id]
    assert store.r.zscore(store.keys.jobs_of("t"), jobs[4].id) is None


def test_bad_cursors_are_refused(store):
    for cursor in ("yesterday", "nan:job_x", "inf:job_x", "1.0:job x", "1.0:" + "x" * 200):
        with pytest.raises(BadCursor, match="next"):
            store.jobs("t", before=cursor)


def test_datasets_page_too(store):
    X, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
    for i in range(5):
        store.put_dataset(dataset_record(f"ds_{i}", "t", float(i), X, y), X,
                          np.zeros((4, 0), np.int32), y, max_tenant_bytes=10**9)
    first = store.datasets("t", limit=3)
    rest = store.datasets("t", limit=3, before=first.next)
    assert [d.id for d in first.items + rest.items] == [f"ds_{i}" for i in range(4, -1, -1)]
    assert rest.next is None


def test_a_models_owner_is_read_without_its_meta_or_weights(store):
    model_id = f"mdl_{secrets.token_hex(8)}"
    assert store.model_owner(model_id) is None
    store.put_model(ModelRecord(id=model_id, tenant="alice", created_at=1.0), b"weights")
    assert store.model_owner(model_id) == "alice"
    assert store.model("bob", model_id) is None and store.model("alice", model_id).id == model_id
