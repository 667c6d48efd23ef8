"""RQ job functions, the Redis store and the settings both processes read."""
