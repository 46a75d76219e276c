"""Redis, queues, workers and job tracking."""
