"""Prometheus metrics, computed at scrape time from SQLite (the record) and Redis (the transport).

`contentq metrics serve --port N` exposes them over HTTP; `contentq metrics dump PATH` writes them for
node_exporter's textfile collector. `CONTENTQ_METRICS_ENABLED=false` turns both off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from rq import Queue

from contentq.clock import iso, now, parse
from contentq.errors import ContentqError
from contentq.integrations.breakers import STATES as BREAKER_STATES
from contentq.integrations.breakers import breaker_states
from contentq.ops.output_file import write_file
from contentq.runtime.context import Runtime
from contentq.runtime.liveness import alive_workers, workers_per_queue
from contentq.runtime.queues import paused_queues
from contentq.settings import QUEUES

log = logging.getLogger("contentq.metrics")

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Upper bounds (seconds) of the job duration histogram; +Inf is added."""

FLOOD_PATTERN = "%flood%"
"""Reschedules whose reason mentions a flood wait (collect and publish record Telegram's FLOOD_WAIT that way)."""


class ContentqCollector(Collector):
    """Reads the current figures on every scrape: there is no state to lose when the process restarts."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()  # one scrape at a time shares the runtime's connections

    def describe(self) -> list[Any]:
        return []  # collect() at registration would touch the database; describe nothing instead

    def collect(self) -> Iterator[Any]:
        with self._lock:
            yield from self._store_metrics()
            yield from self._redis_metrics()

    # SQLite ----------------------------------------------------------------------------------------------

    def _store_metrics(self) -> Iterator[Any]:
        store = self.runtime.store
        stamp = now()

        jobs = GaugeMetricFamily(
            "contentq_jobs", "Job records by queue, kind and status.", labels=["queue", "kind", "status"]
        )
        for r in store.query("SELECT queue, kind, status, COUNT(*) AS n FROM jobs GROUP BY queue, kind, status"):
            jobs.add_metric([r["queue"], r["kind"], r["status"]], r["n"])
        yield jobs

        sizes = GaugeMetricFamily(
            "contentq_queue_jobs",
            "Jobs per queue waiting (ready), scheduled for later, or in progress, from the job records.",
            labels=["queue", "state"],
        )
        counts: dict[tuple[str, str], int] = {}
        for r in store.query(
            "SELECT queue, CASE WHEN status = 'in_progress' THEN 'in_progress'"
            " WHEN next_retry_at IS NOT NULL AND next_retry_at > ? THEN 'scheduled' ELSE 'ready' END AS s,"
            " COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'in_progress') GROUP BY queue, s",
            (iso(stamp),),
        ):
            counts[(r["queue"], r["s"])] = r["n"]
        for queue in QUEUES:
            for state in ("ready", "scheduled", "in_progress"):
                sizes.add_metric([queue, state], counts.get((queue, state), 0))
        yield sizes

        oldest = GaugeMetricFamily(
            "contentq_oldest_queued_job_age_seconds",
            "How long the oldest job ready to run has waited, per queue (0 when none waits).",
            labels=["queue"],
        )
        since = {
            r["queue"]: r["t"]
            for r in store.query(
                "SELECT queue, MIN(COALESCE(next_retry_at, enqueued_at, created_at)) AS t FROM jobs"
                " WHERE status = 'queued' AND (next_retry_at IS NULL OR next_retry_at <= ?) GROUP BY queue",
                (iso(stamp),),
            )
        }
        for queue in QUEUES:
            age = max(0.0, (stamp - parse(since[queue])).total_seconds()) if since.get(queue) else 0.0
            oldest.add_metric([queue], round(age, 3))
        yield oldest

        bounds = ", ".join(
            f"SUM(CASE WHEN duration_ms <= {b * 1000!r} THEN 1 ELSE 0 END) AS b{i}"
            for i, b in enumerate(DURATION_BUCKETS)
        )
        hist = HistogramMetricFamily(
            "contentq_job_duration_seconds",
            "Run time of finished jobs (succeeded or failed), per queue and kind.",
            labels=["queue", "kind"],
        )
        for r in store.query(
            f"SELECT queue, kind, COUNT(*) AS n, SUM(duration_ms) AS total, {bounds} FROM jobs"
            " WHERE status IN ('succeeded', 'failed') AND duration_ms IS NOT NULL GROUP BY queue, kind"
        ):
            buckets = [(repr(b), float(r[f"b{i}"] or 0)) for i, b in enumerate(DURATION_BUCKETS)]
            buckets.append(("+Inf", float(r["n"])))
            hist.add_metric([r["queue"], r["kind"]], buckets, sum_value=float(r["total"] or 0) / 1000)
        yield hist

        events = {
            (r["queue"], r["kind"], r["what"]): r["n"]
            for r in store.query(
                "SELECT j.queue, j.kind, CASE WHEN e.event = 'retrying' THEN 'retry'"
                " WHEN e.message LIKE ? THEN 'flood' ELSE 'reschedule' END AS what, COUNT(*) AS n"
                " FROM job_events AS e JOIN jobs AS j ON j.id = e.job_id"
                " WHERE e.event IN ('retrying', 'rescheduled') GROUP BY j.queue, j.kind, what",
                (FLOOD_PATTERN,),
            )
        }
        retries = CounterMetricFamily(
            "contentq_job_retries", "Retries after a failed attempt.", labels=["queue", "kind"]
        )
        reschedules = CounterMetricFamily(
            "contentq_job_reschedules", "Re-enqueues for later without using a retry (rate limits, breaker).",
            labels=["queue", "kind"],
        )  # fmt: skip
        floods = CounterMetricFamily(
            "contentq_flood_waits", "Re-enqueues because Telegram asked to wait (FLOOD_WAIT).", labels=["queue", "kind"]
        )
        for (queue, kind, what), n in sorted(events.items()):
            {"retry": retries, "reschedule": reschedules, "flood": floods}[what].add_metric([queue, kind], n)
        yield retries
        yield reschedules
        yield floods

        posts = GaugeMetricFamily("contentq_posts", "Posts by route and state.", labels=["route", "state"])
        for r in store.query("SELECT route, state, COUNT(*) AS n FROM posts GROUP BY route, state"):
            posts.add_metric([r["route"], r["state"]], r["n"])
        yield posts

        usage = store.one(
            "SELECT COALESCE(SUM(tokens_in), 0) AS i, COALESCE(SUM(tokens_out), 0) AS o,"
            " COALESCE(SUM(tokens_cached), 0) AS k, COALESCE(SUM(CASE WHEN kind = 'llm' THEN cost END), 0) AS c,"
            " COALESCE(SUM(kind = 'llm'), 0) AS n, COALESCE(SUM(error IS NOT NULL), 0) AS f,"
            " COALESCE(SUM(images), 0) AS m, COALESCE(SUM(CASE WHEN kind = 'image' THEN cost END), 0) AS mc"
            " FROM usage"
        ) or {"i": 0, "o": 0, "k": 0, "c": 0, "n": 0, "f": 0, "m": 0, "mc": 0}
        tokens = CounterMetricFamily("contentq_llm_tokens", "LLM tokens used.", labels=["direction"])
        tokens.add_metric(["in"], usage["i"])
        tokens.add_metric(["out"], usage["o"])
        tokens.add_metric(["cached"], usage["k"])  # the part of "in" the provider's prompt cache served
        yield tokens
        yield CounterMetricFamily("contentq_images_generated", "Images made by an image API.", value=usage["m"])
        yield CounterMetricFamily("contentq_image_cost", "Estimated cost of the images (dollars).", value=usage["mc"])
        yield CounterMetricFamily("contentq_llm_requests", "LLM requests recorded (failed ones included).",
                                  value=usage["n"])  # fmt: skip
        yield CounterMetricFamily("contentq_llm_failed_requests", "LLM requests that failed.", value=usage["f"])
        yield CounterMetricFamily(
            "contentq_llm_cost", "Estimated LLM cost (the price settings' currency).", value=usage["c"]
        )

    # Redis --------------------------------------------------------------------------------------------------

    def _redis_metrics(self) -> Iterator[Any]:
        up = GaugeMetricFamily("contentq_redis_up", "1 when Redis answered this scrape.")
        try:
            conn = self.runtime.redis
            conn.ping()
            paused = paused_queues(conn)
            workers = workers_per_queue(alive_workers(self.runtime.store, self.runtime.settings.worker_heartbeat_ttl))
            lengths = {q: Queue(q, connection=conn).count for q in QUEUES}
            breakers = breaker_states(self.runtime)
        except (redis.RedisError, ContentqError) as exc:
            log.warning("metrics: Redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        length = GaugeMetricFamily("contentq_redis_queue_length", "Jobs in the RQ queue list.", labels=["queue"])
        pause = GaugeMetricFamily("contentq_queue_paused", "1 when the queue is paused.", labels=["queue"])
        busy = GaugeMetricFamily("contentq_workers", "Workers listening on the queue.", labels=["queue"])
        for queue in QUEUES:
            length.add_metric([queue], lengths[queue])
            pause.add_metric([queue], 1 if queue in paused else 0)
            busy.add_metric([queue], workers[queue])
        yield length
        yield pause
        yield busy
        state = GaugeMetricFamily(
            "contentq_breaker_state", "1 for the current state of each circuit breaker.", labels=["breaker", "state"]
        )
        is_open = GaugeMetricFamily("contentq_breaker_open", "1 when the circuit breaker is open.", labels=["breaker"])
        for name, current in sorted(breakers.items()):
            for s in BREAKER_STATES:
                state.add_metric([name, s], 1 if current == s else 0)
            is_open.add_metric([name], 1 if current == "open" else 0)
        yield state
        yield is_open


def _check_enabled(runtime: Runtime) -> None:
    if not runtime.settings.metrics_enabled:
        raise ContentqError("metrics are turned off (CONTENTQ_METRICS_ENABLED=false); set it to true to use them")


def registry_for(runtime: Runtime) -> CollectorRegistry:
    _check_enabled(runtime)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ContentqCollector(runtime))
    return registry


def exposition(runtime: Runtime) -> str:
    return generate_latest(registry_for(runtime)).decode()


def dump(runtime: Runtime, path: Path) -> Path:
    """Write the metrics atomically (node_exporter must never read half a file), readable by node_exporter."""
    return write_file(path, exposition(runtime), mode=0o644)


def serve(runtime: Runtime, port: int, host: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
    """Start the HTTP exposition in a background thread; returns the server (its port) and the thread."""
    registry = registry_for(runtime)
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ContentqError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from None
