"""Per-tenant backlog and byte quota against the session's real Valkey (queues no worker
serves, a key prefix of their own): admission, promotion at finish and by the reaper, cancel
of a backlogged job, and the byte counter moving with every write and delete."""

import secrets

import numpy as np
import pytest

from core import fairness, queues, quota
from core.records import JobStatus, ModelRecord, Owner
from core.store import Store
from tests.service.helpers import dataset_record, job_record, private_settings, started, submitted
from worker.reaper import sweep


@pytest.fixture()
def settings(service_env):
    # Two jobs of a tenant may wait in a queue at once: these tests are of the active limit.
    return private_settings(f"t-fair-{secrets.token_hex(4)}", max_active_jobs_per_tenant=2,
                            max_queued_jobs_per_tenant=2, max_tenant_bytes=90_000)


def in_rq(store: Store, settings) -> list[str]:
    """Job ids whose attempt waits in the (unserved) CPU queue, in queue order."""
    return [rq_id.rsplit("-a", 1)[0] for rq_id in queues.queue_for(store.r, settings,
                                                                    "cpu").job_ids]


def positions(store: Store, jobs) -> dict:
    return fairness.backlog_positions(store, [job for j in jobs
                                              if (job := store.job(None, j.id)) is not None])


def test_a_tenant_over_its_limit_waits_in_its_backlog_and_others_do_not(store, settings):
    alice = [submitted(store, settings, job_record("alice")) for _ in range(5)]
    bob = submitted(store, settings, job_record("bob"))
    assert [j.backlogged for j in alice] == [False, False, True, True, True]
    assert all(j.status == JobStatus.QUEUED for j in alice)
    assert in_rq(store, settings) == [alice[0].id, alice[1].id, bob.id]
    assert positions(store, alice) == {alice[2].id: 1, alice[3].id: 2, alice[4].id: 3}

    # alice's first job ends: her oldest backlogged job is queued in the same transaction.
    started(store, settings, alice[0]).finish(JobStatus.SUCCEEDED)
    assert in_rq(store, settings) == [alice[1].id, bob.id, alice[2].id]
    promoted = store.job(None, alice[2].id)
    assert not promoted.backlogged and promoted.rq_id == f"{alice[2].id}-a1"
    assert positions(store, alice) == {alice[3].id: 1, alice[4].id: 2}

    # A backlogged job canceled: out of the backlog, nothing promoted (no slot was freed).
    assert fairness.finish(store, settings, alice[3].id, "alice", JobStatus.CANCELED,
                           Owner(1, JobStatus.QUEUED)) is not None
    assert store.job(None, alice[3].id).status == JobStatus.CANCELED
    assert positions(store, alice) == {alice[4].id: 1}
    assert in_rq(store, settings) == [alice[1].id, bob.id, alice[2].id]
    assert store.delete_job("alice", alice[3].id)


def test_the_reaper_promotes_what_a_raised_limit_or_a_lost_slot_left_waiting(store, settings):
    alice = [submitted(store, settings, job_record("alice")) for _ in range(5)]
    assert sweep(store, settings) == []  # both slots taken: nothing to do
    # A slot held by a job that is gone (as after a crash between writes of an older version).
    store.r.delete(store.keys.job(alice[0].id))
    assert sweep(store, settings) == [alice[2].id]
    raised = settings.model_copy(update={"max_active_jobs_per_tenant": 4,
                                         "max_queued_jobs_per_tenant": 4})
    assert sweep(store, raised) == [alice[3].id, alice[4].id]
    assert in_rq(store, settings) == [a.id for a in alice]
    assert positions(store, alice) == {}
    assert not store.r.sismember(store.keys.backlogged_tenants(), "alice")


