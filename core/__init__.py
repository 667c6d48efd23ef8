"""The shared core under the API (service/) and the workers (worker/): typed stored records, the
Redis store and its key names, queues, settings, quotas and fairness. It imports engine/ and
nothing of service/ or worker/."""
