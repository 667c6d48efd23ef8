"""The RQ job function: train one network on one dataset, reporting every epoch to Redis.

`train(job_id)` takes only the job id (JSON-safe), so a test can call it directly as well as
through a worker. Everything it needs is in the job's record (core.records.JobRecord).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from core import queues
from core.codec import arrays_to_npz
from core.dataset_schema import DatasetSchema, arrays_schema
from core.logs import ContextLogger
from core.records import JobRecord, JobStatus, ModelRecord, Owner, new_id
from core.settings import Settings, get_settings
from core.store import Store
from core.training_data import input_columns, prepared_arrays, task_of
import engine
from worker import sweeps
from worker.attempts import Attempt, AttemptLost, StoreStillFull, patiently
from worker.assessment import Assessment

log = logging.getLogger("backprop.worker")

# Set by the work horse's SIGRTMIN handler when its worker is asked to shut down (SIGTERM):
# the job then checkpoints and goes back to the queue instead of dying with the worker.
PREEMPTED = threading.Event()
SUPERSEDED = "superseded"
STALLED = "stalled"


class DataMissing(Exception):
    """The job's dataset was deleted before the job could load it."""


def train(job_id: str) -> str:
    """Run (or resume) job `job_id`; returns the status it ended in, `requeued` after a
    shutdown, or `superseded` when this attempt is no longer the job's (nothing written)."""
    settings = get_settings()
    rq_job = get_current_job()
    connection = rq_job.connection if rq_job is not None else queues.connect(settings)
    store = Store(connection, settings.key_prefix)
    job = patiently(lambda: store.job(None, job_id), "loading the job")
    if job is None:
        log.warning("job %s is gone; nothing to train", job_id, extra={"job_id": job_id})
        return "missing"
    if job.finished:
        return job.status.value
    if rq_job is not None and job.rq_id not in (None, rq_job.id):
        log.warning("RQ job %s is stale: job %s is at %s", rq_job.id, job_id, job.rq_id,
                    extra={"job_id": job_id})
        return SUPERSEDED
    run = TrainingRun(store, settings, job, rq_job.worker_name if rq_job else "inline")
    if job.cancel_requested:
        if store.checkpoint(job_id) is None:
            return run.cancel_unstarted()
        run.cancel.set()  # resume only to keep the checkpointed weights as the model
    status = run.run()
    if job.sweep_id and status != SUPERSEDED:  # a sweep's trial paused or ended
        sweeps.after_trial(store, settings, job.sweep_id)
    return status


