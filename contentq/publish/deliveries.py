"""The life of a delivery (a post adapted for one destination): its states and the moves between them, by event.

A route with `destinations` publishes each post as one delivery per destination (docs/destinations.md). Each
delivery has its own state, slot (`due_at`), job (`deliver`), retries and record of what the platform returned.
This table is the only way a delivery changes state: `move_delivery` is a compare-and-set from the states the event may
start from, recorded in `delivery_changes` (old state, new state, event, actor, reason) in the same transaction. An
event the table does not know, or a start state it does not allow, raises `IllegalMove`; a delivery that is no
longer where the caller expected (another process moved it) is not moved and `move_delivery` returns False.

The post follows its deliveries (`contentq.publish.fanout.settle_post`), moved by `contentq.lifecycle` like every
post: `published` once every delivery is (event `delivered`), `failed` once every delivery has ended and one of
them failed (`delivery_failed`); a delivery that fails never holds back or repeats another.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contentq import actors
from contentq.machine import NEW as NEW
from contentq.machine import IllegalMove as IllegalMove
from contentq.machine import Machine, Move
from contentq.store import Store
from contentq.store.deliveries import change_delivery_state

STATES: dict[str, str] = {
    "scheduled": "waiting for its slot, or for a limit of its destination to allow it (the reason says which)",
    "publishing": "its deliver job is sending it; parts may be out",
    "published": "on the destination; its ids and link are recorded",
    "failed": "failed for good; the reason says why, `contentq jobs retry` on its deliver job tries again",
    "cancelled": "its post was rejected or cancelled before this delivery went out",
}


MOVES: dict[str, Move] = {
    m.event: m
    for m in [
        Move("created", (NEW,), "scheduled", "the post's publish job fanned the post out to its destinations"),
        Move("started", ("scheduled", "publishing", "failed"), "publishing",
             "its deliver job started sending (again after a stopped run, or after `jobs retry`)"),
        Move("postponed", ("scheduled", "publishing"), "scheduled",
             "it waits: not due yet, the account's token bucket, X's 429, Instagram's 24 h quota"),
        Move("published", ("publishing",), "published", "every part is on the destination"),
        Move("failed", ("scheduled", "publishing"), "failed", "it failed for good (the reason says why)"),
        Move("restarted", ("failed",), "scheduled", "the post's publish job was retried: failed deliveries go again"),
        Move("cancelled", ("scheduled", "failed"), "cancelled", "its post was rejected or cancelled"),
    ]
}  # fmt: skip
"""Every move a delivery can make, by event."""

DONE = ("published", "failed", "cancelled")
"""States no job moves a delivery out of by itself."""


MACHINE = Machine("delivery", MOVES)
spec = MACHINE.spec


def move_delivery(
    store: Store,
    delivery_id: int,
    event: str,
    *,
    reason: str | None = None,
    only_from: str | Iterable[str] | None = None,
    **fields: Any,
) -> bool:
    """Move the delivery by `event`; True when this call moved it. `reason` becomes its `state_reason` (None
    clears it); `fields` are other columns set with the move (due_at, platform_ids, link …)."""
    if "state" in fields or "state_reason" in fields:
        raise IllegalMove("the state and its reason are the move's own: pass `reason`, not a column")
    sources = MACHINE.sources_of(event, only_from)
    with store.transaction() as conn:
        old = change_delivery_state(
            conn, delivery_id, sources, spec(event).target, fields, event=event, actor=actors.current(), reason=reason
        )
    return old is not None


def table() -> list[dict[str, str]]:
    """The moves as rows (event, from, to, what it means): docs/destinations.md shows them."""
    return [{"event": m.event, "from": ", ".join(m.sources), "to": m.target, "doc": m.doc} for m in MOVES.values()]
