"""Job states and id generation."""

from __future__ import annotations

import re
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
