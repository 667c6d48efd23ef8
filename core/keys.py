"""Every Redis key name the service writes, in one place and one style: `{prefix}:{kind}:{id}`.

Nothing outside this module formats a key; tests/worker/test_keys.py checks that.
RQ's own keys (`rq:*`) belong to RQ.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix (settings.key_prefix), so test sessions can share a server."""

    prefix: str = "bp"

    # datasets: meta hash, arrays as raw .npy bytes
    def dataset(self, dataset_id: str) -> str:
        return f"{self.prefix}:dataset:{dataset_id}"

    def dataset_x(self, dataset_id: str) -> str:
        return f"{self.prefix}:dataset:{dataset_id}:x"

    def dataset_y(self, dataset_id: str) -> str:
        return f"{self.prefix}:dataset:{dataset_id}:y"

    def dataset_codes(self, dataset_id: str) -> str:
        """Categorical columns as int32 codes (worker/schema.py)."""
        return f"{self.prefix}:dataset:{dataset_id}:codes"

    def datasets_of(self, tenant: str) -> str:
        """Sorted set of a tenant's dataset ids, scored by creation time."""
        return f"{self.prefix}:tenant:{tenant}:datasets"

    # jobs: meta hash, history list of JSON epochs, binary checkpoint, cancel flag, lease
    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def job_history(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:history"

    def job_checkpoint(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:checkpoint"

    def job_data(self, job_id: str) -> str:
        """Inline data of a job, stored as an anonymous dataset's npy bytes (hash x, y)."""
        return f"{self.prefix}:job:{job_id}:data"

    def job_lease(self, job_id: str) -> str:
        """Exists while a worker is alive on the job (expires after settings.lease_s)."""
        return f"{self.prefix}:job:{job_id}:lease"

    def job_events(self, job_id: str) -> str:
        """Pub/sub channel with one message per epoch and one at the end."""
        return f"{self.prefix}:job:{job_id}:events"

    def jobs_of(self, tenant: str) -> str:
        """Sorted set of a tenant's job ids, scored by submit time."""
        return f"{self.prefix}:tenant:{tenant}:jobs"

    def running_jobs(self) -> str:
        """Set of job ids whose status is running: what the reaper scans for lost leases."""
        return f"{self.prefix}:jobs:running"

    def jobs_expiring(self) -> str:
        """Sorted set of finished job ids, scored by when they are deleted (the reaper deletes
        them and gives their bytes back to their tenant's quota)."""
        return f"{self.prefix}:jobs:expiring"

    def jobs_in_status(self, tenant: str, status: str) -> str:
        """Sorted set of a tenant's job ids in one status, scored by submit time (?status=)."""
        return f"{self.prefix}:tenant:{tenant}:jobs:{status}"

    # per-tenant fairness and quotas (core.fairness)
    def tenant_active(self, tenant: str) -> str:
        """Set of a tenant's job ids that are in an RQ queue or running."""
        return f"{self.prefix}:tenant:{tenant}:active"

    def tenant_backlog(self, tenant: str) -> str:
        """List of a tenant's job ids waiting for one of its active slots, oldest first."""
        return f"{self.prefix}:tenant:{tenant}:backlog"

    def tenant_waiting(self, tenant: str, queue: str) -> str:
        """Set of a tenant's job ids admitted into RQ queue `queue` and not yet started."""
        return f"{self.prefix}:tenant:{tenant}:waiting:{queue}"

    def backlogged_tenants(self) -> str:
        """Set of tenants whose backlog is not empty: what the reaper checks for promotions."""
        return f"{self.prefix}:tenants:backlogged"

    def tenant_bytes(self, tenant: str) -> str:
        """Integer: bytes a tenant stores (datasets, models, inline job data)."""
        return f"{self.prefix}:tenant:{tenant}:bytes"

    # models: meta hash with the weights as npz bytes in field `weights`
    def model(self, model_id: str) -> str:
        return f"{self.prefix}:model:{model_id}"

    def models_of(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:models"

    def models_deleted(self) -> str:
        """Pub/sub channel with the id of every deleted model: API processes evict it."""
        return f"{self.prefix}:models:deleted"

    # sweeps (core.sweeps): record hash, per-tenant index, the set of sweeps still running
    def sweep(self, sweep_id: str) -> str:
        return f"{self.prefix}:sweep:{sweep_id}"

    def sweeps_of(self, tenant: str) -> str:
        """Sorted set of a tenant's sweep ids, scored by creation time."""
        return f"{self.prefix}:tenant:{tenant}:sweeps"

    def sweeps_running(self) -> str:
        """Set of sweep ids not yet ended: what the reaper advances after a crash."""
        return f"{self.prefix}:sweeps:running"

    # process bookkeeping
    def reaper_lock(self) -> str:
        return f"{self.prefix}:lock:reaper"

    def counters(self) -> str:
        """Hash of service-wide counters (epochs trained, jobs by final state)."""
        return f"{self.prefix}:counters"
