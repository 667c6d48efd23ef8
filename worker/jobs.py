"""The RQ job function: train one network on one dataset, reporting every epoch to Redis.

`train(job_id)` takes only the job id (JSON-safe), so a test can call it directly as well as
through a worker. Everything it needs is in the job's meta record written by the API.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from rq import get_current_job
from rq.timeouts import JobTimeoutException

import engine
from worker import queues
from worker.codec import arrays_to_npz
from worker.data import task_of, training_arrays
from worker.logs import ContextLogger
from worker.settings import Settings, get_settings
from worker.status import JobStatus, new_id
from worker.store import Store, is_finished

log = logging.getLogger("backprop.worker")

# Set by the work horse's SIGRTMIN handler when its worker is asked to shut down (SIGTERM):
# the job then checkpoints and goes back to the queue instead of dying with the worker.
PREEMPTED = threading.Event()


class DataMissing(Exception):
    """The job's dataset was deleted before the job could load it."""


def train(job_id: str) -> str:
    """Run (or resume) job `job_id`; returns the status it ended in (or `requeued`)."""
    settings = get_settings()
    rq_job = get_current_job()
    connection = rq_job.connection if rq_job is not None else queues.connect(settings)
    store = Store(connection, settings.key_prefix)
    meta = store.job(None, job_id)
    if meta is None:
        log.warning("job %s is gone; nothing to train", job_id, extra={"job_id": job_id})
        return "missing"
    if is_finished(meta):
        return meta["status"]
    run = TrainingRun(store, settings, meta, rq_job.worker_name if rq_job else "inline")
    if store.cancel_requested(job_id):
        if store.checkpoint(job_id) is None:
            store.finish_job(job_id, JobStatus.CANCELED, settings.result_ttl_s)
            return JobStatus.CANCELED.value
        run.canceled.set()  # resume only to keep the checkpointed weights as the model
    return run.run()


