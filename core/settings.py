"""The one settings class that the API and the workers read (env vars prefixed BACKPROP_)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every tunable of the service. `BACKPROP_REDIS_URL=redis://host:6379/0` and so on."""

    model_config = SettingsConfigDict(env_prefix="BACKPROP_", env_file=None, extra="ignore")

    redis_url: str | None = Field(
        None, description="Redis/Valkey URL; unset means `backprop up` starts an embedded one")
    data_dir: Path = Field(Path(".backprop"), description="embedded Valkey's data folder")
    redis_maxmemory: str = Field(
        "2gb", description="embedded Valkey's maxmemory (noeviction: past it, writes are "
                           "refused with 507 and nothing stored is dropped)")
    key_prefix: str = Field("bp", description="prefix of every Redis key the service writes")

    queue: str = Field("training", description="queue for CPU training jobs")
    gpu_queue: str = Field("training-gpu", description="queue for jobs asking for the GPU")

    api_keys: str = Field(
        "", description="comma-separated `tenant:key` pairs (or bare keys); empty = no auth")
    allow_public_without_keys: bool = Field(
        False, description="let the API serve a non-loopback address with no api_keys")

    max_body_bytes: int = Field(64 * 1024 * 1024, description="largest HTTP request body")
    max_dataset_rows: int = Field(1_000_000, description="most rows in one dataset")
    max_dataset_bytes: int = Field(512 * 1024 * 1024, description="largest dataset, as stored")
    max_dataset_columns: int = Field(
        5000, ge=2, description="most columns in one uploaded table (CSV header, Parquet "
                                "schema, keys of JSON records; target and ignored ones "
                                "included), refused before the rows are decoded")
    max_inline_rows: int = Field(10_000, description="most rows of inline job data")
    max_parameters: int = Field(50_000_000, description="most weights+biases in one network")
    max_layers: int = Field(64, description="most layers in one network")
    max_units: int = Field(65_536, description="most units in one layer")
    max_epochs: int = Field(100_000, description="most epochs in one job")
    max_batch_size: int = Field(1_000_000, description="largest batch size")
    max_training_bytes: int = Field(
        2**30, description="most memory a job may take to train, as estimated at submit "
                           "(network, batch and data)")
    max_predict_rows: int = Field(100_000, description="most rows in one predict request")
    predict_memory_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="most memory one predict may use: its decoded "
        "input (a JSON number takes about 40 bytes while parsed), its outputs, and the forward "
        "pass, which runs in chunks of rows that fit (rows x sum of layer widths x itemsize)")
    max_categories: int = Field(
        1000, description="most distinct values of a text column (more: free text, not a "
                          "category) and most classes of a target")
    max_tenant_bytes: int = Field(
        2 * 1024**3, ge=0, description="bytes one tenant may store (datasets, models, inline "
                                       "job data), all in Redis memory")
    max_active_jobs_per_tenant: int = Field(
        8, ge=1, description="jobs of one tenant queued for a worker or running at once; the "
                             "tenant's further jobs wait in its backlog")
    max_queued_jobs_per_tenant: int = Field(
        1, ge=1, description="jobs of one tenant waiting in a worker queue (not yet started) "
                             "at once, per queue; the next goes in as one starts, so workers "
                             "take tenants' jobs in turn: another tenant's job waits behind "
                             "at most this many of its jobs, plus those running")
    max_backlog_per_tenant: int = Field(
        100, ge=0, description="jobs of one tenant waiting in its backlog at once; a submit "
                               "past it is refused with 429 (each waiting job is a record "
                               "in Redis memory)")
    redis_reserve_bytes: int = Field(
        64 * 1024**2, ge=0, description="bytes of Valkey's maxmemory kept for running jobs: "
                                        "uploads and submits are refused (507) once used "
                                        "memory would come within this of maxmemory, so "
                                        "epochs, checkpoints and models still fit")
    store_full_wait_s: float = Field(
        600.0, gt=0, description="how long a running job waits (retrying, logged) for a full "
                                 "Valkey to take its writes again before it stops and is "
                                 "resumed from its checkpoint once there is room")

    job_timeout_s: int = Field(3600, description="a job running longer than this fails")
    result_ttl_s: int = Field(7 * 24 * 3600, description="how long finished jobs are kept")
    checkpoint_every_s: float = Field(5.0, description="least seconds between checkpoints")
    heartbeat_s: float = Field(2.0, description="how often a running job renews its lease")
    lease_s: float = Field(60.0, description="a running job silent this long is resumed")
    max_restarts: int = Field(3, description="resumes after lost workers before a job fails")

    model_cache_size: int = Field(32, description="models kept loaded in each API process")
    max_streams_per_tenant: int = Field(
        20, ge=1, description="job event streams one tenant may hold open per API process")
    max_streams: int = Field(
        200, ge=1, description="job event streams open at once per API process (each holds "
                               "one Redis connection of a pool of its own)")
    events_recheck_s: float = Field(
        5.0, description="seconds after which an idle job events stream re-reads the job")
    max_exports_per_tenant: int = Field(
        2, ge=1, description="model exports (ONNX, weights) one tenant may run at once per "
                             "API process; past it, 429 with Retry-After")
    max_exports: int = Field(
        4, ge=1, description="model exports running at once per API process (each holds "
                             "about one copy of the model's weights)")
    http_header_timeout_s: float = Field(
        10.0, gt=0, description="seconds a connection has to send a request's headers (from "
                                "connecting, or from its previous response) before it is "
                                "closed")
    http_body_timeout_s: float = Field(
        30.0, gt=0, description="seconds a request body may go without a byte arriving "
                                "before its connection is closed")
    max_connections: int = Field(
        1000, ge=1, description="open connections per API process; a connection past it "
                                "is closed at once (the oldest idle one makes room when "
                                "possible)")
    access_log: bool = Field(True, description="one JSON log line per HTTP request")
    api_blas_threads: int = Field(
        1, ge=0, description="BLAS threads per API process for predict (0 = every core); "
                             "scale predict with API processes (--api-workers) instead")
    worker_blas_threads: int = Field(
        0, ge=0, description="BLAS threads per training worker (0 = every core); with N "
                             "workers on one host, about cores / N")
    worker_nice: int = Field(
        10, ge=0, le=19, description="niceness of a training worker and its work horses: on a "
                                     "host shared with the API, requests come before training "
                                     "(0 = the API's priority); raised only, never lowered")
    worker_class: Literal["fork", "simple"] = Field(
        "fork", description="fork: a fresh work horse per job (RQ's Worker); simple: jobs run "
                            "in the worker process (no fork; a crash takes the worker down)")

    @property
    def tenant_keys(self) -> dict[str, str]:
        """API key -> tenant name. A bare key is its own tenant, named after a digest of the key
        (not its position, so editing the list never hands one tenant's data to another)."""
        keys: dict[str, str] = {}
        for item in (p.strip() for p in self.api_keys.split(",")):
            if not item:
                continue
            tenant, sep, key = item.partition(":")
            keys[key if sep else tenant] = (
                tenant if sep else "key-" + hashlib.sha256(item.encode()).hexdigest()[:12])
        return keys


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def env_name(field: str) -> str:
    """The environment variable of a Settings field (`max_body_bytes` ->
    `BACKPROP_MAX_BODY_BYTES`), derived from the model so that no module retypes it."""
    if field not in Settings.model_fields:
        raise KeyError(f"{field!r} is not a Settings field")
    return f"{Settings.model_config['env_prefix']}{field}".upper()


def settings_env(settings: Settings, *fields: str) -> dict[str, str]:
    """{env_name: value} of `fields` of `settings`, for a child process's environment."""
    return {env_name(f): _env_value(getattr(settings, f)) for f in fields}


def _env_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
