"""Typed records of what the service stores, and the one encoding of a record as a Redis hash.

A record is a Redis hash with one field per attribute, each value JSON (`"running"`, `3`,
`true`), so Lua scripts and single-field updates can read or write one field without the rest.
`Record.encode` / `decode` / `encode_fields` / `decode_field` are the only code that turns
records into hash fields and back; core.store calls them, and nothing else reads or writes a
record's hash (jobs, datasets, models). To add an attribute, add a field with a default to the
class: nothing else changes.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from core.dataset_schema import DatasetSchema
from engine.preparation import Preparation, PreparationSpec


class JobStatus(str, Enum):
    """The one list of job states (the API's `status` and `?status=` use it too)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    # A sweep's trial checkpointed at a rung, in no queue: the sweep scheduler
    # (core.sweep_scheduler) resumes it or stops it.
    PAUSED = "paused"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

ID_PREFIXES = {"dataset": "ds", "job": "job", "model": "mdl", "sweep": "swp"}
ID_BYTES = 12  # 96 random bits: 16 URL-safe base64 characters
ID_FORMATS = {kind: re.compile(rf"{prefix}_[A-Za-z0-9_-]{{{ID_BYTES * 4 // 3}}}")
              for kind, prefix in ID_PREFIXES.items()}


def new_id(kind: str) -> str:
    """A random, unguessable id such as `job_Xy3...` (96 random bits)."""
    return f"{ID_PREFIXES[kind]}_{secrets.token_urlsafe(ID_BYTES)}"


def is_id(kind: str, value: str) -> bool:
    """Whether `value` has the form of a `kind` id (what new_id makes); checked before an id
    from a request reaches Redis, where `job_x:history` would name another key."""
    return ID_FORMATS[kind].fullmatch(value) is not None


class Record(BaseModel):
    """A stored record: validated when read and when a field is written."""

    # Unknown fields are dropped on read, so a record written by a newer version still reads.
    # A field stored under another name (an alias) can be given by either name.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def encode(self) -> dict[str, str]:
        """The record as hash fields (every attribute, JSON-encoded, under its stored name)."""
        return {name: json.dumps(value)
                for name, value in self.model_dump(mode="json", by_alias=True).items()}

    @classmethod
    def decode(cls, raw: Mapping[bytes, bytes], skip: frozenset[bytes] = frozenset()):
        """The record from HGETALL's answer (fields in `skip`, such as binary ones, left out)."""
        return cls.model_validate({name.decode(): json.loads(value)
                                   for name, value in raw.items() if name not in skip})

    @classmethod
    def encode_fields(cls, **fields: Any) -> dict[str, str]:
        """Some attributes as hash fields, each checked against its declared type: what a
        partial update (HSET of a few fields) writes."""
        encoded = {}
        for name, value in fields.items():
            adapter = _field_adapter(cls, name)
            encoded[name] = json.dumps(adapter.dump_python(adapter.validate_python(value),
                                                           mode="json"))
        return encoded

    @classmethod
    def decode_field(cls, name: str, raw: bytes) -> Any:
        """One attribute from its hash field (what HGET answers), checked against its type."""
        return _field_adapter(cls, name).validate_python(json.loads(raw))


@lru_cache(maxsize=None)
def _field_adapter(cls: type[Record], name: str) -> TypeAdapter:
    if name not in cls.model_fields:
        raise ValueError(f"{cls.__name__} has no field {name!r}")
    return TypeAdapter(cls.model_fields[name].annotation)


class JobError(BaseModel):
    message: str
    epoch: int | None = None


class JobRecord(Record):
    """A training job, as the API writes it at submit and the workers update it."""

    id: str = Field(default_factory=lambda: new_id("job"))
    tenant: str
    status: JobStatus = JobStatus.QUEUED
    # The engine's NetworkSpec / TrainingSpec as JSON (what the user sent, unset fields left
    # out), validated by the engine when the worker builds the network.
    network: dict[str, Any]
    training: dict[str, Any]
    dataset_id: str | None = None
    preprocessing: PreparationSpec = Field(default_factory=PreparationSpec)
    device: Literal["cpu", "gpu", "auto"] = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    timeout_s: int
    n_samples: int = 0
    n_inputs: int = 0
    data_bytes: int = Field(0, description="inline data stored with the job (tenant quota)")
    # Tenant quota (core.quota): what the job's record, history and checkpoint hold now, and
    # what is still reserved for what it will write (given back at its end).
    stored_bytes: int = 0
    reserved_bytes: int = 0
    epochs: int
    epoch: int = 0
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    attempt_started_at: float | None = None
    finished_at: float | None = None
    # Which attempt owns the job (worker.attempts), how many lost workers it survived, its RQ
    # job, the worker on it now.
    attempt: int = 1
    restarts: int = 0
    rq_id: str | None = None
    worker: str | None = None
    # Waiting in its tenant's backlog (core.fairness), not yet in an RQ queue.
    backlogged: bool = False
    checkpoint_epoch: int | None = None
    checkpoint_at: float | None = None
    metrics: dict[str, Any] | None = None
    error: JobError | None = None
    model_id: str | None = None
    stopped_early: bool = False
    kept_epoch: int | None = Field(None, description="the epoch whose weights the model keeps")
    cancel_requested: bool = False
    # A sweep's trial (core.sweeps): the sweep, and the epoch at which the worker checkpoints
    # the trial and hands it back to the sweep scheduler (None: train to the end).
    sweep_id: str | None = None
    pause_at: int | None = None

    @property
    def finished(self) -> bool:
        return self.status.finished

    def remaining_timeout(self) -> int:
        """What is left of the time limit, counted from the job's first start."""
        started = self.started_at or time.time()
        return max(int(self.timeout_s - (time.time() - started)), 1)


class DatasetSummary(Record):
    """A dataset's meta without its schema: what a list of datasets shows, read with HMGET of
    these fields alone (a schema holds every column; 100,000 of them stalled a listing)."""

    id: str = Field(default_factory=lambda: new_id("dataset"))
    tenant: str
    name: str = "dataset"
    source: str = Field("json", description="csv, parquet, records, npz or json")
    n_samples: int = 0
    n_features: int = 0
    n_outputs: int = 1
    classes: int | None = None
    dtype: Literal["float32", "float64"] = "float32"
    created_at: float = Field(default_factory=time.time)
    bytes: int = 0
    sha256: str = ""


class DatasetRecord(DatasetSummary):
    """An uploaded dataset's meta (its arrays are stored under keys of their own: core.store).
    `bytes` and `sha256` are filled in by the store as it writes the arrays."""

    # Stored and shown as `schema`, a name pydantic's BaseModel keeps for itself.
    table_schema: DatasetSchema = Field(alias="schema")


class ModelRecord(Record):
    """A trained model's meta, as a job's end writes it; its weights (npz bytes) are a binary
    field of the same hash that the store reads and writes apart (WEIGHTS_FIELD)."""

    id: str = Field(default_factory=lambda: new_id("model"))
    tenant: str
    job_id: str | None = None
    # The engine's NetworkSpec as JSON (unset fields left out), as the job was given it.
    network: dict[str, Any] = Field(default_factory=dict)
    n_inputs: int = 0
    n_outputs: int = 0
    task: Literal["classification", "multilabel", "regression"] = "regression"
    dtype: Literal["float32", "float64"] = "float32"
    epochs_trained: int = 0
    created_at: float = Field(default_factory=time.time)
    metrics: dict[str, Any] | None = None
    preparation: Preparation | None = None
    input_columns: list[dict[str, Any]] | None = None
    classes: list[str] | list[int] | list[float] | None = None
    target: str | None = Field(None, description="the target column(s), comma-separated")
    # What the job learnt about the model (worker.assessment): whose weights it keeps, its
    # scores on the job's test rows, and permutation importance per raw column.
    kept_epoch: int | None = None
    test_metrics: dict[str, Any] | None = None
    test_confusion_matrix: dict[str, Any] | None = None
    test_rows: int = 0
    feature_importance: list[dict[str, Any]] | None = None
    importance_rows: Literal["test", "validation"] | None = None


@dataclass(frozen=True)
class Owner:
    """Who may write a job: attempt `attempt`, while the job is in `status`. Every write an
    attempt makes checks this inside its transaction (worker.attempts), so a worker whose job
    was handed on, ended or deleted changes nothing."""

    attempt: int
    status: JobStatus = JobStatus.RUNNING

    def holds(self, job: JobRecord | None) -> bool:
        return job is not None and job.attempt == self.attempt and job.status == self.status
