"""The life of a post: its states, the moves between them, each named by its event, and what follows each move.

This table is the only way a post changes state. `move` (or `move_in`, inside a write transaction its caller
holds) is a compare-and-set from the states the event may start from: the post moves only if it is in one of
them, and the move is recorded in its history (`post_changes`: old state, new state, event, actor, reason) in
the same transaction. An event the table does not know, or a start state it does not allow, raises
`IllegalMove`; a post that is no longer where the caller expected (another process moved it first) is not
moved, and `move` returns False. A post enters the table when it is stored (`enter_in`, from `NEW`). A change
made around the lifecycle (SQL typed by hand) still reaches the history, through a trigger, without an event or
an actor: tests/test_lifecycle.py checks that no code of contentq makes one.

The actor is whoever is acting (`contentq.actors`: the job, the CLI user, the web session, the listener).
What follows a move (the image job, the approval notice, the slot, the dispatch, the admin's alert) is named
in the move's `then` and described in FOLLOW_UPS; `contentq.flow.pipeline` runs them (`pipeline.advance`), so an
event with follow-ups is moved only through it. `contentq posts states` prints the table; docs/pipeline.md
shows it as a diagram made by `mermaid()` (tests/test_lifecycle.py fails when the two differ).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from contentq import actors
from contentq.machine import NEW as NEW
from contentq.machine import IllegalMove as IllegalMove
from contentq.machine import Machine, Move
from contentq.redact import redact
from contentq.store import Store
from contentq.store.posts import change_state, post_history, record_entry

STATES: dict[str, str] = {
    "collected": "stored from a donor, waiting for its rewrite",
    "rewriting": "its rewrite (or an auto-post's writing) is under way",
    "rewritten": "written; waiting for its image, or about to be held or scheduled",
    "awaiting_approval": "held until an operator approves or rejects it",
    "scheduled": "has its slot; the publish job sends it then",
    "publishing": "its publish job is sending it",
    "published": "in the channel",
    "duplicate": "a copy of a post already stored; never rewritten",
    "filtered": "left out by the route's filters or by the rewriter",
    "failed": "a step failed for good; the reason says which and what to do",
    "cancelled": "no longer to be published: deleted by the donor, or nothing was written",
    "rejected": "rejected by an operator",
}
"""Every state a post can be in, and what it means."""


_REWRITE_AGAIN = ("rewriting", "rewritten", "awaiting_approval", "scheduled")
_NOT_PUBLISHED = ("collected", *_REWRITE_AGAIN)
_OPERATOR_CAN_MOVE = ("rewritten", "awaiting_approval", "scheduled", "failed")
_PUBLISH_FROM = ("scheduled", "publishing", "failed")
_ON_ITS_WAY = ("publishing", "scheduled")

MOVES: dict[str, Move] = {
    m.event: m
    for m in [
        # intake
        Move("collected", (NEW,), "collected", "stored from a donor (collect, listen, an export)",
             then=("rewrite_job",)),
        Move("duplicate", (NEW,), "duplicate", "stored as a copy of a post already kept (dedup, late album items)"),
        Move("filtered", (NEW, "rewriting"), "filtered",
             "left out by the route's filters, or by the rewriter (an ad, off-topic)"),
        Move("due", (NEW,), "rewriting", "an auto-posting rule's post, stored when it is due for its generate job"),
        # rewrite
        Move("rewrite_started", ("collected", "rewriting", "failed"), "rewriting",
             "a rewrite job took it (again after a stopped run, or after a failed rewrite)"),
        Move("rewrite_postponed", ("rewriting",), "collected",
             "the rewrite waits (the LLM asked for a wait, its breaker is open) or is tried again"),
        Move("rewrite_stopped", ("rewriting",), "collected",
             "its rewrite job was cancelled while it ran: stopped between two model calls"),
        Move("rewrite_requested", ("failed",), "collected", "an operator asked for a new rewrite (`contentq rewrite`)"),
        Move("donor_edited", _REWRITE_AGAIN, "collected", "the donor edited it before it was published",
             then=("rewrite_job",)),
        Move("rewritten", ("rewriting",), "rewritten", "the rewrite (or the auto-post) is written",
             then=("image_job", "next_step")),
        Move("rewrite_failed", ("collected", "rewriting"), "failed", "its rewrite failed for good"),
        Move("write_failed", ("rewriting",), "failed", "an auto-post's writing failed for good",
             then=("tell_admin",)),
        Move("nothing_written", ("rewriting",), "cancelled", "the model declined an auto-post's topic"),
        Move("write_stopped", ("rewriting",), "cancelled",
             "an auto-post's generate job was cancelled while it ran: the operator does not want it"),
        # approval and schedule
        Move("image_failed", ("rewritten",), "failed", "its route requires an image and none could be made",
             then=("tell_admin",)),
        Move("held", ("rewritten",), "awaiting_approval", "its route wants approval", then=("approval_notice",)),
        Move("scheduled", ("rewritten",), "scheduled", "took the next free slot of its route", then=("dispatch",)),
        Move("unschedulable", ("rewritten",), "failed", "its route's schedule has no free slot",
             then=("tell_admin",)),
        Move("approved", ("awaiting_approval",), "scheduled", "an operator approved it: the next free slot",
             then=("dispatch",)),
        Move("rescheduled", _OPERATOR_CAN_MOVE, "scheduled", "an operator gave it a time (`contentq schedule --at`)",
             then=("dispatch",)),
        Move("publish_requested", _OPERATOR_CAN_MOVE, "scheduled",
             "an operator publishes it now (`contentq publish`): the caller hands it over at once"),
        Move("unscheduled", ("scheduled",), "awaiting_approval", "an operator took it off the schedule"),
        Move("rejected", _OPERATOR_CAN_MOVE, "rejected", "an operator rejected it"),
        # publish
        Move("publish_started", _PUBLISH_FROM, "publishing",
             "its publish job started sending it (or found every part out when settling)"),
        Move("publish_postponed", ("publishing",), "scheduled",
             "the send waits: rate limit, FLOOD_WAIT, Telegram unreachable"),
        Move("published", ("publishing",), "published", "every part is in the channel"),
        Move("publish_failed", _PUBLISH_FROM, "failed", "publishing failed for good; what went out was taken back"),
        # publish to a route's destinations (docs/destinations.md): one delivery each, the post follows them
        Move("fanned_out", _PUBLISH_FROM, "publishing",
             "its publish job handed each destination's delivery to a deliver job (again: the failed ones only)"),
        Move("redelivery_started", ("scheduled", "failed"), "publishing",
             "a deliver job started sending one of its deliveries (again, after `jobs retry` on it)"),
        Move("delivered", ("publishing",), "published", "every delivery is out on its destination"),
        Move("delivery_failed", _ON_ITS_WAY, "failed",
             "every delivery has ended and one failed; what went out on the others stays and is not sent again"),
        Move("fan_out_failed", _ON_ITS_WAY, "failed",
             "its publish job failed before every delivery had a deliver job; retrying it hands them out"),
        # the donor deleted it
        Move("donor_deleted", _NOT_PUBLISHED, "cancelled", "the donor deleted it before it was published"),
        Move("withdrawn", ("published",), "cancelled",
             "deleted from the channel after the donor deleted it (on_donor_delete = \"delete_published\")"),
    ]
}  # fmt: skip
"""Every move a post can make, by event."""

FOLLOW_UPS: dict[str, str] = {
    "image_job": "an imagegen job, when the route adds an image (a prompt from the rewrite, or the card backend)",
    "next_step": "once its image is attached (or not needed): `held` when the route wants approval, else "
    "`scheduled`; `image_failed` when a required image was not asked for, `unschedulable` without a slot",
    "approval_notice": "the admin is told the post awaits approval",
    "dispatch": "handed to the publish queue when its slot is within the dispatch horizon (90 s)",
    "rewrite_job": "a rewrite job for the post's (new) text",
    "tell_admin": "the admin is told why it failed",
}
"""What a move's `then` may name, run by `contentq.flow.pipeline` after the move is committed."""


