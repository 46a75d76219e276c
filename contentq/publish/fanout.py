"""A route with `destinations`: the post's publish job fans it out into one delivery per destination.

The publish job of such a post no longer sends anything itself: it moves the post to `publishing` (lifecycle
event `fanned_out`), makes sure each destination has its delivery (created once, `scheduled` at the post's slot)
and hands each delivery that still has to go out to its own `deliver` job. Each delivery then lives on its own
(`contentq.publish.deliver`): a failed X delivery never holds back or repeats the Telegram one. The post follows
its deliveries (`settle_post`), through the lifecycle like every post: `published` once every one is
(`delivered`), `failed` once all have ended and one failed (`delivery_failed`).
Each run of the post's publish job (`jobs retry`, `contentq publish`, a new time) sends its failed deliveries
again, never those already published.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from contentq import actors, lifecycle
from contentq.clock import iso, now, parse
from contentq.publish import deliveries
from contentq.routes import Route
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.deliveries import active_deliver_job, deliveries_of, get_delivery, insert_delivery
from contentq.store.posts import get_post

log = logging.getLogger("contentq.publish")


class Reporter(Protocol):
    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None: ...

    def notify(self, key: str, message: str, level: str = "warning") -> bool: ...


def deliver_key(delivery: dict[str, Any]) -> str:
    """The deliver job's key: one job at a time per delivery."""
    return f"{delivery['post_id']}:{delivery['destination']}"


def enqueue_delivery(runtime: Runtime, delivery: dict[str, Any], *, parent_id: str | None = None) -> dict[str, Any]:
    """The delivery's deliver job, delayed up to its slot (the one queued or running, if there is one)."""
    delay = 0.0
    if delivery["due_at"]:
        delay = max(0.0, (parse(delivery["due_at"]) - now()).total_seconds())
    return enqueue(
        runtime, "deliver", deliver_key(delivery), {"delivery_id": delivery["id"]}, post_id=delivery["post_id"],
        parent_id=parent_id, delay=delay or None,
    )  # fmt: skip


def fan_out(
    runtime: Runtime, post: dict[str, Any], route: Route, reporter: Reporter, *, job_id: str | None = None
) -> dict[str, Any]:
    """Make and hand out the post's deliveries (see the module doc); returns what each one is doing."""
    store = runtime.store
    post_id = int(post["id"])
    if not lifecycle.move(store, post_id, "fanned_out", target=route.target):
        reporter.log("skipped", f"post {post_id} changed state meanwhile")
        return {"post_id": post_id, "skipped": "state changed"}
    due = post["scheduled_at"] or iso()
    out: list[dict[str, Any]] = []
    for dest in route.destination_list:
        row = insert_delivery(
            store, post_id, dest.key, dest.platform, dest.account, "scheduled", due, "created", actors.current()
        )
        if row["state"] == "failed":  # the post is published again (jobs retry, publish, a new time): this too
            deliveries.move_delivery(store, row["id"], "restarted", due_at=due)
            row = get_delivery(store, row["id"])
        job: dict[str, Any] | None = None
        if row["state"] in ("scheduled", "publishing"):
            job = active_deliver_job(store, row["id"]) or enqueue_delivery(runtime, row, parent_id=job_id)
        out.append({"destination": dest.key, "state": row["state"], "job": job["id"] if job else None})
    listed = ", ".join(f"{d['destination']} ({d['job'] or d['state']})" for d in out)
    reporter.log("fanned_out", f"post {post_id} goes to {len(out)} destination(s): {listed}")
    settle_post(runtime, post_id, reporter)
    return {"post_id": post_id, "deliveries": out}


def _primary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The delivery whose link the post shows: its first Telegram one, else its first."""
    telegram = [r for r in rows if r["platform"] == "telegram"]
    return (telegram or rows)[0]


def settle_post(runtime: Runtime, post_id: int, reporter: Reporter | None = None) -> str | None:
    """Move the post after its deliveries: `published` when all are, `failed` when all have ended and one failed;
    None while some are still on their way (or the post has no deliveries)."""
    store = runtime.store
    rows = deliveries_of(store, post_id)
    if not rows:
        return None
    states = [r["state"] for r in rows]
    if all(s == "published" for s in states):
        primary = _primary(rows)
        notes = "; ".join(f"{r['destination']}: {r['notes']}" for r in rows if r["notes"])
        ids = primary["platform_ids"] if primary["platform"] == "telegram" else None
        moved = lifecycle.move(
            store, post_id, "delivered", reason=notes or None, published_at=iso(), link=primary["link"],
            message_ids=ids, unreachable_tries=0,
        )  # fmt: skip
        if moved and reporter is not None:
            links = ", ".join(f"{r['destination']} {r['link'] or '(no link)'}" for r in rows)
            reporter.log("published", f"post {post_id} is out on every destination: {links}")
        return "published"
    if all(s in deliveries.DONE for s in states) and "failed" in states:
        failed = [f"{r['destination']}: {r['state_reason'] or 'failed'}" for r in rows if r["state"] == "failed"]
        out = [r["destination"] for r in rows if r["state"] == "published"]
        reason = "; ".join(failed) + (f" (published on {', '.join(out)})" if out else "")
        moved = lifecycle.move(store, post_id, "delivery_failed", reason=f"publish: {reason}")
        if moved:
            message = (
                f"post {post_id}: delivery failed — {reason}. Fix the cause, then `contentq jobs retry` the failed "
                "deliver job (`contentq jobs list --kind deliver`); what went out is not sent again"
            )
            if reporter is not None:
                reporter.notify(f"publish-failed:{post_id}", message, level="error")
            else:
                runtime.notifier.notify(f"publish-failed:{post_id}", message, level="error")
        return "failed"
    return None


def delivery_summary(rows: list[dict[str, Any]]) -> str:
    """One line per post for listings: 'telegram:@chan published, x:main scheduled'."""
    return ", ".join(f"{r['destination']} {r['state']}" for r in rows)


def platform_ids(row: dict[str, Any]) -> list[Any]:
    try:
        value = json.loads(row["platform_ids"] or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def post_of(runtime: Runtime, delivery: dict[str, Any]) -> dict[str, Any]:
    return get_post(runtime.store, int(delivery["post_id"]))


def settle_fanout(runtime: Runtime, post_id: int, reason: str, reporter: Reporter) -> str:
    """The post's publish job (the fan-out) ended failed: the post follows its deliveries when they are on their
    way; with none handed to a job, it fails with `reason` (retrying the publish job hands them out again)."""
    settled = settle_post(runtime, post_id, reporter)
    if settled is not None:
        return settled
    rows = deliveries_of(runtime.store, post_id)
    if any(r["state"] in ("scheduled", "publishing") and active_deliver_job(runtime.store, r["id"]) for r in rows):
        return "publishing"
    lifecycle.move(runtime.store, post_id, "fan_out_failed", reason=f"publish: {reason}")
    reporter.notify(f"publish-failed:{post_id}", f"publishing post {post_id} failed: {reason}", level="error")
    return "failed"
