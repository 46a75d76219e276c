"""Waiting out a Redis outage: capped backoff, one WARNING when it starts and one INFO line when it ends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from rq.exceptions import StopRequested

T = TypeVar("T")

REDIS_DOWN: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
"""What a Redis restart, a kill or an AOF reload (BusyLoadingError is a ConnectionError) looks like."""

BACKOFF_CAP_SECONDS = 10.0
"""Longest wait between two tries: a Redis that is back is noticed within this."""


class StopWaiting(StopRequested):
    """The worker was asked to stop while Redis was away (RQ's loop ends on StopRequested)."""


class RedisOutage:
    """Shared by a worker's threads, so an outage seen by several of them is reported once."""

    def __init__(self, log: logging.Logger, cap: float = BACKOFF_CAP_SECONDS) -> None:
        self.log = log
        self.cap = cap
        self._down_since: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                self.log.warning("Redis is unreachable (%s: %s); waiting for it to come back", type(exc).__name__, exc)

    def ok(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                self.log.info("Redis is back after %.0f s", time.monotonic() - self._down_since)
                self._down_since = None

    def call(self, fn: Callable[[], T], *, stop: Callable[[], bool] | None = None) -> T:
        """fn(), tried again with capped backoff while Redis is down; StopWaiting once `stop()` says so."""
        delay = 0.5
        while True:
            try:
                result = fn()
            except REDIS_DOWN as exc:
                self.failed(exc)
                if stop is not None and stop():
                    raise StopWaiting from None
                time.sleep(delay)
                delay = min(delay * 2, self.cap)
                continue
            self.ok()
            return result
