"""What the API refused, as typed exceptions: every error answer becomes an ApiError subclass
carrying the API's message (it says what to change) and the field it names."""

from __future__ import annotations

import httpx


class ApiError(Exception):
    """What the API refused, and why: `status` (HTTP, or None when no answer came), the API's
    `message` (it says what to change) and the `field` it names, if any."""

    def __init__(self, status: int | None, message: str, field: str | None = None,
                 details: list | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.details = status, message, field, details

    def __str__(self) -> str:
        return self.message if self.status is None else f"{self.message} (HTTP {self.status})"


class NotFound(ApiError):
    """404: no such dataset, job or model for this API key."""


class Unauthorized(ApiError):
    """401/403: the API key is missing or not valid."""


class ValidationFailed(ApiError):
    """400/413/415/422: the request does not fit; `field` names what to change."""


class ServiceUnavailable(ApiError):
    """503, or no answer at all: the service, its Redis or its workers are not reachable."""


class JobFailed(ApiError):
    """The job ended as failed: `message` and `epoch` are the worker's, `job` the final Job."""

    def __init__(self, job):
        error = job.info.get("error") or {}
        self.job, self.epoch = job, error.get("epoch")
        where = f" at epoch {self.epoch}" if self.epoch else ""
        super().__init__(None, f"job {job.id} failed{where}: {error.get('message', 'no reason')}")


ERRORS_BY_STATUS = {400: ValidationFailed, 401: Unauthorized, 403: Unauthorized, 404: NotFound,
                    413: ValidationFailed, 415: ValidationFailed, 422: ValidationFailed,
                    503: ServiceUnavailable}


def error_from(answer: httpx.Response) -> ApiError:
    """The typed error for an HTTP error answer (the API's JSON error body when it has one)."""
    try:
        error = answer.json()["error"]
        message, field, details = error["message"], error.get("field"), error.get("details")
    except (ValueError, KeyError, TypeError):
        message, field, details = answer.text.strip()[:500] or answer.reason_phrase, None, None
    kind = ERRORS_BY_STATUS.get(answer.status_code,
                                ServiceUnavailable if answer.status_code >= 500 else ApiError)
    return kind(answer.status_code, message, field, details)
