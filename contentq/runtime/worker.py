"""contentq's worker: an in-process RQ worker (Telegram clients stay connected across jobs) that honours
per-queue pause, never exits on a Redis outage, and owns its liveness.

Three threads (and those of the services it hosts, contentq.runtime.hosting):
- the main loop (RQ's `work`): dequeue and run jobs; every Redis call waits out an outage;
- the heartbeat: the worker's row in SQLite (whatever Redis does) and, while a job runs, RQ's heartbeats;
- housekeeping: RQ's scheduler (in this process, so it dies with the worker); every third of the heartbeat
  TTL, the jobs of dead workers re-enqueued or failed (SQLite only); about once a minute, a light reconcile
  (jobs lost between pop and start, or by Redis) that live workers take turns to run.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis
from redis.client import PubSub, PubSubWorkerThread
from rq import SimpleWorker, worker_registration
from rq.exceptions import DequeueTimeout
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.scripts import release_lock
from rq.worker import WorkerStatus

from contentq.errors import RedisUnavailableError
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.hosting import Host, Hosted
from contentq.runtime.outage import REDIS_DOWN, RedisOutage, StopWaiting
from contentq.runtime.queues import check_queue, paused_queues
from contentq.runtime.reconcile import reconcile, recover_abandoned
from contentq.runtime.stopping import forget_stop, request_stop
from contentq.runtime.tracking import SCHEDULED_CHANNEL
from contentq.settings import QUEUES
from contentq.store.db import open_store
from contentq.store.workers import (
    beat,
    clear_current_job,
    forget_stopped,
    mark_stopped,
    register_worker,
    worker_state,
)

log = logging.getLogger("contentq.worker")

DEQUEUE_POLL_SECONDS = 5
"""Longest block on an empty queue: a resumed queue and the registry cleanup are noticed this fast. A job is
taken the moment it is queued, a stop (TERM) ends the block at once, and a job popped from a queue paused during
the block goes back (`_put_back_if_paused`): only an idle worker's wake-ups (about 5 Redis commands each) depend
on it (docs/performance.md, "Footprint")."""

PUBSUB_POLL_SECONDS = 1.0
"""Longest read of the pub/sub thread (RQ's `rq:pubsub` commands: stop-job, shutdown). RQ reads for 60 s; since
redis-py 8.2 `PubSubWorkerThread.stop()` joins the thread, so a stop waited out that read (issue 30)."""

PUBSUB_STOP_SECONDS = 3.0
"""The most a worker's stop waits for its pub/sub thread; the thread is a daemon, so one that is still reading
then (a half-open socket) dies with the process."""

SCHEDULER_INTERVAL = 1.0
"""The shortest time between two rounds of the scheduler (moving due delayed jobs into their queues): a burst of
new delayed jobs costs one round a second, as RQ's own scheduler polls."""

HOUSEKEEPING_IDLE_SECONDS = 10.0
"""The longest the housekeeping thread sleeps (capped by a third of the heartbeat TTL, which the dead workers'
jobs are checked against). Between its rounds the scheduler sleeps until the first delayed job it knows of is
due, or a new one is announced (`tracking.SCHEDULED_CHANNEL`, published by every delayed enqueue and by the
worker that scheduled a retry): a delayed job is on time without a round every second. One that was not
announced (another tool's) waits for the next round at most this long."""

RECONCILE_LOCK = "contentq:worker-reconcile"
"""Held for one interval by the worker that runs the light reconcile, so workers take turns."""

FORGET_WORKERS_AFTER = timedelta(days=1)

CHECKPOINT_SECONDS = 1.0
"""A thread of the worker copies SQLite's write-ahead log into the database about this long after a job ended (a
PASSIVE checkpoint, on its own connection; the jobs of that second share it), so that no job's commit waits for
a checkpoint and its fsync: left to SQLite, the commit that crosses 1,000 pages of log runs one."""

CHECKPOINT_IDLE_SECONDS = 60.0
"""With no job ending, a checkpoint this often still (other processes' commits: the listener, the panel, the CLI)."""

CHECKPOINT_FALLBACK_PAGES = 10_000
"""The job connection still checkpoints by itself past this much log (40 MB), should that thread fall behind."""


class ContentqWorker(SimpleWorker):
    heartbeat_ttl: int = 30

    def __init__(
        self,
        *args: Any,
        runtime: Runtime,
        heartbeat_ttl: int = 30,
        reconcile_interval: float = 60.0,
        hosted: list[Hosted] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self.hosted = list(hosted or [])
        self.host: Host | None = None
        self.heartbeat_ttl = heartbeat_ttl
        self.reconcile_interval = reconcile_interval
        self.outage = RedisOutage(log)
        self._running_job: Job | None = None
        self._stop_threads = threading.Event()
        self._job_ended = threading.Event()
        """Wakes the checkpoint thread: a job's commits are in the log (or the worker stops)."""
        self._schedule_now = threading.Event()
        """Wakes the housekeeping thread: a delayed job was announced (or the worker stops)."""
        self._threads: list[threading.Thread] = []
        self._burst = False

    # -- Redis outages: every call of the loop waits instead of ending the worker ---------------------------

    def _wait(self, fn: Any) -> Any:
        return self.outage.call(fn, stop=lambda: self._stop_requested)

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        self._wait(lambda: super(ContentqWorker, self).bootstrap(*args, **kwargs))
        register_worker(self.runtime.store, self.name, self.queue_names())
        self.runtime.store.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_FALLBACK_PAGES}")
        self._start_thread("contentq-heartbeat", self._heartbeat_loop)
        self._start_thread("contentq-checkpoint", self._checkpoint_loop)
        if not self._burst:
            self._start_thread("contentq-housekeeping", self._housekeeping_loop)
        if self.hosted and not self._burst:
            # A standby takes a hosted service over as soon as a dead worker's jobs are taken back.
            self.host = Host(self.connection, self.hosted, owner=self.name, lease_ttl=float(self.heartbeat_ttl))
            self.host.start()

    def handle_warm_shutdown_request(self) -> None:
        """TERM (or RQ's shutdown command): the hosted services stop now, while the running job finishes."""
        super().handle_warm_shutdown_request()
        if self.host is not None:
            self.host.stop()

    def subscribe(self) -> None:
        """RQ's, with an outage handler that reports through the shared outage (one WARNING, not one a try)."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(
            **{self.pubsub_channel_name: self.handle_payload, SCHEDULED_CHANNEL: self._delayed_job_announced}
        )
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=PUBSUB_POLL_SECONDS, daemon=True, exception_handler=self._pubsub_outage
        )

    def unsubscribe(self) -> None:
        """RQ's, with every wait bounded whatever the installed redis-py does on `stop()`."""
        thread = self.pubsub_thread
        if not thread:
            return
        with contextlib.suppress(*REDIS_DOWN):  # the connection is gone: nothing to unsubscribe from
            self.pubsub.unsubscribe()
        try:
            thread.stop(timeout=PUBSUB_STOP_SECONDS)  # redis-py 8.2 joins here
        except TypeError:
            thread.stop()  # older redis-py: only clears the flag
        thread.join(timeout=PUBSUB_STOP_SECONDS)
        if not thread.is_alive():
            self.pubsub.close()  # else the thread closes it when its read ends

    def _delayed_job_announced(self, message: dict[str, Any]) -> None:
        self._schedule_now.set()

    def _pubsub_outage(self, exc: BaseException, pubsub: PubSub, thread: PubSubWorkerThread) -> None:
        if isinstance(exc, REDIS_DOWN):
            self.outage.failed(exc)
            time.sleep(2.0)
            return
        raise exc

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        self._wait(lambda: self._heartbeat_now(timeout))

    def _heartbeat_now(self, timeout: int | None) -> None:
        super().heartbeat(timeout)
        if not self.connection.hexists(self.key, "birth"):
            # Redis lost the worker's hash (FLUSHALL, a restart without the AOF): register again.
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, pipe)
                pipe.expire(self.key, (timeout or self.worker_ttl) + 60)
                pipe.execute()

    def check_for_suspension(self, burst: bool) -> None:
        self._wait(lambda: super(ContentqWorker, self).check_for_suspension(burst))

    def run_maintenance_tasks(self) -> None:
        # The scheduler lives in the housekeeping thread: RQ's restart of a scheduler process is not wanted.
        self._wait(lambda: (self.clean_registries(), None)[1])

    def execute_job(self, job: Job, queue: Queue) -> None:
        # The worker's current job (workers.current_job) is written by the job's own start and end statements
        # (triggers, migration 120), not here: two commits a job fewer.
        self._running_job = job
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            # The job's outcome is in SQLite already (or it never started); RQ's bookkeeping of it is lost,
            # which the reconcile repairs. The worker itself carries on once Redis is back.
            self.outage.failed(exc)
            self._wait(self.connection.ping)
        finally:
            self._running_job = None
            self._job_ended.set()
            if job.get_status(refresh=False) == JobStatus.SCHEDULED:  # RQ scheduled its retry: announce it
                with contextlib.suppress(*REDIS_DOWN):
                    self.connection.publish(SCHEDULED_CHANNEL, queue.name)
            forget_stop(job.id)
            # The job's end statement cleared it (trigger job_worker_free) unless the run ended without one (a
            # BaseException, a locked database): then the reconcile must not take this worker for busy with it.
            # Without a row to change, this UPDATE writes nothing (about 5 µs). An error here must not end the
            # worker's loop: the next job's start replaces a row left set.
            try:
                clear_current_job(self.runtime.store, self.name)
            except Exception:  # noqa: BLE001 - a locked database: the next job's statements set it right
                log.debug("current job not cleared", exc_info=True)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """RQ's stop-job command (`rq.command.send_stop_job_command`, received by the pub/sub thread) ends here.
        RQ's forking worker kills its work horse; this one runs the job in its own process, so the job is asked
        to stop at its next safe point instead (contentq.runtime.stopping), never cut in the middle of a step."""
        job = self._running_job
        if job is not None and self._stopped_job_id == job.id:
            request_stop(job.id)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """One line, no traceback: run_tracked logged the outcome and put the traceback in the job's events."""
        exc = exc_info[1] if len(exc_info) > 1 else None
        log.debug("job %s raised %s", job.id, type(exc).__name__ if exc else "?", exc_info=exc_info or None)
        for handler in self._exc_handlers:
            if handler(job, *exc_info) is False:
                break

    def get_heartbeat_ttl(self, job: Job) -> int:
        # A job in this process is kept alive by the heartbeat thread, so its TTL can be short.
        return self.heartbeat_ttl

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Like RQ's, but paused queues are skipped, the block on Redis is short and an outage is waited out."""
        self._wait(lambda: self.set_state(WorkerStatus.IDLE))
        while True:
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            if self._stop_requested:
                return None
            paused = self._wait(lambda: paused_queues(self.connection))
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
            except REDIS_DOWN as exc:
                self.outage.failed(exc)
                time.sleep(1.0)
                continue
            self.outage.ok()
            if result is not None:
                job, queue = result
                if self._put_back_if_paused(job, queue):
                    continue
                self.reorder_queues(reference_queue=queue)
                job.redis_server_version = self._wait(self.get_redis_server_version)
                log.info("Worker %s: %s: %s (%s)", self.name, queue.name, job.description, job.id)
                self.heartbeat()
                return result
            if timeout is None:
                return None

    def _put_back_if_paused(self, job: Job, queue: Queue) -> bool:
        """A block on Redis that began before its queue was paused can still pop a job enqueued after the pause;
        that job goes back to the front of its queue, untouched. (Read after the pop, the pause set cannot miss a
        pause made before the job was enqueued.)"""
        if queue.name not in self._wait(lambda: paused_queues(self.connection)):
            return False

        def put_back() -> None:  # RQ's BLMOVE (one queue) left the id in the queue's intermediate list too
            pipe = self.connection.pipeline()
            queue.push_job_id(job.id, pipeline=pipe, at_front=True)
            pipe.lrem(IntermediateQueue.get_intermediate_queue_key(queue.key), 1, job.id)
            pipe.execute()

        self._wait(put_back)
        log.info("Worker %s: %s is paused; %s put back", self.name, queue.name, job.id)
        return True

    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        self._burst = burst
        # RQ installs SIGINT/SIGTERM handlers for its loop and leaves them behind: a process that runs a worker
        # in-process (a burst run, `demo`, the tests) would then answer Ctrl-C by asking a finished worker to stop.
        main = threading.current_thread() is threading.main_thread()
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            return bool(super().work(burst, *args, **kwargs))
        except StopWaiting:
            return False
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)

    def teardown(self) -> None:
        if self.host is not None:
            self.host.join()
        self._stop_threads.set()
        self._job_ended.set()
        self._schedule_now.set()
        for thread in self._threads:
            thread.join(timeout=5)
        try:
            mark_stopped(self.runtime.store, self.name)
        except Exception:  # noqa: BLE001 - a clean exit must not fail over its bookkeeping
            log.debug("could not record the worker's stop", exc_info=True)
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            log.warning("Worker %s: stopped without unregistering from Redis (%s)", self.name, exc)

    # -- the threads ---------------------------------------------------------------------------------------

    def _start_thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _checkpoint_loop(self) -> None:
        settings = self.runtime.settings
        # Its own connection, failing fast and quiet on a busy database: the job connection waits and tells.
        store = open_store(settings.db_path, settings.db_busy_timeout_ms, migrate=False, wait_seconds=0, quiet=True)
        try:
            # Woken by the end of a job (idle, it sleeps): one second later, so that the jobs ending meanwhile
            # share the checkpoint.
            while not self._stop_threads.is_set():
                self._job_ended.wait(CHECKPOINT_IDLE_SECONDS)
                if self._stop_threads.wait(CHECKPOINT_SECONDS):
                    break
                self._job_ended.clear()
                try:
                    store.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:  # noqa: BLE001 - busy or locked: the next one comes in a second
                    log.debug("checkpoint skipped", exc_info=True)
        finally:
            store.close()

    def _heartbeat_loop(self) -> None:
        settings = self.runtime.settings
        # Its own connection, failing fast and quiet on a busy database: the job connection waits and tells.
        store = open_store(settings.db_path, settings.db_busy_timeout_ms, migrate=False, wait_seconds=0, quiet=True)
        try:
            while not self._stop_threads.wait(max(0.5, self.heartbeat_ttl / 3)):
                try:
                    beat(store, self.name)
                except Exception:  # noqa: BLE001 - a locked database: the next beat comes soon
                    log.debug("worker heartbeat not recorded", exc_info=True)
                job = self._running_job
                if job is None or self.execution is None:
                    continue
                try:
                    self.maintain_heartbeats(job)
                    self.outage.ok()
                except REDIS_DOWN as exc:
                    self.outage.failed(exc)
                except Exception:  # noqa: BLE001 - RQ's heartbeat is a convenience: liveness is in SQLite
                    log.debug("RQ heartbeat failed", exc_info=True)
        finally:
            store.close()

    def _housekeeping_loop(self) -> None:
        scheduler = RQScheduler(
            self.queues, connection=self.connection, name=self.name, serializer=self.serializer,
            logging_level=logging.getLogger().level or logging.INFO,
        )  # fmt: skip
        last_reconcile = time.monotonic() - self.reconcile_interval / 2  # the first one soon after start
        last_recovery = last_round = time.monotonic()
        delay = SCHEDULER_INTERVAL
        while True:
            self._schedule_now.wait(delay)
            # Announcements coming close together share a round, at most one a second.
            if self._stop_threads.wait(max(0.0, SCHEDULER_INTERVAL - (time.monotonic() - last_round))):
                break
            self._schedule_now.clear()
            last_round = time.monotonic()
            try:
                self._schedule(scheduler)
                if time.monotonic() - last_reconcile >= self.reconcile_interval:
                    last_reconcile = last_recovery = time.monotonic()
                    self._light_reconcile()
                elif time.monotonic() - last_recovery >= max(1.0, self.heartbeat_ttl / 3):
                    # Dead workers' jobs, from SQLite alone: back in a queue within the heartbeat TTL.
                    last_recovery = time.monotonic()
                    recover_abandoned(self.runtime)
                delay = self._next_round(scheduler)
                self.outage.ok()
            except REDIS_DOWN as exc:
                self.outage.failed(exc)
                delay = 2.0
            except Exception as exc:  # noqa: BLE001 - housekeeping must outlive one bad round
                log.warning("housekeeping failed: %s: %s", type(exc).__name__, exc)
                log.debug("housekeeping failure", exc_info=True)
                delay = 5.0
        try:
            scheduler.release_locks()
            scheduler.register_death()
        except Exception:  # noqa: BLE001 - the locks expire by themselves
            log.debug("scheduler locks not released", exc_info=True)

    def _schedule(self, scheduler: RQScheduler) -> None:
        """Move due delayed jobs to their queues; a lock left by a dead worker's scheduler is taken over."""
        wanted = set(self.queue_names())
        if scheduler.acquired_locks != wanted:
            self._free_dead_scheduler_locks(wanted - scheduler.acquired_locks)
            if scheduler.acquire_locks():
                scheduler.register_birth()
        if scheduler.acquired_locks:
            scheduler.heartbeat()
            scheduler.enqueue_scheduled_jobs()

    def _next_round(self, scheduler: RQScheduler) -> float:
        """Seconds until the housekeeping's next round: when the first delayed job of this scheduler's queues is
        due (past its second: RQ scores by whole seconds), at most HOUSEKEEPING_IDLE_SECONDS."""
        cap = max(1.0, min(HOUSEKEEPING_IDLE_SECONDS, self.heartbeat_ttl / 3))
        first = None
        for name in scheduler.acquired_locks:
            head = self.connection.zrange(ScheduledJobRegistry(name, connection=self.connection).key, 0, 0,
                                          withscores=True)  # fmt: skip
            if head:
                first = float(head[0][1]) if first is None else min(first, float(head[0][1]))
        if first is None:
            return cap
        return min(cap, max(0.0, first + 1.0 - time.time()))

    def _free_dead_scheduler_locks(self, queues: set[str]) -> None:
        ttl = self.heartbeat_ttl
        for name in queues:
            key = RQScheduler.get_locking_key(name)
            holder = self.connection.get(key)
            if holder is None:
                continue
            holder_name = holder.decode() if isinstance(holder, bytes) else str(holder)
            state, _ = worker_state(self.runtime.store, holder_name, ttl)
            if state == "dead" and release_lock(self.connection, key, holder_name):
                log.info("scheduler lock of queue %s freed: its holder %s is dead", name, holder_name)

    def _light_reconcile(self) -> None:
        lock_ttl = max(1, int(self.reconcile_interval * 0.8))
        if not self.connection.set(RECONCILE_LOCK, self.name, nx=True, ex=lock_ttl):
            return  # another worker did it this round
        actions = reconcile(self.runtime)
        for action in actions:
            log.info("reconcile: job %s: %s; %s", action["job"], action["found"], action["action"])
        forget_stopped(self.runtime.store, FORGET_WORKERS_AFTER)


