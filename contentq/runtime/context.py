"""The per-process runtime (settings, store, Redis) and the context handed to every job.

The runtime knows no core and no Telegram: what it needs from above (the admin notifier, `Runtime.notifier`)
is built by a factory the layer above registers with `provide` (contentq.notify.install, called by the CLI,
the web app and the tests); integrations such as the Telegram gateway are kept in `services` by whoever builds
them (contentq.integrations.telegram.access).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import redis

from contentq.errors import ContentqError
from contentq.settings import Settings, get_settings

if TYPE_CHECKING:
    from contentq.store import Store

log = logging.getLogger("contentq")


class Alerts(Protocol):
    """What the runtime and the cores need of the admin notifier (contentq.notify.Notifier is one)."""

    def notify(self, key: str, message: str, level: str = "warning", *, once: bool = False) -> bool: ...


Factory = Callable[["Runtime"], Any]
_factories: dict[str, Factory] = {}


def provide(name: str, factory: Factory) -> None:
    """Register how a service the runtime must not know is built (`notifier`: contentq.notify.install)."""
    _factories[name] = factory


class Runtime:
    """What a process needs to talk to the store and the queues; cheap to build, lazy to connect."""

    def __init__(self, settings: Settings, *, store: Store | None = None, conn: redis.Redis | None = None) -> None:
        self.settings = settings
        self._store = store
        self._conn = conn
        self._opening = threading.Lock()
        # Integrations built once per process (the Telegram client, the LLM client …); tests put fakes here.
        self.services: dict[str, Any] = {}

    def service(self, name: str, factory: Factory | None = None) -> Any:
        """The process's instance of a service, built on first use by `factory` or the one `provide` registered."""
        if name not in self.services:
            make = factory or _factories.get(name)
            if make is None:
                raise ContentqError(f"no {name!r} service: the process's entry point did not provide one (a bug)")
            self.services[name] = make(self)
        return self.services[name]

    @property
    def store(self) -> Store:
        if self._store is None:
            # Imported here: commands that never open the database (`contentq --help`) need not load the store.
            from contentq.store import open_store
            from contentq.store.workers import grace_after_stall

            with self._opening:  # threads that start at once (the web's pool, a worker's) open one connection
                if self._store is None:
                    self.settings.ensure_home()
                    store = open_store(
                        self.settings.db_path, self.settings.db_busy_timeout_ms,
                        wait_seconds=self.settings.db_wait_seconds,
                    )  # fmt: skip
                    # After the database was held for a while, no worker could beat: give them a heartbeat
                    # TTL to beat again before the reconcile takes them for dead (store/workers.py).
                    store.wait.on_clear = lambda lasted: grace_after_stall(
                        store, lasted, self.settings.worker_heartbeat_ttl
                    )
                    self._store = store
        return self._store

    @property
    def redis(self) -> redis.Redis:
        if self._conn is None:
            from contentq.runtime.redis import connect

            self._conn = connect(self.settings)
        return self._conn

    @property
    def notifier(self) -> Alerts:
        alerts: Alerts = self.service("notifier")
        return alerts

    def close(self) -> None:
        for service in self.services.values():
            closer = getattr(service, "close", None)
            if callable(closer):
                closer()
        self.services.clear()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_process_runtime: tuple[int, Runtime] | None = None


def process_runtime() -> Runtime:
    """One runtime per process (workers reuse it across jobs); rebuilt after a fork."""
    global _process_runtime
    if _process_runtime is None or _process_runtime[0] != os.getpid():
        _process_runtime = (os.getpid(), Runtime(get_settings()))
    return _process_runtime[1]


def set_process_runtime(runtime: Runtime) -> None:
    global _process_runtime
    _process_runtime = (os.getpid(), runtime)


@dataclass
class JobContext:
    runtime: Runtime
    job_id: str
    kind: str
    queue: str
    attempt: int
    max_attempts: int
    post_id: int | None = None
    parent_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    retries_left: int = 0

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now would be final (reschedules do not use up retries, so not attempt-based)."""
        return self.retries_left <= 0

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None:
        """Append to this job's event log (secrets redacted) and to the process log."""
        from contentq.store.jobs import log_event

        log_event(self.store, self.job_id, event, message, level=level, data=data or None)
        log.log(
            logging.getLevelName(level.upper()) if isinstance(logging.getLevelName(level.upper()), int) else 20,
            "%s %s: %s",
            self.job_id,
            event,
            message,
            extra={"job_id": self.job_id, "post_id": self.post_id, "queue": self.queue, "event": event},
        )

    def notify(self, key: str, message: str, level: str = "warning", *, once: bool = False) -> bool:
        return self.runtime.notifier.notify(key, message, level=level, once=once)

    def tried_now(self) -> bool:
        """This run was asked for by the operator while the job waited (`contentq jobs retry` of a rescheduled
        job): a wait that is not over (an open circuit breaker's cool-down) is not waited out this once."""
        from contentq.store.jobs import event_before_start

        return event_before_start(self.store, self.job_id) == "tried_now"

    def checkpoint(self, where: str = "") -> None:
        """A safe point: raises JobStopped when the operator cancelled this run (contentq.runtime.stopping)."""
        from contentq.runtime.stopping import checkpoint

        checkpoint(where)

    def enqueue_child(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any] | None = None,
        *,
        post_id: int | None = None,
        delay: timedelta | float | None = None,
    ) -> dict[str, Any]:
        from contentq.runtime.tracking import enqueue

        return enqueue(self.runtime, kind, key, payload, post_id=post_id, parent_id=self.job_id, delay=delay)