def test_workers_take_tenants_jobs_in_turn(store, settings):
    """One job of a tenant waits in a queue at once: the next goes in as it starts, behind
    what other tenants queued meanwhile, so bob's job waits behind one of alice's, not five."""
    one = settings.model_copy(update={"max_active_jobs_per_tenant": 8,
                                      "max_queued_jobs_per_tenant": 1})
    alice = [submitted(store, one, job_record("alice")) for _ in range(5)]
    bob = submitted(store, one, job_record("bob"))
    assert [j.backlogged for j in alice] == [False, True, True, True, True]
    assert in_rq(store, one) == [alice[0].id, bob.id]

    first = started(store, one, alice[0])       # a worker takes it: alice's next goes in
    assert in_rq(store, one) == [bob.id, alice[1].id]
    started(store, one, store.job(None, bob.id))
    started(store, one, store.job(None, alice[1].id))
    assert in_rq(store, one) == [alice[2].id]
    carol = submitted(store, one, job_record("carol"))
    assert in_rq(store, one) == [alice[2].id, carol.id]
    first.finish(JobStatus.SUCCEEDED)            # a slot freed, but alice's queue is full
    assert in_rq(store, one) == [alice[2].id, carol.id]
    assert positions(store, alice) == {alice[3].id: 1, alice[4].id: 2}

    # A canceled waiting job makes room: her next goes in.
    assert fairness.finish(store, one, alice[2].id, "alice", JobStatus.CANCELED,
                           Owner(1, JobStatus.QUEUED)) is not None
    queues.take_back_queued(store.r, one, "cpu", f"{alice[2].id}-a1")
    assert in_rq(store, one) == [carol.id, alice[3].id]


def test_a_job_of_a_busy_queue_does_not_hold_a_tenants_jobs_of_another(store, settings):
    """alice's second GPU job waits for her first to start; her CPU job behind it passes."""
    one = settings.model_copy(update={"max_active_jobs_per_tenant": 8,
                                      "max_queued_jobs_per_tenant": 1})
    gpu = [submitted(store, one, job_record("alice", device="gpu")) for _ in range(2)]
    cpu = submitted(store, one, job_record("alice"))
    assert [gpu[0].backlogged, gpu[1].backlogged, cpu.backlogged] == [False, True, True]
    assert sweep(store, one) == [cpu.id]       # the reaper's pass: the CPU queue has room
    assert in_rq(store, one) == [cpu.id]
    assert positions(store, gpu) == {gpu[1].id: 1}
    started(store, one, gpu[0])                # the GPU worker takes the first one
    assert positions(store, gpu) == {}
    assert store.job(None, gpu[1].id).rq_id == f"{gpu[1].id}-a1"


def hash_size(store: Store, key: str) -> int:
    return quota.stored_hash_bytes(store.r, key)


def test_bytes_are_counted_with_every_write_and_delete(store, settings):
    k, tenant = store.keys, "carol"
    X, y = np.zeros((1000, 10), np.float32), np.zeros(1000, np.int64)  # 48 KB as .npy
    codes = np.zeros((1000, 0), np.int32)
    meta = store.put_dataset(dataset_record("ds_a", tenant, 1.0, X, y), X, codes, y,
                             settings.max_tenant_bytes).model_dump()
    dataset = meta["bytes"] + hash_size(store, k.dataset("ds_a"))  # arrays and record
    assert store.tenant_bytes(tenant) == dataset and meta["bytes"] > 48_000
    with pytest.raises(quota.QuotaExceeded) as over:
        store.put_dataset(dataset_record("ds_b", tenant, 2.0, X, y), X, codes, y,
                          settings.max_tenant_bytes)
    message = over.value.message
    assert "BACKPROP_MAX_TENANT_BYTES=90000" in message and "delete datasets" in message
    assert f"stores {dataset / 2**20:.1f} MiB" in message
    assert store.dataset(tenant, "ds_b") is None and store.tenant_bytes(tenant) == dataset

    inline = (np.zeros((100, 10), np.float32), np.zeros(100, np.int64))
    job = submitted(store, settings, job_record(tenant, data_bytes=sum(
        map(len, Store.inline_blobs(*inline).values())), reserved_bytes=5000), inline=inline)
    assert job.stored_bytes > quota.RECORD_ALLOWANCE + 500  # the record, and its allowance
    with_job = store.tenant_bytes(tenant)
    assert with_job == dataset + job.data_bytes + job.stored_bytes + 5000
    assert job.data_bytes > 4_800
    model = (ModelRecord(id="mdl_c", tenant=tenant, job_id=job.id, created_at=3.0),
             b"w" * 3000)
    started(store, settings, job).finish(JobStatus.SUCCEEDED, model, model_id="mdl_c")
    assert store.job_inline_data(job.id) is None
    ended = store.job(tenant, job.id)
    assert ended.reserved_bytes == 0 and ended.stored_bytes == job.stored_bytes
    model_size = hash_size(store, k.model("mdl_c"))
    assert model_size > 3000
    # inline data and reservation freed; the model, the record and its history in
    assert store.tenant_bytes(tenant) == dataset + job.stored_bytes + model_size

    assert store.delete_job(tenant, job.id)  # with its model
    assert store.model(tenant, "mdl_c") is None
    assert store.delete_dataset(tenant, "ds_a")
    assert store.tenant_bytes(tenant) == 0
    assert int(store.r.get(k.tenant_bytes(tenant))) == 0


