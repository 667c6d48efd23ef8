"""Job states and id generation."""

from __future__ import annotations

import secrets
from enum import Enum


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

ID_PREFIXES = {"dataset": "ds", "job": "job", "model": "mdl"}


def new_id(kind: str) -> str:
    """A random, unguessable id such as `job_Xy3...` (96 random bits)."""
    return f"{ID_PREFIXES[kind]}_{secrets.token_urlsafe(12)}"
