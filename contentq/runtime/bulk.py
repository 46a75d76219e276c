"""Bulk retry and cancel: every job a filter matches (status, queue, kind, age), in one call.

Each job goes through the core its one-job command uses (`tracking.retry`, `tracking.cancel`), with the same
checks; one job that changed meanwhile, or whose cancelled run has not stopped yet, is reported and skipped,
never a reason to stop the others. The panel, the API and `contentq jobs retry --all` / `jobs cancel --all`
call `bulk_action`; they show `count_matching` first and ask for a confirmation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from contentq.clock import iso, now, parse_duration
from contentq.errors import ContentqError, RedisUnavailableError
from contentq.runtime import tracking
from contentq.runtime.context import Runtime
from contentq.runtime.queues import check_queue
from contentq.store.jobs import matching_job_ids

log = logging.getLogger("contentq.jobs")

Action = Literal["retry", "cancel"]

STATUSES_FOR: dict[str, tuple[str, ...]] = {"retry": ("failed", "cancelled"), "cancel": ("queued", "in_progress")}
"""The statuses each action takes: what `jobs retry` and `jobs cancel` accept for one job."""

BULK_MAX = 10_000
"""At most this many jobs in one call: a larger set is done in several (each says how many are left)."""


@dataclass(frozen=True)
class JobFilter:
    """Which jobs: one status, optionally one queue and kind, created within `since` and before `older_than`."""

    action: Action
    status: str
    queue: str | None = None
    kind: str | None = None
    since: str | None = None
    older_than: str | None = None
    created_before: str | None = None
    """An ISO time: only jobs created before it (a confirmation's count stays the count it confirmed)."""

    def check(self) -> None:
        allowed = STATUSES_FOR.get(self.action)
        if allowed is None:
            raise ContentqError(f"unknown bulk action {self.action!r}: retry or cancel")
        if self.status not in allowed:
            raise ContentqError(f"{self.action} takes {' or '.join(allowed)} jobs, not {self.status!r} ones")
        if self.queue:
            check_queue(self.queue)

    def window(self) -> tuple[str | None, str | None]:
        """(created at or after, created before) as ISO times."""
        stamp = now()
        since = iso(stamp - parse_duration(self.since)) if self.since else None
        before = iso(stamp - parse_duration(self.older_than)) if self.older_than else None
        if self.created_before and (before is None or self.created_before < before):
            before = self.created_before
        return since, before

    def describe(self) -> str:
        parts = [f"{self.status} jobs"]
        if self.queue:
            parts.append(f"of queue {self.queue}")
        if self.kind:
            parts.append(f"of kind {self.kind}")
        if self.since:
            parts.append(f"created in the last {self.since}")
        if self.older_than:
            parts.append(f"created over {self.older_than} ago")
        return " ".join(parts)


@dataclass
class BulkResult:
    action: str
    matched: int
    done: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    more: bool = False
    """True when more jobs matched than one call does (BULK_MAX): run it again for the rest."""

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "matched": self.matched, "done": len(self.done), "ids": self.done,
                "skipped": self.skipped, "more": self.more}  # fmt: skip


def matching(rt: Runtime, spec: JobFilter, limit: int = BULK_MAX) -> list[str]:
    """The ids the action would take now, oldest first (at most `limit`)."""
    spec.check()
    since, before = spec.window()
    return matching_job_ids(
        rt.store, statuses=(spec.status,), queue=spec.queue or None, kind=spec.kind or None, since=since,
        before=before, limit=limit,
    )  # fmt: skip


def count_matching(rt: Runtime, spec: JobFilter) -> int:
    """How many jobs the action would take now (up to BULK_MAX + 1: "more than BULK_MAX")."""
    return len(matching(rt, spec, BULK_MAX + 1))


def bulk_action(rt: Runtime, spec: JobFilter) -> BulkResult:
    """Retry or cancel every matching job (at most BULK_MAX; `more` says when others are left)."""
    ids = matching(rt, spec, BULK_MAX + 1)
    result = BulkResult(spec.action, matched=min(len(ids), BULK_MAX), more=len(ids) > BULK_MAX)
    act = tracking.retry if spec.action == "retry" else tracking.cancel
    for job_id in ids[:BULK_MAX]:
        try:
            act(rt, job_id)
        except RedisUnavailableError:
            raise  # every other job would wait for it too: stop here; the ones done so far stay done
        except ContentqError as exc:  # changed meanwhile, a run still stopping: that job only
            result.skipped.append({"id": job_id, "error": str(exc)})
            continue
        result.done.append(job_id)
    log.info("bulk %s of %s: %d done, %d skipped", spec.action, spec.describe(), len(result.done),
             len(result.skipped))  # fmt: skip
    return result