def test_a_deleted_model_alone_gives_its_bytes_back(store, settings):
    job = submitted(store, settings, job_record("dave"))
    started(store, settings, job).finish(
        JobStatus.SUCCEEDED, (ModelRecord(id="mdl_d", tenant="dave", job_id=job.id,
                                           created_at=1.0), b"w" * 500), model_id="mdl_d")
    model_size = hash_size(store, store.keys.model("mdl_d"))
    assert store.tenant_bytes("dave") == job.stored_bytes + model_size
    assert not store.delete_model("erin", "mdl_d")  # another tenant's: untouched
    assert store.delete_model("dave", "mdl_d")
    assert store.tenant_bytes("dave") == job.stored_bytes
    assert store.delete_job("dave", job.id, with_model=True)  # its model already gone
    assert store.tenant_bytes("dave") == 0


def test_history_checkpoint_and_rewind_are_charged_out_of_the_reservation(store, settings):
    job = submitted(store, settings, job_record("fay", reserved_bytes=1000))
    base = job.stored_bytes
    attempt = started(store, settings, job)
    lines = [attempt.append_epoch({"epoch": e, "loss": 0.5}, epoch=e) for e in (1, 2, 3)]
    assert lines == [False] * 3
    history = sum(map(len, store.r.lrange(store.keys.job_history(job.id), 0, -1)))
    now = store.job("fay", job.id)
    assert (now.stored_bytes, now.reserved_bytes) == (base + history, 1000 - history)
    assert store.tenant_bytes("fay") == base + 1000  # all out of the reservation
    attempt.checkpoint(b"c" * 2000, 3)  # past the reservation: the rest charged on top
    now = store.job("fay", job.id)
    assert (now.stored_bytes, now.reserved_bytes) == (base + history + 2000, 0)
    assert store.tenant_bytes("fay") == base + history + 2000
    attempt.checkpoint(b"c" * 500, 3)  # a smaller one gives the difference back
    attempt.rewind(1)                   # epochs 2 and 3 dropped
    kept = len(store.r.lindex(store.keys.job_history(job.id), 0))
    now = store.job("fay", job.id)
    assert now.stored_bytes == base + kept + 500 == store.tenant_bytes("fay")
    attempt.finish(JobStatus.CANCELED)  # the checkpoint goes, the record and history stay
    assert store.tenant_bytes("fay") == base + kept == store.job("fay", job.id).stored_bytes
    assert fairness.expire_finished(store, now=0) == []     # not due yet
    assert fairness.expire_finished(store, now=2e10) == [job.id]
    assert store.job(None, job.id) is None and store.tenant_bytes("fay") == 0


def test_reservations_of_jobs_submitted_together_cannot_share_free_bytes(store, settings):
    """Each of four jobs reserves 40% of the quota: two fit, the others are refused (before:
    each checked the same free bytes and all four got in)."""
    reserve = int(settings.max_tenant_bytes * 0.4)
    outcomes = []
    for _ in range(4):
        try:
            outcomes.append(submitted(store, settings, job_record("gus", reserved_bytes=reserve)))
        except quota.QuotaExceeded as exc:
            outcomes.append(exc)
    assert [isinstance(o, quota.QuotaExceeded) for o in outcomes] == [False, False, True, True]
    assert "BACKPROP_MAX_TENANT_BYTES" in outcomes[2].message
    assert store.tenant_bytes("gus") <= settings.max_tenant_bytes


def test_the_backlog_has_a_cap(store, settings):
    capped = settings.model_copy(update={"max_backlog_per_tenant": 2})
    jobs = [submitted(store, capped, job_record("hal")) for _ in range(4)]  # 2 active, 2 wait
    assert [j.backlogged for j in jobs] == [False, False, True, True]
    before = store.tenant_bytes("hal")
    with pytest.raises(fairness.BacklogFull) as full:
        submitted(store, capped, job_record("hal"))
    assert "BACKPROP_MAX_BACKLOG_PER_TENANT=2" in str(full.value)
    assert store.tenant_bytes("hal") == before  # nothing stored, nothing charged
    assert submitted(store, capped, job_record("ian")).backlogged is False  # others unaffected