MACHINE = Machine("post", MOVES)
spec = MACHINE.spec
sources_of = MACHINE.sources_of


def _reason(reason: str | None) -> str | None:
    # Reasons quote provider errors: the sink masks secrets; the post keeps 500 characters of it.
    return None if reason is None else redact(reason)[:500]


def move_in(
    conn: sqlite3.Connection,
    post_id: int,
    event: str,
    *,
    reason: str | None = None,
    only_from: str | Iterable[str] | None = None,
    then: bool = False,
    **fields: Any,
) -> bool:
    """Move the post by `event` inside the write transaction the caller holds; True when it moved.

    `reason` becomes the post's `state_reason` (None clears it) and the history's; `fields` are other columns
    set with the move. An event with follow-ups needs `then=True`: its caller (contentq.flow.pipeline) runs them."""
    move = spec(event)
    if move.then and not then:
        raise IllegalMove(f"{event!r} is followed by {', '.join(move.then)}: move it with pipeline.advance")
    if "state" in fields or "state_reason" in fields:
        raise IllegalMove("the state and its reason are the move's own: pass `reason`, not a column")
    old = change_state(
        conn, post_id, sources_of(event, only_from), move.target, fields,
        event=event, actor=actors.current(), reason=_reason(reason),
    )  # fmt: skip
    return old is not None


