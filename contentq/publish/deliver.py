"""One delivery sent by its `deliver` job: its run loaded, the platform's driver called (see `delivery_run`)."""

from __future__ import annotations

from typing import Any

from contentq.clock import now, parse
from contentq.errors import ContentqError, DatabaseUnavailableError, FatalJobError, NotFoundError, Reschedule
from contentq.publish import deliveries
from contentq.publish.deliver_instagram import deliver_instagram, settle_instagram
from contentq.publish.deliver_telegram import deliver_telegram, settle_telegram
from contentq.publish.deliver_x import deliver_x, settle_x
from contentq.publish.delivery_run import CLOSED_POST_STATES, DeliveryRun, fail_delivery
from contentq.publish.fanout import Reporter
from contentq.runtime.config import route_of
from contentq.runtime.context import Runtime
from contentq.store.deliveries import get_delivery
from contentq.store.posts import get_post

DRIVERS = {"telegram": deliver_telegram, "x": deliver_x, "instagram": deliver_instagram}
SETTLERS = {"telegram": settle_telegram, "x": settle_x, "instagram": settle_instagram}


def load_run(
    runtime: Runtime, delivery_id: int, reporter: Reporter, *, last_attempt: bool
) -> DeliveryRun | dict[str, Any]:
    """The run for a delivery, or a result saying why there is nothing to do."""
    store = runtime.store
    try:
        delivery = get_delivery(store, delivery_id)
        post = get_post(store, int(delivery["post_id"]))
    except NotFoundError as exc:
        raise FatalJobError(str(exc)) from None
    if delivery["state"] in ("published", "cancelled"):
        return {"delivery_id": delivery_id, "skipped": f"already {delivery['state']}", "link": delivery["link"]}
    if post["state"] in CLOSED_POST_STATES:
        deliveries.move_delivery(store, delivery_id, "cancelled", reason=f"its post was {post['state']}")
        reporter.log("skipped", f"post {post['id']} is {post['state']}: delivery {delivery['destination']} cancelled")
        return {"delivery_id": delivery_id, "skipped": post["state"]}
    try:
        route = route_of(runtime, post["route"])
    except DatabaseUnavailableError:
        raise
    except ContentqError as exc:
        raise fail_delivery(runtime, delivery, reporter, f"its route cannot be loaded: {exc}") from None
    return DeliveryRun(runtime, post, route, delivery, reporter, last_attempt=last_attempt)


def deliver(runtime: Runtime, delivery_id: int, reporter: Reporter, *, last_attempt: bool = True) -> dict[str, Any]:
    """Send one delivery (see the module doc). Raises Reschedule (a wait) or FatalJobError (it failed)."""
    run = load_run(runtime, delivery_id, reporter, last_attempt=last_attempt)
    if isinstance(run, dict):
        return run
    delivery = run.delivery
    if delivery["state"] == "scheduled" and delivery["due_at"]:
        wait = (parse(delivery["due_at"]) - now()).total_seconds()
        if wait > 0:
            raise Reschedule(wait, f"{run.name}: not due until {delivery['due_at']}")
    return DRIVERS[run.destination.platform](run)


def settle_delivery(runtime: Runtime, delivery_id: int, reason: str, reporter: Reporter) -> dict[str, Any]:
    """The deliver job ended failed with the delivery on its way: its driver looks at the account (what went
    out stays recorded), then the delivery is published (every part found) or failed with `reason`."""
    run = load_run(runtime, delivery_id, reporter, last_attempt=True)
    if isinstance(run, dict):
        return run
    if run.delivery["state"] not in ("publishing", "scheduled"):
        return {"delivery_id": delivery_id, "state": run.delivery["state"]}
    return SETTLERS[run.destination.platform](run, reason)
