"""`contentq alerts check` (cron): tell the admin, once per alert window, when something needs a look.

Checks, with thresholds from settings:
- failed jobs in the last `alert_window_seconds` reach `alert_failure_threshold`;
- a queue holds more than `alert_queue_limit` jobs ready to run;
- the oldest ready job of a (not paused) queue has waited more than `alert_max_wait_seconds`;
- a circuit breaker (the LLM's) is open;
- the last good backup is older than `backup_max_age_hours` (or there is none, once the database is older).

Each alert has its own notification key, and the notifier is throttled to the alert window, so a condition
that persists is reported once per window, not on every cron run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import redis

from contentq.clock import iso, now, parse
from contentq.integrations.breakers import breaker_states, is_open
from contentq.notify import Notifier, admin_backend
from contentq.ops.backup import backup_age
from contentq.runtime.context import Runtime
from contentq.runtime.queues import paused_queues
from contentq.settings import QUEUES


@dataclass
class Check:
    check: str
    firing: bool
    value: Any
    threshold: Any
    message: str
    key: str
    notified: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt_wait(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def evaluate(runtime: Runtime) -> list[Check]:
    """Every check with its current value; nothing is sent."""
    settings = runtime.settings
    store = runtime.store
    stamp = now()
    checks: list[Check] = []

    window_start = iso(stamp - timedelta(seconds=settings.alert_window_seconds))
    failures = store.query(
        "SELECT queue, kind, COUNT(*) AS n FROM jobs WHERE status = 'failed' AND finished_at >= ?"
        " GROUP BY queue, kind ORDER BY n DESC",
        (window_start,),
    )
    total = sum(r["n"] for r in failures)
    breakdown = ", ".join(f"{r['kind']} ×{r['n']}" for r in failures[:5])
    checks.append(
        Check(
            check="failed jobs",
            firing=total >= settings.alert_failure_threshold,
            value=total,
            threshold=settings.alert_failure_threshold,
            message=(
                f"{total} jobs failed in the last {_fmt_wait(settings.alert_window_seconds)} ({breakdown}); "
                "see `contentq jobs list --status failed`"
            ),
            key="alert:failures",
        )
    )

    try:
        paused = paused_queues(runtime.redis)
    except redis.RedisError:
        paused = set()
    ready = {
        r["queue"]: r
        for r in store.query(
            "SELECT queue, COUNT(*) AS n, MIN(COALESCE(next_retry_at, enqueued_at, created_at)) AS since"
            " FROM jobs WHERE status = 'queued' AND (next_retry_at IS NULL OR next_retry_at <= ?) GROUP BY queue",
            (iso(stamp),),
        )
    }
    for queue in QUEUES:
        row = ready.get(queue)
        size = int(row["n"]) if row else 0
        checks.append(
            Check(
                check=f"queue {queue} size",
                firing=size > settings.alert_queue_limit,
                value=size,
                threshold=settings.alert_queue_limit,
                message=(
                    f"queue {queue} holds {size} jobs ready to run (limit {settings.alert_queue_limit})"
                    + (
                        "; the queue is paused: `contentq queue resume " + queue + "`"
                        if queue in paused
                        else "; are its workers running? `supervisorctl status 'contentq:*'`"
                    )
                ),
                key=f"alert:queue:{queue}",
            )
        )
        wait = max(0.0, (stamp - parse(row["since"])).total_seconds()) if row and row["since"] else 0.0
        checks.append(
            Check(
                check=f"queue {queue} wait",
                firing=queue not in paused and wait > settings.alert_max_wait_seconds,
                value=round(wait, 1),
                threshold=settings.alert_max_wait_seconds,
                message=(
                    f"a job in queue {queue} has waited {_fmt_wait(wait)} "
                    f"(limit {_fmt_wait(settings.alert_max_wait_seconds)}); "
                    "check the workers (`contentq health`, `supervisorctl status 'contentq:*'`)"
                ),
                key=f"alert:wait:{queue}",
            )
        )

    checks.append(_backup_check(runtime))
    for name, state in sorted(breaker_states(runtime).items()):
        checks.append(
            Check(
                check=f"breaker {name}",
                firing=is_open(state),
                value=state,
                threshold="closed",
                message=(
                    f"the circuit breaker {name} is open: calls to the LLM keep failing, rewrite jobs wait "
                    "for the cool-down; check the endpoint with `contentq doctor`"
                ),
                key=f"alert:breaker:{name}",
            )
        )
    return checks


def _backup_check(runtime: Runtime) -> Check:
    info = backup_age(runtime.settings, runtime.store)
    hours = None if info.age_seconds is None else round(info.age_seconds / 3600, 1)
    return Check(
        check="backup age",
        firing=info.too_old,
        value=hours if hours is not None else "none",
        threshold=f"{runtime.settings.backup_max_age_hours} h",
        message=f"{info.message}; run `contentq db backup` and check its cron line (crontab.example)",
        key="alert:backup",
    )


def check_alerts(runtime: Runtime, *, notify: bool = True) -> list[Check]:
    """Evaluate and notify the admin about firing checks, at most once per alert window per check."""
    checks = evaluate(runtime)
    if notify:
        notifier = Notifier(runtime.store, admin_backend(runtime), runtime.settings.alert_window_seconds)
        for check in checks:
            if check.firing:
                check.notified = notifier.notify(check.key, f"contentq alert: {check.message}", level="error")
    return checks