def move(
    store: Store,
    post_id: int,
    event: str,
    *,
    reason: str | None = None,
    only_from: str | Iterable[str] | None = None,
    then: bool = False,
    **fields: Any,
) -> bool:
    """`move_in` in a write transaction of its own."""
    sources_of(event, only_from)  # a bad call raises before the write lock is taken
    with store.transaction() as conn:
        return move_in(conn, post_id, event, reason=reason, only_from=only_from, then=then, **fields)


def enter_in(
    conn: sqlite3.Connection, post_id: int, event: str, reason: str | None = None, *, then: bool = False
) -> None:
    """Record how a post just inserted (in the caller's transaction) entered the table: its first history row.
    An entry with follow-ups needs `then=True`: the caller runs them after its transaction (pipeline.follow_up)."""
    move = spec(event)
    if move.then and not then:
        raise IllegalMove(f"{event!r} is followed by {', '.join(move.then)}: its caller must run them")
    if NEW not in move.sources:
        raise IllegalMove(f"{event!r} moves a stored post; a new post enters by {', '.join(entry_events())}")
    state = record_entry(conn, post_id, event, actors.current(), _reason(reason))
    if state != move.target:
        raise IllegalMove(f"post {post_id} was stored as {state}, but {event!r} stores it as {move.target}")


def entry_events() -> list[str]:
    return [m.event for m in MOVES.values() if NEW in m.sources]


def history(store: Store, post_id: int) -> list[dict[str, Any]]:
    """The post's moves, oldest first: at, from_state, state, event, actor, reason."""
    return post_history(store, post_id)


def allowed(row: dict[str, Any]) -> bool:
    """Whether a history row is a move the table allows (an entry has no from_state)."""
    move = MOVES.get(str(row.get("event")))
    if move is None or move.target != row.get("state"):
        return False
    return (row.get("from_state") or NEW) in move.sources


# -- the table, printed ---------------------------------------------------------------------------------


def as_json() -> dict[str, Any]:
    """The machine for tools (`contentq posts states --json`)."""
    return {
        "states": [{"state": name, "meaning": doc} for name, doc in STATES.items()],
        "start": NEW,
        "moves": [
            {"event": m.event, "from": list(m.sources), "to": m.target, "meaning": m.doc, "then": list(m.then)}
            for m in MOVES.values()
        ],
        "follow_ups": [{"name": name, "does": doc} for name, doc in FOLLOW_UPS.items()],
    }


def mermaid() -> str:
    """The machine as a Mermaid state diagram: one arrow per (from, to) pair, labelled with its events."""
    edges: dict[tuple[str, str], list[str]] = {}
    for m in MOVES.values():
        for source in m.sources:
            edges.setdefault((source, m.target), []).append(m.event)
    lines = ["stateDiagram-v2"]
    for (source, target), events in edges.items():
        start = "[*]" if source == NEW else source
        lines.append(f"    {start} --> {target}: {', '.join(events)}")
    return "\n".join(lines) + "\n"


def _check_table() -> None:
    for m in MOVES.values():
        unknown = [s for s in (*m.sources, m.target) if s != NEW and s not in STATES]
        steps = [t for t in m.then if t not in FOLLOW_UPS]
        if unknown or steps or m.target == NEW:
            raise AssertionError(f"move {m.event!r}: unknown states {unknown} or follow-ups {steps}")


_check_table()