class TrainingRun:
    """One attempt at a job: load data and network, fit, and record how it ended."""

    def __init__(self, store: Store, settings: Settings, meta: dict, worker_name: str | None):
        self.store, self.settings, self.meta = store, settings, meta
        self.job_id: str = meta["id"]
        self.worker = worker_name or "worker"
        self.canceled = threading.Event()
        self.last_checkpoint = time.monotonic()
        self.metrics: dict = meta.get("metrics") or {}
        self.log = ContextLogger(log, {"job_id": self.job_id, "tenant": meta["tenant"]})

    # -- the attempt -------------------------------------------------------------------------
    def run(self) -> str:
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True)
        try:
            net, X, Y, training = self._prepare()
            self._mark_running(net)
            heartbeat.start()
            net.fit(X, Y, training, on_epoch=lambda rec: self._on_epoch(net, rec),
                    should_stop=self._should_stop)
        except engine.TrainingDiverged as exc:
            return self._fail(str(exc), getattr(exc, "epoch", None))
        except JobTimeoutException:
            return self._fail(f"the job ran longer than its time limit of "
                              f"{self.meta['timeout_s']} s; raise `timeout_s` in the job "
                              f"(at most BACKPROP_JOB_TIMEOUT_S={self.settings.job_timeout_s}) "
                              f"or train for fewer epochs", self._epochs_recorded())
        except (DataMissing, ValueError) as exc:
            return self._fail(str(exc), None)
        except Exception as exc:  # a bug of ours: fail the job, keep the worker
            self.log.exception("job crashed")
            return self._fail(f"internal error while training: {type(exc).__name__}: {exc}",
                              None)
        finally:
            self.canceled.set()  # also stops the heartbeat thread
        if PREEMPTED.is_set() and not net.stopped_early and net.epochs_done < training.epochs:
            return self._requeue(net)
        return self._finish(net, JobStatus.CANCELED if net.stopped else JobStatus.SUCCEEDED)

    def _prepare(self):
        spec = engine.NetworkSpec.model_validate(self.meta["network"])
        training = engine.TrainingSpec.model_validate(self.meta["training"])
        arrays = (self.store.dataset_arrays(self.meta["dataset_id"]) if self.meta.get("dataset_id")
                  else self.store.job_inline_data(self.job_id))
        if arrays is None:
            raise DataMissing(f"dataset {self.meta.get('dataset_id')} was deleted before the "
                              f"job could load it; upload it again and resubmit")
        X, Y = training_arrays(spec, *arrays, dtype=self.meta.get("dtype", "float32"))
        checkpoint = self.store.checkpoint(self.job_id)
        if checkpoint is not None:
            net = engine.Network.from_bytes(checkpoint, device=self.meta.get("device", "cpu"))
            self.log.info("resuming from checkpoint at epoch %d", net.epochs_done)
        else:
            net = engine.Network(spec, n_inputs=X.shape[1], seed=self.meta.get("seed", 0),
                                 dtype=self.meta.get("dtype", "float32"),
                                 device=self.meta.get("device", "cpu"))
        # Epochs recorded after the checkpoint will be trained again: drop them, so the
        # history has neither gaps nor duplicates.
        self.store.trim_history(self.job_id, net.epochs_done)
        return net, X, Y, training

    def _mark_running(self, net: engine.Network) -> None:
        now = time.time()
        fields = {"status": JobStatus.RUNNING.value, "worker": self.worker,
                  "attempt_started_at": now, "epoch": net.epochs_done}
        if not self.meta.get("started_at"):
            fields["started_at"] = now
        pipe = self.store.r.pipeline(transaction=True)
        pipe.set(self.store.keys.job_lease(self.job_id), self.worker,
                 px=int(self.settings.lease_s * 1000))
        self.store.update_job(self.job_id, pipe, **fields)
        pipe.execute()
        self.log.info("training started on %s", self.worker)

    # -- callbacks from the engine -----------------------------------------------------------
    def _on_epoch(self, net: engine.Network, record: dict) -> None:
        metrics = {k: record.get(k) for k in ("loss", "val_loss", "metric", "metric_name",
                                               "val_metric")}
        self.metrics = metrics
        if self.store.append_epoch(self.job_id, record, epoch=record["epoch"], metrics=metrics):
            self.canceled.set()
        if time.monotonic() - self.last_checkpoint >= self.settings.checkpoint_every_s:
            self._checkpoint(net)
        self.log.info("epoch %d loss %.6g", record["epoch"], record["loss"],
                      extra={"epoch": record["epoch"]})

    def _should_stop(self) -> bool:
        return self.canceled.is_set() or PREEMPTED.is_set()

    def _heartbeat(self) -> None:
        """Renew the lease and learn of cancel requests, whatever an epoch's length."""
        while not self.canceled.wait(self.settings.heartbeat_s):
            try:
                if self.store.renew_lease(self.job_id, self.worker, self.settings.lease_s):
                    self.canceled.set()
            except Exception:  # Redis away for a moment: the lease has slack, try again
                self.log.warning("lease renewal failed", exc_info=True)

    def _checkpoint(self, net: engine.Network) -> None:
        self.store.put_checkpoint(self.job_id, net.save_bytes(), net.epochs_done)
        self.last_checkpoint = time.monotonic()

    # -- endings -----------------------------------------------------------------------------
    def _epochs_recorded(self) -> int:
        return int(self.store.r.llen(self.store.keys.job_history(self.job_id)))

    def _fail(self, message: str, epoch: int | None) -> str:
        self.log.warning("job failed: %s", message)
        self.store.finish_job(self.job_id, JobStatus.FAILED, self.settings.result_ttl_s,
                              error={"message": message, "epoch": epoch})
        return JobStatus.FAILED.value

    def _requeue(self, net: engine.Network) -> str:
        """Graceful worker shutdown: checkpoint, and put the job back at the queue's front."""
        self._checkpoint(net)
        attempt = int(self.meta.get("attempt", 1)) + 1
        self.store.update_job(self.job_id, status=JobStatus.QUEUED.value, attempt=attempt,
                              rq_id=queues.rq_job_id(self.job_id, attempt))
        queues.enqueue_training(self.store.r, self.settings, self.job_id,
                                self.meta.get("device", "cpu"), attempt,
                                queues.remaining_timeout(self.meta), at_front=True)
        self.log.info("worker shutting down: checkpointed at epoch %d and requeued",
                      net.epochs_done)
        return "requeued"

    def _finish(self, net: engine.Network, status: JobStatus) -> str:
        """Store the model (a canceled job keeps the weights it had) and close the job."""
        model_id = None
        if net.epochs_done > 0:
            model_id = new_id("model")
            self.store.put_model(model_meta(model_id, self.meta, net, self.metrics),
                                 model_weights(net))
        self.store.finish_job(self.job_id, status, self.settings.result_ttl_s,
                              model_id=model_id, metrics=self.metrics, epoch=net.epochs_done,
                              stopped_early=bool(getattr(net, "stopped_early", False)))
        self.log.info("job %s", status.value)
        return status.value


def model_weights(net: engine.Network) -> bytes:
    arrays = {}
    for i, (W, b) in enumerate(net.params):
        arrays[f"W{i}"], arrays[f"b{i}"] = to_host(W), to_host(b)
    return arrays_to_npz(arrays)


def to_host(array) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array (CuPy arrays have .get())."""
    return array.get() if hasattr(array, "get") else np.asarray(array)


def model_meta(model_id: str, job: dict, net: engine.Network, metrics: dict) -> dict:
    spec = net.spec
    return {
        "id": model_id, "tenant": job["tenant"], "job_id": job["id"],
        "network": spec.model_dump(mode="json", exclude_unset=True), "n_inputs": net.n_inputs,
        "n_outputs": net.n_outputs, "task": task_of(spec), "dtype": str(net.dtype),
        "epochs_trained": net.epochs_done, "created_at": time.time(),
        "metrics": metrics,
    }
