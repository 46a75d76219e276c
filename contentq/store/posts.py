"""Posts and their state machine; every state change is a compare-and-set."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contentq.clock import iso
from contentq.errors import NotFoundError
from contentq.redact import redact
from contentq.store.db import Store

STATES = (
    "collected",
    "rewriting",
    "rewritten",
    "awaiting_approval",
    "scheduled",
    "publishing",
    "published",
    "duplicate",
    "filtered",
    "failed",
    "cancelled",
    "rejected",
)


def get_post(store: Store, post_id: int) -> dict[str, Any]:
    row = store.one("SELECT * FROM posts WHERE id = ?", (post_id,))
    if row is None:
        raise NotFoundError(f"no post {post_id}; `contentq posts list` shows the posts")
    return row


def transition(store: Store, post_id: int, from_states: str | Iterable[str], to_state: str, **fields: Any) -> bool:
    """Move a post to `to_state` only if it is in one of `from_states`; True when this call moved it."""
    if to_state not in STATES:
        raise ValueError(f"unknown post state {to_state!r}")
    olds = [from_states] if isinstance(from_states, str) else list(from_states)
    if isinstance(fields.get("state_reason"), str):  # reasons quote provider errors: the sink masks secrets
        fields["state_reason"] = redact(fields["state_reason"])
    fields = {**fields, "state": to_state, "updated_at": iso()}
    assignments = ", ".join(f"{column} = ?" for column in fields)
    placeholders = ", ".join("?" for _ in olds)
    with store.transaction() as conn:
        cursor = conn.execute(
            f"UPDATE posts SET {assignments} WHERE id = ? AND state IN ({placeholders})",
            [*fields.values(), post_id, *olds],
        )
        return cursor.rowcount == 1
