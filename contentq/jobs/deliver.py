"""The `deliver` job (queue publish, key = post id:destination): one delivery of a post to one destination.

Thin: the delivery is `contentq.publish.deliver.deliver`; waits come back as Reschedule (not due, the account's
token bucket, X's 429, Instagram's 24 h quota), a delivery that cannot go out as FatalJobError. A deliver job that
ends failed with its delivery still on its way gets a `settle_delivery` job, which looks at the destination.
`contentq jobs retry ID` on a failed deliver job sends that delivery again, and only it.
"""

from __future__ import annotations

import json
from typing import Any

from contentq.errors import FatalJobError, NotFoundError
from contentq.publish.deliver import deliver, settle_delivery
from contentq.publish.delivery_run import fail_delivery
from contentq.runtime.context import JobContext, Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.deliveries import get_delivery


def _delivery_id(payload: dict[str, Any]) -> int:
    if payload.get("delivery_id") is None:
        raise FatalJobError("a deliver job needs a delivery id")
    return int(payload["delivery_id"])


def run(ctx: JobContext, delivery_id: int | None = None, **_: Any) -> dict[str, Any]:
    return deliver(ctx.runtime, _delivery_id({"delivery_id": delivery_id}), ctx, last_attempt=ctx.is_last_attempt)


def on_failed(runtime: Runtime, job: dict[str, Any], reason: str) -> None:
    """The deliver job ended failed with its delivery on its way: a settle_delivery job looks at the destination
    (in a publish worker: a Telegram session is used by one process only)."""
    delivery_id = json.loads(job["payload"] or "{}").get("delivery_id")
    if delivery_id is None:
        return
    try:
        if get_delivery(runtime.store, int(delivery_id))["state"] not in ("publishing", "scheduled"):
            return
    except NotFoundError:
        return
    enqueue(runtime, "settle_delivery", str(delivery_id), {"delivery_id": int(delivery_id), "reason": reason},
            post_id=job["post_id"], parent_id=job["id"])  # fmt: skip


def settle(ctx: JobContext, delivery_id: int, reason: str = "the deliver job failed", **_: Any) -> dict[str, Any]:
    return settle_delivery(ctx.runtime, int(delivery_id), reason, ctx)


def on_settle_failed(runtime: Runtime, job: dict[str, Any], reason: str) -> None:
    """Even the settlement failed: the delivery fails with both reasons; the admin is told to look."""
    payload = json.loads(job["payload"] or "{}")
    try:
        delivery = get_delivery(runtime.store, int(payload["delivery_id"]))
    except (NotFoundError, KeyError, TypeError, ValueError):
        return
    first = payload.get("reason", "the deliver job failed")
    why = f"{first}; settling it failed too ({reason}): look at {delivery['destination']} before `contentq jobs retry`"
    fail_delivery(runtime, delivery, _NotifyOnly(runtime), why)


class _NotifyOnly:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None:
        pass

    def notify(self, key: str, message: str, level: str = "warning") -> bool:
        return self.runtime.notifier.notify(key, message, level=level)
