"""Cancel means stop: a running job cancelled by the operator stops at its next safe point.

`contentq jobs cancel` (and the panel) marks the record cancelled and sends RQ's stop-job command
(`rq.command.send_stop_job_command`) to the worker running it. RQ answers that command by killing the forked
work horse; contentq's worker runs jobs in its own process (no horse), so it records the request here instead
(`request_stop`, from its pub/sub thread). The job itself calls `checkpoint()` between steps: there it raises
`JobStopped` when the stop was requested, or when its record says this run is no longer current (a stop-job
command lost with a Redis hiccup changes nothing: the record is the truth). Nothing is raised into a job at an
arbitrary point, so a step is never cut in two: a publish stops only before its first part is attempted, and
once a part is out it completes its batch (docs/queues-and-jobs.md, "Cancelling a running job").

Outside a tracked run (the CLI publishing in-process, an import) `checkpoint()` does nothing.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import redis
from rq.worker import Worker

from contentq.errors import JobStopped, RedisUnavailableError
from contentq.settings import Settings
from contentq.store.db import Store
from contentq.store.jobs import run_is_current
from contentq.store.workers import holders, is_alive, release_job


class Runtime(Protocol):
    """What this module needs of contentq.runtime.context.Runtime (tracking, which the context imports, imports
    this module: a Protocol keeps them out of an import circle)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def redis(self) -> redis.Redis: ...


log = logging.getLogger("contentq.jobs")

_requested: set[str] = set()
"""RQ ids whose stop the worker was asked for (RQ's stop-job command)."""
_lock = threading.Lock()


@dataclass(frozen=True)
class Run:
    store: Store
    job_id: str
    rq_id: str


_local = threading.local()


def request_stop(rq_id: str) -> None:
    """The worker got RQ's stop-job command for `rq_id` (called from its pub/sub thread)."""
    with _lock:
        _requested.add(rq_id)


def forget_stop(rq_id: str) -> None:
    """The run of `rq_id` is over: a later request for it means nothing."""
    with _lock:
        _requested.discard(rq_id)


def stop_requested(rq_id: str) -> bool:
    with _lock:
        return rq_id in _requested


@contextmanager
def running(store: Store, job_id: str, rq_id: str | None) -> Iterator[None]:
    """The current thread runs this job (run_tracked): `checkpoint()` looks at it."""
    previous = getattr(_local, "run", None)
    _local.run = Run(store, job_id, rq_id) if rq_id else None
    try:
        yield
    finally:
        _local.run = previous


def checkpoint(where: str = "") -> None:
    """A safe point of the running job: raise JobStopped when its run was cancelled. Cheap (a set lookup and
    one read of the job's row by its key): call it between steps, never inside one."""
    run: Run | None = getattr(_local, "run", None)
    if run is None:
        return
    if stop_requested(run.rq_id):
        raise JobStopped(f"stop-job received{' ' + where if where else ''}")
    if not run_is_current(run.store, run.job_id, run.rq_id):
        raise JobStopped(f"the record says cancelled or superseded{' ' + where if where else ''}")


def run_in_flight(runtime: Runtime, job_id: str, *, exclude: str | None = None, release: bool = True) -> str | None:
    """The worker (other than `exclude`) whose run of `job_id` has not ended yet, if any.

    A worker's row names the job it runs until the run ends, a cancelled run included (migration 127). A row
    left by a dead worker, or one its live worker no longer runs (RQ's record of the worker says so), is
    released here (unless `release` is False: a read-only look), so it never holds the job back."""
    ttl = runtime.settings.worker_heartbeat_ttl
    for row in holders(runtime.store, job_id):
        name = str(row["name"])
        if name == exclude:
            continue
        if is_alive(row, ttl) and _rq_says_running(runtime, name, job_id):
            return name
        if release:
            log.info("job %s: worker %s no longer runs it; released", job_id, name)
            release_job(runtime.store, name, job_id)
    return None


def _rq_says_running(runtime: Runtime, worker: str, job_id: str) -> bool:
    """Whether RQ's hash of the worker names a run of `job_id` (RQ ids are `<job id>-g<generation>`); when
    Redis cannot tell (unreachable, the hash gone), the row is believed."""
    key = Worker.redis_worker_namespace_prefix + worker
    try:
        with runtime.redis.pipeline() as pipe:
            pipe.exists(key)
            pipe.hget(key, "current_job")
            exists, current = pipe.execute()
    except (redis.RedisError, RedisUnavailableError):
        return True
    if not exists:
        return True
    text = current.decode() if isinstance(current, bytes) else (current or "")
    return re.fullmatch(re.escape(job_id) + r"-g\d+", text) is not None
