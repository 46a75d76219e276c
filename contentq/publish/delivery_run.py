"""One run of a delivery (a post adapted for one destination) and its outcomes, for the platform drivers.

The platform's driver (`deliver_telegram`, `deliver_x`, `deliver_instagram`) adapts the post, takes a token from
the account's bucket, records each part before its request leaves (`delivery_parts`) and, after a crash, looks at
the account's recent posts before sending a part again. Waits (not due, the bucket, X's 429, Instagram's quota)
move the delivery back to `scheduled` with the reason and its new slot, and come back as `Reschedule`: no try is
used. A refusal that retrying cannot help fails the delivery (and, once every delivery has ended, the post).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from contentq import lifecycle
from contentq.clock import iso, now
from contentq.errors import FatalJobError, Reschedule
from contentq.publish import deliveries
from contentq.publish.fanout import Reporter, settle_post
from contentq.routes import Destination, Route, parse_destination
from contentq.runtime.context import Runtime
from contentq.store import Store
from contentq.store.deliveries import take_token

log = logging.getLogger("contentq.publish")

CLOSED_POST_STATES = ("rejected", "cancelled")
"""A post in one of these is not delivered any more: its deliveries still to go are cancelled."""


@dataclass
class DeliveryRun:
    """One run of a delivery's job: what it sends, and how each outcome is recorded."""

    runtime: Runtime
    post: dict[str, Any]
    route: Route
    delivery: dict[str, Any]
    reporter: Reporter
    last_attempt: bool = True
    notes: list[str] = field(default_factory=list)
    """How the post was adapted (a thread, images left out, a caption cut): kept on the delivery."""

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def delivery_id(self) -> int:
        return int(self.delivery["id"])

    @property
    def post_id(self) -> int:
        return int(self.post["id"])

    @property
    def destination(self) -> Destination:
        return parse_destination(self.delivery["destination"])

    @property
    def round_no(self) -> int:
        return int(self.delivery["round"])

    @property
    def name(self) -> str:
        return str(self.delivery["destination"])

    # Outcomes ----------------------------------------------------------------------------------------

    def start(self) -> bool:
        """The delivery is being sent (its post too, when a failed delivery is sent again)."""
        lifecycle.move(self.store, self.post_id, "redelivery_started")
        moved = deliveries.move_delivery(self.store, self.delivery_id, "started")
        if not moved:
            self.reporter.log("skipped", f"delivery {self.name} of post {self.post_id} changed state meanwhile")
        return moved

    def wait(self, delay: float, reason: str) -> Reschedule:
        """It waits `delay` seconds (its slot moves there, the reason is shown); no try is used."""
        due = now() + timedelta(seconds=delay)
        deliveries.move_delivery(
            self.store, self.delivery_id, "postponed", reason=f"waiting: {reason}", due_at=iso(due)
        )
        self.reporter.log("waiting", f"{self.name}: {reason}; again at {iso(due)}", level="warning", seconds=delay)
        return Reschedule(delay, f"{self.name}: {reason}")

    def fail(self, reason: str) -> FatalJobError:
        """It failed for good: recorded, the admin told, the post settled; the job must not be retried."""
        return fail_delivery(self.runtime, self.delivery, self.reporter, reason, notes=self._notes())

    def finish(self, ids: list[Any], link: str | None) -> dict[str, Any]:
        moved = deliveries.move_delivery(
            self.store, self.delivery_id, "published", published_at=iso(), platform_ids=json.dumps(ids), link=link,
            notes=self._notes(), unreachable_tries=0,
        )  # fmt: skip
        if moved:
            self.reporter.log("delivered", f"post {self.post_id} → {self.name}: {link}", ids=ids)
            settle_post(self.runtime, self.post_id, self.reporter)
        else:
            self.reporter.log("discarded", f"{self.name}: the delivery left 'publishing' meanwhile", level="warning")
        return {"post_id": self.post_id, "destination": self.name, "ids": ids, "link": link}

    def _notes(self) -> str | None:
        return "; ".join(dict.fromkeys(self.notes))[:500] or None

    # Limits ------------------------------------------------------------------------------------------

    def take_token(self, burst: int, per_hour: float, count: int = 1) -> None:
        """`count` sends (a thread's tweets) from the account's token bucket, or a wait until they are free
        (raised as Reschedule)."""
        wait = take_token(self.store, self.destination.key, burst, per_hour / 3600.0, count=count)
        if wait > 0:
            raise self.wait(wait, f"rate limit of {self.destination.key} ({burst} at once, {per_hour:g} an hour)")


def fail_delivery(
    runtime: Runtime, delivery: dict[str, Any], reporter: Reporter, reason: str, *, notes: str | None = None
) -> FatalJobError:
    """Fail the delivery (if it is still on its way), tell the admin, settle its post."""
    name, post_id = delivery["destination"], int(delivery["post_id"])
    if deliveries.move_delivery(runtime.store, int(delivery["id"]), "failed", reason=reason, notes=notes):
        reporter.log("delivery_failed", f"{name}: {reason}", level="error")
        reporter.notify(
            f"delivery-failed:{delivery['id']}",
            f"post {post_id} was not published to {name}: {reason}. Fix the cause, then "
            f"`contentq jobs retry` its deliver job (`contentq jobs list --kind deliver`)",
            level="error",
        )
        settle_post(runtime, post_id, reporter)
    return FatalJobError(f"{name}: {reason}")
