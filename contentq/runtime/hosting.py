"""Long-running services a worker process runs beside its jobs (`contentq worker --host listen,bot`).

In the compact layout the Telegram worker also runs the listeners and the admin bot, so Telethon (about 35 MiB a
process) is loaded once and each account's session is used by one process only. Each hosted service runs in a
thread of its own with its own stop: the worker's warm shutdown (TERM) stops them at once, while its job
finishes, and waits for them a bounded time (they are daemon threads: one stuck in a network call dies with the
process). A service that fails is logged and started again after a pause (5 s, doubling up to 5 minutes): it
never takes the worker or its jobs down.

A service that must run in one process only (a listener: one session; the bot: one token) holds a lease in Redis
while it runs (`contentq:hosted:<name>`, renewed every sixth of its TTL; a holder that could not renew it for two
thirds of the TTL stops the service, before another process could take the lease). A second worker started with
the same option stands by and takes the service over within the TTL once the holder is gone. A lease rather than
supervisor's process number: it holds across hosts sharing a Redis and whatever started the processes, and the
standby takes over by itself when the holder dies.

The runtime knows no core: the services are given to it (contentq.intake.listen, contentq.bot.serve).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from contentq.errors import RedisUnavailableError

log = logging.getLogger("contentq.worker")

LEASE_PREFIX = "contentq:hosted:"

LEASE_TTL = 30.0
"""Seconds a lease outlives its holder: a standby worker takes the service over this long after the holder died."""

STOP_SECONDS = 5.0
"""The most a worker's stop waits for its hosted services (they stop within a second or two: a listener after
its current update, the bot after its tick)."""

RESTART_FIRST = 5.0
RESTART_MAX = 300.0

_DOWN = (redis.ConnectionError, redis.TimeoutError, RedisUnavailableError, OSError)

# Take the lease when free or already ours (and extend it); 0 when another holds it.
_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Service(Protocol):
    """One run of a hosted service: `run` returns once `stop` was called (from another thread)."""

    def run(self) -> Any: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Hosted:
    name: str
    """`listen`, `listen-<account>`, `bot`: its thread, its log lines, its lease."""
    make: Callable[[], Service]
    """A fresh run of the service (called again after a failure)."""
    single: bool = True
    """Only one process at a time may run it (a lease in Redis)."""


def lease_key(name: str) -> str:
    return LEASE_PREFIX + name


def lease_holder(conn: redis.Redis, name: str) -> str | None:
    value = conn.get(lease_key(name))
    return value.decode() if isinstance(value, bytes) else value


class Host:
    """The hosted services of one worker process."""

    def __init__(
        self,
        conn: redis.Redis,
        services: list[Hosted],
        *,
        owner: str,
        lease_ttl: float = LEASE_TTL,
        first_wait: float = RESTART_FIRST,
        max_wait: float = RESTART_MAX,
    ) -> None:
        self.conn = conn
        self.services = services
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.first_wait = first_wait
        self.max_wait = max_wait
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, Service] = {}
        self._threads: list[threading.Thread] = []
        self._held: dict[str, float] = {}
        """When each lease was last taken or renewed (monotonic): a holder cut off from Redis stops its service
        before the lease can have expired, since another host may take it then."""
        self._fenced: set[str] = set()

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def start(self) -> None:
        for hosted in self.services:
            thread = threading.Thread(target=self._keep, args=(hosted,), name=f"contentq-{hosted.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if any(s.single for s in self.services):
            for target, label in ((self._renew_leases, "leases"), (self._fence, "fence")):
                thread = threading.Thread(target=target, name=f"contentq-{label}", daemon=True)
                thread.start()
                self._threads.append(thread)
        log.info("hosting %s in this worker", ", ".join(self.names))

    def stop(self) -> None:
        """Ask every service to stop (fast, from any thread: the worker's signal handler calls it)."""
        self._stop.set()
        with self._lock:
            running = list(self._running.values())
        for service in running:
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - a stop that fails must not keep the others running
                log.debug("hosted service stop failed", exc_info=True)

    def join(self, timeout: float = STOP_SECONDS) -> list[str]:
        """Wait for the services to end (at most `timeout` seconds in all); the names of those still running."""
        self.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name.removeprefix("contentq-") for t in self._threads if t.is_alive()]
        if left:
            log.warning("hosted %s still running after %g s; leaving them to the process's exit",
                        ", ".join(left), timeout)  # fmt: skip
        return left

    # -- one thread per service ---------------------------------------------------------------------------

    def _keep(self, hosted: Hosted) -> None:
        delay = self.first_wait
        standing_by = False
        while not self._stop.is_set():
            if hosted.single:
                taken = self._take(hosted.name)
                if not taken:
                    if not standing_by:
                        holder = self._holder(hosted.name)
                        log.info("%s runs in %s: standing by", hosted.name, holder or "another process")
                        standing_by = True
                    self._stop.wait(min(self.lease_ttl / 3, 5.0))
                    continue
                if standing_by:
                    log.info("%s: taken over", hosted.name)
                standing_by = False
            started = time.monotonic()
            self._run_once(hosted)
            if self._stop.is_set():
                break
            if time.monotonic() - started > self.max_wait:
                delay = self.first_wait  # it ran a good while: a fresh failure starts the backoff again
            log.warning("%s ended; starting it again in %g s", hosted.name, delay)
            if hosted.single:
                self._release(hosted.name)
            self._stop.wait(delay)
            delay = min(delay * 2, self.max_wait)
        if hosted.single:
            self._release(hosted.name)

    def _run_once(self, hosted: Hosted) -> None:
        try:
            service = hosted.make()
        except Exception:  # noqa: BLE001 - building it failed: logged, tried again later
            log.exception("%s could not start", hosted.name)
            return
        with self._lock:
            self._running[hosted.name] = service
        if self._stop.is_set():  # stopped while it was being built
            service.stop()
        try:
            service.run()
        except Exception:  # noqa: BLE001 - a hosted service never takes the worker down
            log.exception("%s stopped by an error", hosted.name)
        finally:
            with self._lock:
                self._running.pop(hosted.name, None)

    # -- leases ----------------------------------------------------------------------------------------

    def _take(self, name: str) -> bool:
        asked = time.monotonic()  # the lease runs from before the request: a slow answer shortens it, never extends
        try:
            taken = bool(self.conn.eval(_TAKE, 1, lease_key(name), self.owner, int(self.lease_ttl * 1000)))
        except _DOWN as exc:
            log.debug("lease of %s not taken: %s", name, exc)
            return False
        if taken:
            self._held[name] = asked
            self._fenced.discard(name)
        return taken

    def _holder(self, name: str) -> str | None:
        try:
            return lease_holder(self.conn, name)
        except _DOWN:
            return None

    def _release(self, name: str) -> None:
        with contextlib.suppress(*_DOWN):  # it expires by itself
            self.conn.eval(_RELEASE, 1, lease_key(name), self.owner)

    def _renew_leases(self) -> None:
        while not self._stop.wait(self.lease_ttl / 6):
            with self._lock:
                running = dict(self._running)
            for hosted in self.services:
                service = running.get(hosted.name)
                if not hosted.single or service is None or self._take(hosted.name):
                    continue
                holder = self._holder(hosted.name)
                if holder is not None and holder != self.owner:  # Redis lost it (a flush) and another took it
                    log.warning("%s: another process holds it now (%s); stopping here", hosted.name, holder)
                    service.stop()

    def _fence(self) -> None:
        # A holder cut off from Redis cannot know whether another host took the lease: a service whose lease was
        # not renewed for two thirds of the TTL stops, before the lease can have expired anywhere. This thread
        # makes no request, so a renewal stuck in a Redis timeout cannot delay it. A listener stopped so catches
        # up from its cursor when it runs again: nothing is lost.
        limit = self.lease_ttl * 2 / 3
        while not self._stop.wait(self.lease_ttl / 20):
            with self._lock:
                running = dict(self._running)
            for hosted in self.services:
                service = running.get(hosted.name)
                if not hosted.single or service is None or hosted.name in self._fenced:
                    continue
                held = time.monotonic() - self._held.get(hosted.name, 0.0)
                if held > limit:
                    self._fenced.add(hosted.name)
                    log.warning("%s: its lease not renewed for %.0f s (Redis unreachable); stopping here until it "
                                "can be taken again", hosted.name, held)  # fmt: skip
                    service.stop()


def run_alone(conn: redis.Redis, hosted: Hosted, stop: threading.Event, *, owner: str) -> None:
    """A service as its own program (`contentq listen`, `contentq bot`: the spread layout) until `stop` is set: the
    same lease as in a hosting worker, so a standalone listener or bot left running beside a worker that hosts it
    (halfway through a layout change) stands by instead of using the session or the token twice."""
    host = Host(conn, [hosted], owner=owner)
    host.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        host.join()
