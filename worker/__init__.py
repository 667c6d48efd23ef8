"""The training workers: RQ job execution over the shared core (core/) and the engine."""