class TrainingRun:
    """One attempt at a job: load data and network, fit, and record how it ended.

    Every write goes through the attempt (worker.attempts), which checks that it still owns
    the job: once the job has been handed on (this worker was presumed dead), ended or deleted,
    the run stops and writes nothing more. While Redis is unreachable (a restart), the run
    waits for it instead of failing; while Valkey is full (at its maxmemory), its writes wait
    and retry for up to settings.store_full_wait_s, then the run stops without writing and the
    reaper resumes the job from its checkpoint once there is room (StoreStillFull).
    """

    def __init__(self, store: Store, settings: Settings, job: JobRecord, worker_name: str | None):
        self.store, self.settings, self.job = store, settings, job
        self.job_id = job.id
        self.worker = worker_name or "worker"
        self.attempt = Attempt(store, settings, job, self.worker)
        self.cancel = threading.Event()    # the user asked to cancel
        self.lost = threading.Event()      # the job was handed to another attempt
        self.stopping = threading.Event()  # the run is over: the heartbeat stops
        self.paused = threading.Event()    # a sweep's trial reached its rung (job.pause_at)
        self.last_checkpoint = time.monotonic()
        self.metrics: dict = job.metrics or {}
        self.model_id = new_id("model")
        self.preparation = None          # fitted by _prepare under preprocessing "auto"
        self.assessment: Assessment | None = None    # held-out scores, made by _prepare
        self.log = ContextLogger(log, {"job_id": self.job_id, "tenant": job.tenant})

    def _patient(self, action, what: str):
        """patiently(action), waiting for a full Valkey too (settings.store_full_wait_s)."""
        return patiently(action, what, full_wait_s=self.settings.store_full_wait_s)

    # -- the attempt -------------------------------------------------------------------------
    def cancel_unstarted(self) -> str:
        """A queued job canceled before any epoch: end it canceled, if still queued for us."""
        try:
            self._patient(lambda: self.attempt.finish(
                JobStatus.CANCELED, owner=Owner(self.attempt.number, JobStatus.QUEUED)),
                "canceling the job")
        except AttemptLost as exc:
            self.log.warning("not canceling: %s", exc)
            return SUPERSEDED
        return JobStatus.CANCELED.value

    def run(self) -> str:
        now = time.time()
        started = {} if self.job.started_at else {"started_at": now}
        try:
            self._patient(lambda: self.attempt.start(
                worker=self.worker, attempt_started_at=now, **started), "starting the job")
        except AttemptLost as exc:
            self.log.warning("not starting: %s", exc)
            return SUPERSEDED
        self.log.info("training started on %s (attempt %d)", self.worker, self.attempt.number)
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True)
        heartbeat.start()
        try:
            net, X, Y, training = self._patient(self._prepare, "loading the data")
            net.fit(X, Y, self.assessment.engine_training(training),
                    on_epoch=lambda rec: self._on_epoch(net, rec),
                    should_stop=self._should_stop, target_scale=self.assessment.target_scale)
        except AttemptLost as exc:
            self.lost.set()
            self.log.warning("stopping without writing: %s", exc)
        except StoreStillFull as exc:
            return self._stall(exc)
        except engine.TrainingDiverged as exc:
            return self._fail(str(exc), getattr(exc, "epoch", None))
        except JobTimeoutException:
            return self._fail(f"the job ran longer than its time limit of "
                              f"{self.job.timeout_s} s; raise `timeout_s` in the job "
                              f"(at most BACKPROP_JOB_TIMEOUT_S={self.settings.job_timeout_s}) "
                              f"or train for fewer epochs", self._epochs_recorded())
        except (DataMissing, ValueError) as exc:
            return self._fail(str(exc), None)
        except Exception as exc:  # a bug of ours: fail the job, keep the worker
            self.log.exception("job crashed")
            return self._fail(f"internal error while training: {type(exc).__name__}: {exc}",
                              None)
        finally:
            self.stopping.set()
        if self.lost.is_set():
            return SUPERSEDED
        more = not net.stopped_early and net.epochs_done < training.epochs
        if self.paused.is_set() and more and not self.cancel.is_set():
            return self._pause(net)
        if PREEMPTED.is_set() and more:
            return self._requeue(net)
        return self._finish(net, JobStatus.CANCELED if net.stopped else JobStatus.SUCCEEDED)

    def _prepare(self):
        job = self.job
        spec = engine.NetworkSpec.model_validate(job.network)
        training = engine.TrainingSpec.model_validate(job.training)
        schema, arrays = self._data()
        seed = training.seed if training.seed is not None else job.seed
        kept, test = engine.split.test_split_rows(len(arrays[2]), training.test_split, seed)
        if len(test):      # held out of the preparation, the training and early stopping
            held_out = tuple(a[test] for a in arrays)
            arrays = tuple(a[kept] for a in arrays)
        X, Y, self.preparation = prepared_arrays(schema, *arrays, spec, training,
                                                 job.preprocessing, seed=job.seed,
                                                 dtype=job.dtype)
        self.assessment = Assessment(schema, spec, job.preprocessing, job.dtype,
                                     self.preparation, training, X, Y,
                                     held_out if len(test) else None)
        checkpoint = self.store.checkpoint(self.job_id)
        if checkpoint is not None:
            net = engine.Network.from_bytes(checkpoint, device=job.device)
            self.log.info("resuming from checkpoint at epoch %d", net.epochs_done)
        else:
            net = engine.Network(spec, n_inputs=X.shape[1], seed=job.seed, dtype=job.dtype,
                                 device=job.device)
        # Epochs recorded after the checkpoint will be trained again: drop them, so the
        # history has neither gaps nor duplicates.
        self.attempt.rewind(net.epochs_done)
        self._at_rung(net.epochs_done)  # resumed at its rung: pause before any epoch
        return net, X, Y, training

    def _data(self) -> tuple[DatasetSchema, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The schema and (numeric, codes, y) arrays of the job's dataset or inline data."""
        dataset_id = self.job.dataset_id
        if dataset_id:
            dataset, arrays = self.store.dataset(None, dataset_id), \
                self.store.dataset_arrays(dataset_id)
            if dataset is None or arrays is None:
                raise DataMissing(f"dataset {dataset_id} was deleted before the job could load "
                                  f"it; upload it again and resubmit")
            return dataset.table_schema, arrays
        inline = self.store.job_inline_data(self.job_id)
        if inline is None:
            raise DataMissing("the job's inline data is gone (the job was deleted?); submit it "
                              "again")
        X, y = inline
        return (arrays_schema(X, y, self.settings.max_categories),
                (X, np.empty((len(X), 0), dtype=np.int32), y))

    # -- callbacks from the engine -----------------------------------------------------------
    def _on_epoch(self, net: engine.Network, record: dict) -> None:
        metrics = {k: v for k, v in record.items() if k not in EPOCH_DETAILS}
        self.metrics = metrics
        self._at_rung(record["epoch"])
        if self._patient(lambda: self.attempt.append_epoch(record, epoch=record["epoch"],
                                                           metrics=metrics),
                         "recording an epoch"):
            self.cancel.set()
        if time.monotonic() - self.last_checkpoint >= self.settings.checkpoint_every_s:
            data = net.save_bytes()
            self._patient(lambda: self.attempt.checkpoint(data, net.epochs_done),
                          "writing a checkpoint")
            self.last_checkpoint = time.monotonic()
        # Debug: a log tells state changes; every epoch is in the job's history already.
        self.log.debug("epoch %d loss %.6g", record["epoch"], record["loss"],
                       extra={"epoch": record["epoch"]})

    def _at_rung(self, epoch: int) -> None:
        """A trial stops at its rung: fit stops before the next epoch's first batch, so the
        checkpoint holds the rung's weights and a resume repeats no epoch."""
        if self.job.pause_at is not None and epoch >= self.job.pause_at:
            self.paused.set()

    def _should_stop(self) -> bool:
        return (self.cancel.is_set() or self.lost.is_set() or PREEMPTED.is_set()
                or self.paused.is_set())

    def _heartbeat(self) -> None:
        """Renew the lease and learn of cancel requests, whatever an epoch's length."""
        # At least three renewals per lease, whatever BACKPROP_HEARTBEAT_S says.
        interval = min(self.settings.heartbeat_s, self.settings.lease_s / 3)
        while not self.stopping.wait(interval):
            try:
                if self.attempt.renew():
                    self.cancel.set()
            except AttemptLost as exc:
                if not self.stopping.is_set():  # else the run itself just closed the job
                    self.log.warning("%s; stopping", exc)
                    self.lost.set()
                return
            except Exception:  # Redis away for a moment: the lease has slack, try again
                self.log.warning("lease renewal failed", exc_info=True)

    # -- endings (none is written once the job was handed on) ------------------------------
    def _epochs_recorded(self) -> int:
        return self._patient(lambda: self.store.epochs_recorded(self.job_id), "counting epochs")

    def _end(self, what: str, write) -> bool:
        """patiently(write), False (nothing written) when the attempt lost the job or Redis
        stayed full (the job is then resumed from its checkpoint: _stall)."""
        try:
            self._patient(write, what)
        except AttemptLost as exc:
            self.log.warning("not %s: %s", what, exc)
            return False
        except StoreStillFull as exc:
            self._stall(exc)
            return False
        return True

    def _stall(self, exc: StoreStillFull) -> str:
        """Stop writing and let the lease lapse: the reaper hands the job to a next attempt,
        which resumes from the last checkpoint, once Redis takes writes again."""
        self.lost.set()
        self.stopping.set()  # no more lease renewals
        self.log.warning("%s; stopping: the job resumes from its checkpoint once Redis has "
                         "room", exc)
        return STALLED

    def _fail(self, message: str, epoch: int | None) -> str:
        if self.lost.is_set():
            return SUPERSEDED
        self.log.warning("job failed: %s", message)
        if not self._end("recording the failure", lambda: self.attempt.finish(
                JobStatus.FAILED, error={"message": message, "epoch": epoch})):
            return SUPERSEDED
        return JobStatus.FAILED.value

    def _requeue(self, net: engine.Network) -> str:
        """Graceful worker shutdown: checkpoint, and put the job back at the queue's front."""
        data = net.save_bytes()
        if not self._end("requeueing the job",
                         lambda: self.attempt.requeue(data, net.epochs_done)):
            return SUPERSEDED
        self.log.info("worker shutting down: checkpointed at epoch %d and requeued",
                      net.epochs_done)
        return "requeued"

    def _kept_metrics(self, net: engine.Network) -> tuple[int | None, dict]:
        """(the epoch whose weights the net holds, that epoch's metrics): what the model is,
        not what the last epoch was. A canceled job keeps the weights it had then."""
        kept = net.kept_epoch or net.epochs_done
        if not kept:
            return None, self.metrics
        records = patiently(lambda: self.store.history(self.job_id, kept - 1)[:1],
                            "reading the kept epoch")
        record = records[0] if records and records[0]["epoch"] == kept else None
        if record is None:
            return kept, self.metrics
        return kept, {k: v for k, v in record.items() if k not in EPOCH_DETAILS}

    def _pause(self, net: engine.Network) -> str:
        """A sweep's trial at its rung: checkpoint it and park it for the sweep to decide."""
        data = net.save_bytes()
        if not self._end("pausing at the rung", lambda: sweeps.pause(
                self.store, self.settings, self.attempt, data, net.epochs_done)):
            return SUPERSEDED
        self.log.info("paused at rung epoch %d for sweep %s", net.epochs_done,
                      self.job.sweep_id)
        return JobStatus.PAUSED.value

    def _finish(self, net: engine.Network, status: JobStatus) -> str:
        """Store the model (a canceled job keeps the weights it had) and close the job."""
        model_id = self.model_id if net.epochs_done > 0 else None
        kept, metrics = self._kept_metrics(net)
        model = None
        if model_id:
            assessed = self.assessment.of(net) if self.assessment is not None else {}
            meta = model_meta(model_id, self.job, net, metrics, self.preparation).model_copy(
                update={"kept_epoch": kept, **assessed})
            model = (meta, model_weights(net))
        if not self._end("storing the model", lambda: self.attempt.finish(
                status, model, model_id=model_id, metrics=metrics, epoch=net.epochs_done,
                kept_epoch=kept,
                stopped_early=bool(getattr(net, "stopped_early", False)))):
            return SUPERSEDED
        self.log.info("job %s", status.value)
        return status.value


EPOCH_DETAILS = frozenset({"epoch", "learning_rate", "seconds", "grad_norms", "phi_prime_mean"})
"""Fields of an epoch record that describe the epoch's training, not the model's quality."""


def model_weights(net: engine.Network) -> bytes:
    arrays = {}
    for i, (W, b) in enumerate(net.params):
        arrays[f"W{i}"], arrays[f"b{i}"] = to_host(W), to_host(b)
    return arrays_to_npz(arrays)


def to_host(array) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array (CuPy arrays have .get())."""
    return array.get() if hasattr(array, "get") else np.asarray(array)


def model_meta(model_id: str, job: JobRecord, net: engine.Network, metrics: dict,
               preparation=None) -> ModelRecord:
    spec = net.spec
    target = preparation.target if preparation is not None else None
    return ModelRecord(
        id=model_id, tenant=job.tenant, job_id=job.id,
        network=spec.model_dump(mode="json", exclude_unset=True), n_inputs=net.n_inputs,
        n_outputs=net.n_outputs, task=task_of(spec), dtype=str(net.dtype),
        epochs_trained=net.epochs_done, metrics=metrics, preparation=preparation,
        input_columns=None if preparation is None else input_columns(preparation),
        classes=getattr(target, "classes", None),
        target=None if target is None else ", ".join(getattr(target, "names", None)
                                                      or [target.name]))
