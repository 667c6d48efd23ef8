"""Job event streams open in this API process, by tenant (each holds a Redis connection)."""

from __future__ import annotations

from collections import Counter

from core.settings import env_name
from service.errors import ApiError


class StreamSlots:
    """Open streams of this API process, by tenant: each holds a Redis connection while it
    lasts, so one tenant may hold only settings.max_streams_per_tenant of them, and all
    together settings.max_streams."""

    def __init__(self, per_tenant: int, total: int):
        self.per_tenant, self.total = per_tenant, total
        self.open: Counter[str] = Counter()

    def take(self, tenant: str) -> None:
        if self.open[tenant] >= self.per_tenant:
            raise ApiError(429, f"this API key has {self.open[tenant]} event streams open, "
                                f"the most one tenant may ({env_name('max_streams_per_tenant')}); "
                                f"close one first, or poll GET /v1/jobs/{{id}}",
                           headers={"Retry-After": "5"})
        if self.in_use >= self.total:
            raise ApiError(503, f"this API process has {self.total} event streams open, its "
                                f"most ({env_name('max_streams')}); retry shortly, or poll "
                                f"GET /v1/jobs/{{id}}", headers={"Retry-After": "5"})
        self.open[tenant] += 1

    @property
    def in_use(self) -> int:
        return sum(self.open.values())

    def give_back(self, tenant: str) -> None:
        self.open[tenant] -= 1
        if self.open[tenant] <= 0:
            del self.open[tenant]
