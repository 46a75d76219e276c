"""Which workers are alive, from contentq's own heartbeats (the `workers` table), never from RQ's registry.

RQ keeps a worker's registration for its `worker_ttl` + 60 s (8 minutes) after the worker stopped beating,
and a worker that lost Redis before it could unregister (killed, or stopped after Redis) stays listed that
long. `contentq health`, `doctor`, `queue status`, the metrics and the web panel count the workers whose
heartbeat in SQLite is younger than CONTENTQ_WORKER_HEARTBEAT_TTL (on this host: whose process exists), and
live workers remove RQ's registrations of dead ones (`forget_dead_registrations`), so `rq info` agrees.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import redis
from rq import Worker, worker_registration
from rq.worker import BaseWorker

from contentq.clock import now, parse
from contentq.runtime.context import Runtime
from contentq.settings import QUEUES
from contentq.store.db import Store
from contentq.store.workers import get_worker, is_alive, list_workers, live_workers

log = logging.getLogger("contentq.worker")


def _queues(row: dict[str, Any]) -> list[str]:
    return [q for q in str(row["queues"] or "").split(",") if q]


def alive_workers(store: Store, ttl: float) -> list[dict[str, Any]]:
    """The live workers (their queues as a list); none when the database predates the workers table."""
    try:
        rows = live_workers(store, ttl)
    except sqlite3.OperationalError:  # "no such table: workers": a database not migrated yet
        return []
    return [{**row, "queues": _queues(row)} for row in rows]


def workers_per_queue(live: list[dict[str, Any]]) -> dict[str, int]:
    """Queue → how many of these live workers take its jobs (every queue named, 0 when none)."""
    return {q: sum(1 for w in live if q in w["queues"]) for q in QUEUES}


def missing_queues(live: list[dict[str, Any]], wanted: list[str] | None = None) -> list[str]:
    counts = workers_per_queue(live)
    return [q for q in (wanted or list(QUEUES)) if not counts.get(q)]


def worker_overview(runtime: Runtime) -> list[dict[str, Any]]:
    """Every worker contentq knows (the web panel's Workers page, `--json` listings): name, host, pid, queues,
    state (alive, dead: silent past the heartbeat TTL or its process gone; stopped: it shut down cleanly), the
    heartbeat's age in seconds, when it started and stopped, and the job it runs now."""
    ttl = runtime.settings.worker_heartbeat_ttl
    stamp = now()
    out = []
    for row in list_workers(runtime.store):
        state = "stopped" if row["stopped_at"] else ("alive" if is_alive(row, ttl, stamp) else "dead")
        out.append(
            {
                "name": row["name"],
                "host": row["host"],
                "pid": row["pid"],
                "queues": _queues(row),
                "state": state,
                "heartbeat_age_s": round((stamp - parse(row["heartbeat_at"])).total_seconds(), 1),
                "started_at": row["started_at"],
                "stopped_at": row["stopped_at"],
                "current_job": row["current_job"] if state == "alive" else None,
            }
        )
    return out


def dead_registrations(store: Store, conn: redis.Redis, ttl: float) -> list[BaseWorker]:
    """RQ's registrations of workers that contentq knows to be dead or stopped. A registration contentq has no
    row for (a worker starting, between its RQ and SQLite registrations; a plain `rq worker`) is left alone."""
    dead = []
    for worker in Worker.all(connection=conn):
        try:
            row = get_worker(store, worker.name)
        except sqlite3.OperationalError:  # a database not migrated yet: nothing is known
            return []
        if row is not None and not is_alive(row, ttl):
            dead.append(worker)
    return dead


def forget_dead_registrations(runtime: Runtime) -> list[str]:
    """Remove RQ's registrations of dead workers (killed, or stopped after Redis went away): the names removed.
    A worker taken for dead that is in fact alive registers again at its next heartbeat."""
    names = []
    for worker in dead_registrations(runtime.store, runtime.redis, runtime.settings.worker_heartbeat_ttl):
        try:
            with runtime.redis.pipeline() as pipe:
                worker_registration.unregister(worker, pipe)
                pipe.delete(worker.key)
                pipe.execute()
        except redis.RedisError as exc:
            log.debug("registration of dead worker %s not removed: %s", worker.name, exc)
            continue
        names.append(worker.name)
        log.info("worker %s is dead (no heartbeat in SQLite): its Redis registration removed", worker.name)
    return names
