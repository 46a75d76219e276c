"""contentq's worker: an in-process RQ worker (Telegram clients stay connected across jobs) that honours
per-queue pause, heartbeats while a job runs so an abandoned job is noticed within about a minute, and
runs the scheduler for delayed re-enqueues."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from rq import SimpleWorker
from rq.exceptions import DequeueTimeout
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.queues import check_queue, paused_queues
from contentq.settings import QUEUES

log = logging.getLogger("contentq.worker")

DEQUEUE_POLL_SECONDS = 1
"""Longest block on an empty queue: pause, maintenance and shutdown are noticed this fast."""


class ContentqWorker(SimpleWorker):
    heartbeat_ttl: int = 30

    def __init__(self, *args: Any, heartbeat_ttl: int = 30, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_ttl = heartbeat_ttl
        self._running_job: Job | None = None
        self._beat_stop = threading.Event()
        self._beat_thread: threading.Thread | None = None

    # A job in this process is kept alive by a thread, so its TTL can be short and a SIGKILLed
    # worker's job is recovered after heartbeat_ttl + the maintenance interval, not timeout + 60 s.
    def get_heartbeat_ttl(self, job: Job) -> int:
        return self.heartbeat_ttl

    def _beat(self) -> None:
        while not self._beat_stop.wait(max(1.0, self.heartbeat_ttl / 3)):
            job = self._running_job
            if job is not None and self.execution is not None:
                try:
                    self.maintain_heartbeats(job)
                except Exception:  # a missed beat is retried; never kill the job over it
                    log.debug("heartbeat failed", exc_info=True)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if self._beat_thread is None:
            self._beat_thread = threading.Thread(target=self._beat, name="contentq-heartbeat", daemon=True)
            self._beat_thread.start()
        self._running_job = job
        try:
            super().execute_job(job, queue)
        finally:
            self._running_job = None

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Like RQ's, but paused queues are skipped and the block on Redis is short."""
        self.set_state(WorkerStatus.IDLE)
        backoff = 1.0
        while True:
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            if self._stop_requested:
                return None
            paused = paused_queues(self.connection)
            active = [q for q in self._ordered_queues if q.name not in paused]
            if not active:
                if timeout is None:  # burst: nothing it may take now
                    return None
                time.sleep(DEQUEUE_POLL_SECONDS)
                continue
            wait = None if timeout is None else DEQUEUE_POLL_SECONDS
            try:
                result = self.queue_class.dequeue_any(
                    active,
                    wait,
                    connection=self.connection,
                    job_class=self.job_class,
                    serializer=self.serializer,
                    death_penalty_class=self.death_penalty_class,
                )
            except DequeueTimeout:
                continue
            except redis.ConnectionError as exc:
                # Redis restarting: wait and retry like RQ does, with a capped backoff.
                self.log.error("Worker %s: cannot reach Redis (%s); retrying in %.0f s", self.name, exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            if result is not None:
                job, queue = result
                self.reorder_queues(reference_queue=queue)
                job.redis_server_version = self.get_redis_server_version()
                self.log.info("Worker %s: %s: %s (%s)", self.name, queue.name, job.description, job.id)
                self.heartbeat()
                return result
            if timeout is None:
                return None

    def teardown(self) -> None:
        self._beat_stop.set()
        super().teardown()


def run_worker(
    runtime: Runtime, queues: list[str] | None = None, *, burst: bool = False, name: str | None = None
) -> bool:
    """Run a worker on `queues` (all, in priority order, when empty) until stopped, or until idle with burst."""
    names = [check_queue(q) for q in (queues or list(QUEUES))]
    names.sort(key=QUEUES.index)  # priority order whatever order they were given in
    set_process_runtime(runtime)
    settings = runtime.settings
    worker = ContentqWorker(
        [Queue(n, connection=runtime.redis) for n in names],
        connection=runtime.redis,
        name=name,
        maintenance_interval=settings.worker_maintenance_interval,
        heartbeat_ttl=settings.worker_heartbeat_ttl,
        default_result_ttl=settings.job_result_ttl,
    )
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level))