def pause_job_timer() -> Callable[[], None]:
    """Stop the running job's timeout (RQ's SIGALRM death penalty of an in-process worker) until the returned
    function is called: waiting for the database is not the job's time. Only the main thread owns the alarm."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    remaining = signal.alarm(0)
    if not remaining:
        return lambda: None

    def resume() -> None:
        signal.alarm(remaining)

    return resume


def wait_for_redis(runtime: Runtime) -> None:
    """At start: wait for Redis rather than exit (supervisor would give up on a worker exiting at once)."""
    outage = RedisOutage(log)
    delay = 0.5
    while True:
        try:
            runtime.redis.ping()
        except (RedisUnavailableError, redis.ConnectionError, redis.TimeoutError) as exc:
            outage.failed(exc)
            time.sleep(delay)
            delay = min(delay * 2, outage.cap)
            continue
        outage.ok()
        return


BURST_HORIZON = 60.0
"""Seconds ahead `worker --burst` waits for delayed jobs (asap slots a few seconds apart, short retries)."""


def next_delayed(runtime: Runtime, queues: list[str], horizon: float) -> tuple[int, float] | None:
    """Delayed jobs of the (unpaused) `queues` due within `horizon` seconds: (how many, seconds until the first);
    None when there is none. RQ keeps them in each queue's scheduled registry, scored by their due time."""
    paused = paused_queues(runtime.redis)
    now = time.time()
    count, first = 0, None
    for name in queues:
        if name in paused:
            continue
        key = ScheduledJobRegistry(name, connection=runtime.redis).key
        count += int(runtime.redis.zcount(key, "-inf", now + horizon))
        head = runtime.redis.zrange(key, 0, 0, withscores=True)
        if head:
            score = float(head[0][1])
            first = score if first is None else min(first, score)
    if not count or first is None:
        return None
    return count, max(0.0, first - now)


