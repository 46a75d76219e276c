"""Queue names, per-queue pause, and the status table of `contentq queue status`."""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from contentq.clock import now, parse
from contentq.errors import ConfigError
from contentq.runtime.context import Runtime
from contentq.runtime.liveness import alive_workers, workers_per_queue
from contentq.settings import QUEUES
from contentq.store import audit

PAUSED_KEY = "contentq:paused"


def check_queue(name: str) -> str:
    if name not in QUEUES:
        raise ConfigError(f"unknown queue {name!r}: choose one of {', '.join(QUEUES)}")
    return name


def pause(conn: redis.Redis, name: str) -> bool:
    return bool(conn.sadd(PAUSED_KEY, check_queue(name)))


def resume(conn: redis.Redis, name: str) -> bool:
    return bool(conn.srem(PAUSED_KEY, check_queue(name)))


def set_paused(runtime: Runtime, name: str, paused: bool) -> bool:
    """Pause or resume a queue as an operator: whether it changed; a change is in the audit trail with its actor."""
    changed = (pause if paused else resume)(runtime.redis, name)
    if changed:
        audit.record(runtime.store, "queue", name, "paused" if paused else "resumed")
    return changed


def paused_queues(conn: redis.Redis) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else str(m) for m in conn.smembers(PAUSED_KEY)}


def queue_status(runtime: Runtime) -> list[dict[str, Any]]:
    """Per queue: SQLite counts (the truth) beside what Redis holds, workers, and the oldest wait."""
    conn = runtime.redis
    store = runtime.store
    paused = paused_queues(conn)
    stamp = now()
    counts: dict[tuple[str, str], int] = {}
    for row in store.query(
        "SELECT queue, CASE WHEN status = 'queued' AND next_retry_at IS NOT NULL THEN 'scheduled' ELSE status END"
        " AS s, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'in_progress', 'failed') GROUP BY queue, s"
    ):
        counts[(row["queue"], row["s"])] = row["n"]
    oldest = {
        row["queue"]: row["t"]
        for row in store.query(
            "SELECT queue, MIN(enqueued_at) AS t FROM jobs WHERE status = 'queued' AND"
            " (next_retry_at IS NULL OR next_retry_at <= ?) GROUP BY queue",
            (stamp.isoformat(),),
        )
    }
    # Live by contentq's heartbeats: RQ lists a killed worker for 8 minutes more.
    workers = workers_per_queue(alive_workers(store, runtime.settings.worker_heartbeat_ttl))
    table = []
    for name in QUEUES:
        queue = Queue(name, connection=conn)
        age = (stamp - parse(oldest[name])).total_seconds() if name in oldest else None
        table.append(
            {
                "queue": name,
                "queued": counts.get((name, "queued"), 0),
                "in_progress": counts.get((name, "in_progress"), 0),
                "scheduled": counts.get((name, "scheduled"), 0),
                "failed": counts.get((name, "failed"), 0),
                "paused": name in paused,
                "workers": workers[name],
                "oldest_queued_s": round(age, 1) if age is not None else None,
                "redis": {
                    "queued": queue.count,
                    "started": StartedJobRegistry(queue=queue).count,
                    "scheduled": ScheduledJobRegistry(queue=queue).count,
                    "failed": FailedJobRegistry(queue=queue).count,
                },
            }
        )
    return table