def run_worker(
    runtime: Runtime,
    queues: list[str] | None = None,
    *,
    burst: bool = False,
    name: str | None = None,
    horizon: float = 0.0,
    hosted: list[Hosted] | None = None,
) -> bool:
    """Run a worker on `queues` (taken from in the order given; all, in priority order, when empty) until stopped,
    or, with burst, until no job is queued and none is due within `horizon` seconds (it waits for those, then
    runs them). A long-running worker also runs the `hosted` services (contentq.runtime.hosting) until it stops."""
    # The order given is the order of the multi-queue pop (supervisor's compact program puts maintenance first).
    names = list(dict.fromkeys(check_queue(q) for q in (queues or list(QUEUES))))
    set_process_runtime(runtime)
    settings = runtime.settings
    # A worker waits out a busy database or a full disk for as long as it takes, its job's clock stopped.
    runtime.store.wait.limit = None
    runtime.store.wait.pause = pause_job_timer
    if not burst:
        wait_for_redis(runtime)

    def worker() -> ContentqWorker:
        return ContentqWorker(
            [Queue(n, connection=runtime.redis) for n in names],
            connection=runtime.redis,
            runtime=runtime,
            name=name,
            maintenance_interval=settings.worker_maintenance_interval,
            heartbeat_ttl=settings.worker_heartbeat_ttl,
            reconcile_interval=settings.worker_reconcile_interval,
            default_result_ttl=settings.job_result_ttl,
            hosted=None if burst else hosted,
        )

    if not burst:
        # The scheduler of a long-running worker runs in its housekeeping thread.
        return bool(worker().work(burst=False, with_scheduler=False, logging_level=settings.log_level))
    # RQ's own INFO lines (registries cleaned, results kept) drown a one-off run's story; contentq's stay.
    rq_level = settings.log_level if settings.log_level == "DEBUG" else "WARNING"
    logging.getLogger("telethon").setLevel(rq_level)
    worked = False
    told = 0
    while True:
        # A burst run moves the due delayed jobs once, at its start, then runs what is queued.
        worked = bool(worker().work(burst=True, with_scheduler=True, logging_level=rq_level)) or worked
        if horizon <= 0:
            return worked
        later = next_delayed(runtime, names, horizon)
        if later is None:
            beyond = next_delayed(runtime, names, float("inf"))
            if beyond is not None:
                log.info("%d job(s) due later than %g s from now (the next in %.0f s) are left for a running "
                         "worker, or a later `worker --burst`", beyond[0], horizon, beyond[1])  # fmt: skip
            return worked
        count, wait = later
        if count != told:
            log.info("waiting for %d delayed job(s) due within %g s (--horizon), the next in %.0f s",
                     count, horizon, wait)  # fmt: skip
            told = count
        # RQ scores a delayed job by its due time in whole seconds (rounded down): wait past that second, or the
        # job would be handed over before its time and only put itself back.
        time.sleep(max(wait + 1.0, 0.2))
