"""The admin bot's records (migration 170): cards sent, presses handled, prompts awaiting a reply, alerts to send.

The bot (`contentq.bot`) reads and writes them only through these functions; docs/bot.md says what each means.
"""

from __future__ import annotations

import json
from typing import Any

from contentq.clock import iso
from contentq.store import Store

# -- post versions ---------------------------------------------------------------------------------------


def post_version(store: Store, post_id: int) -> int:
    """The post's state version: the id of its latest history row (AUTOINCREMENT, never reused), 0 if none.
    Every move raises it, so a button signed for one version is stale after any move."""
    return int(store.scalar("SELECT MAX(id) FROM post_changes WHERE post_id = ?", (post_id,)) or 0)


def last_change(store: Store, post_id: int) -> dict[str, Any] | None:
    """The post's latest move: at, from_state, state, event, actor, reason."""
    return store.one(
        "SELECT id, at, from_state, state, event, actor, reason FROM post_changes WHERE post_id = ?"
        " ORDER BY id DESC LIMIT 1",
        (post_id,),
    )


_ENTRY = "(SELECT MAX(c.id) FROM post_changes c WHERE c.post_id = p.id AND c.state = 'awaiting_approval')"


def posts_needing_cards(store: Store, chat_id: int, limit: int) -> list[dict[str, int]]:
    """Posts awaiting approval that have no card in the chat for their latest entry into that state, oldest
    first, with that entry (the history id of the move)."""
    return store.query(
        f"SELECT p.id AS post_id, {_ENTRY} AS entry FROM posts p WHERE p.state = 'awaiting_approval' AND NOT EXISTS"
        f" (SELECT 1 FROM bot_cards b WHERE b.post_id = p.id AND b.chat_id = ? AND b.entry = {_ENTRY})"
        " ORDER BY p.id LIMIT ?",
        (chat_id, limit),
    )


def entry_of(store: Store, post_id: int) -> int | None:
    """The history id of the post's latest move into awaiting_approval (None: never there)."""
    value = store.scalar(
        "SELECT MAX(id) FROM post_changes WHERE post_id = ? AND state = 'awaiting_approval'", (post_id,)
    )
    return int(value) if value is not None else None


# -- cards -----------------------------------------------------------------------------------------------


def claim_card(store: Store, post_id: int, chat_id: int, entry: int, version: int) -> int | None:
    """Record a card before its first message leaves; None when this post's entry has a card in that chat."""
    stamp = iso()
    cursor = store.execute(
        "INSERT OR IGNORE INTO bot_cards (post_id, chat_id, entry, version, status, sent_at, updated_at)"
        " VALUES (?, ?, ?, ?, 'sending', ?, ?)",
        (post_id, chat_id, entry, version, stamp, stamp),
    )
    return int(cursor.lastrowid) if cursor.rowcount == 1 and cursor.lastrowid else None


def card_sent(store: Store, card_id: int, part_ids: list[int], control_id: int, version: int) -> None:
    store.execute(
        "UPDATE bot_cards SET status = 'open', part_ids = ?, control_id = ?, version = ?, error = NULL,"
        " retry_at = NULL, updated_at = ? WHERE id = ?",
        (json.dumps(part_ids), control_id, version, iso(), card_id),
    )


def card_failed(store: Store, card_id: int, error: str, retry_at: str, part_ids: list[int]) -> None:
    store.execute(
        "UPDATE bot_cards SET status = 'failed', error = ?, retry_at = ?, part_ids = ?, updated_at = ? WHERE id = ?",
        (error[:500], retry_at, json.dumps(part_ids), iso(), card_id),
    )


def cards_to_retry(store: Store, at: str) -> list[dict[str, Any]]:
    return store.query("SELECT * FROM bot_cards WHERE status = 'failed' AND retry_at <= ? ORDER BY id", (at,))


def retake_card(store: Store, card_id: int) -> bool:
    """A failed card is sent again: claimed back to 'sending' (False: someone else took it)."""
    cursor = store.execute(
        "UPDATE bot_cards SET status = 'sending', updated_at = ? WHERE id = ? AND status = 'failed'", (iso(), card_id)
    )
    return cursor.rowcount == 1


def interrupted_cards(store: Store) -> int:
    """Cards left 'sending' by a bot that stopped mid-send: their messages may be in the chat, so they are not
    sent again by themselves (`/post ID` re-sends one). Marked 'uncertain'; returns how many."""
    cursor = store.execute(
        "UPDATE bot_cards SET status = 'uncertain', error = 'the bot stopped while sending it', updated_at = ?"
        " WHERE status = 'sending'",
        (iso(),),
    )
    return cursor.rowcount


def card(store: Store, card_id: int) -> dict[str, Any] | None:
    return store.one("SELECT * FROM bot_cards WHERE id = ?", (card_id,))


def card_by_control(store: Store, chat_id: int, control_id: int) -> dict[str, Any] | None:
    return store.one("SELECT * FROM bot_cards WHERE chat_id = ? AND control_id = ?", (chat_id, control_id))


def cards_of_post(store: Store, post_id: int, statuses: tuple[str, ...] = ("open",)) -> list[dict[str, Any]]:
    marks = ", ".join("?" for _ in statuses)
    return store.query(
        f"SELECT * FROM bot_cards WHERE post_id = ? AND status IN ({marks}) ORDER BY id", (post_id, *statuses)
    )


def stale_open_cards(store: Store) -> list[dict[str, Any]]:
    """Open cards whose post moved since their buttons were signed (by the CLI, the panel, a job, the bot)."""
    return store.query(
        "SELECT b.* FROM bot_cards b WHERE b.status = 'open' AND b.version <"
        " (SELECT COALESCE(MAX(c.id), 0) FROM post_changes c WHERE c.post_id = b.post_id) ORDER BY b.id"
    )


def edited_open_cards(store: Store) -> list[dict[str, Any]]:
    """Open cards of posts changed after the card was sent without moving (a text edited from the CLI or the
    panel): they no longer show the post as it will be published."""
    return store.query(
        "SELECT b.* FROM bot_cards b JOIN posts p ON p.id = b.post_id WHERE b.status = 'open'"
        " AND p.state = 'awaiting_approval' AND p.updated_at > b.updated_at ORDER BY b.id"
    )


def close_card(store: Store, card_id: int, outcome: str, version: int) -> None:
    store.execute(
        "UPDATE bot_cards SET status = 'closed', outcome = ?, version = ?, updated_at = ? WHERE id = ?",
        (outcome, version, iso(), card_id),
    )


def set_card_version(store: Store, card_id: int, version: int) -> None:
    store.execute("UPDATE bot_cards SET version = ?, updated_at = ? WHERE id = ?", (version, iso(), card_id))


def replace_card_messages(store: Store, card_id: int, part_ids: list[int], control_id: int) -> None:
    store.execute(
        "UPDATE bot_cards SET part_ids = ?, control_id = ?, updated_at = ? WHERE id = ?",
        (json.dumps(part_ids), control_id, iso(), card_id),
    )


def part_ids(row: dict[str, Any]) -> list[int]:
    return [int(i) for i in json.loads(row.get("part_ids") or "[]")]


# -- presses ---------------------------------------------------------------------------------------------


def first_press(store: Store, query_id: int, user_id: int, chat_id: int, action: str, target: str) -> bool:
    """Record a callback query before it is handled; False when it was handled already (delivered twice)."""
    cursor = store.execute(
        "INSERT OR IGNORE INTO bot_presses (query_id, at, user_id, chat_id, action, target) VALUES (?, ?, ?, ?, ?, ?)",
        (query_id, iso(), user_id, chat_id, action, target),
    )
    return cursor.rowcount == 1


def press_result(store: Store, query_id: int, result: str) -> None:
    store.execute("UPDATE bot_presses SET result = ? WHERE query_id = ?", (result[:500], query_id))


def first_message(store: Store, chat_id: int, message_id: int) -> bool:
    """Record a message before it is handled; False when it was handled already (delivered twice)."""
    cursor = store.execute(
        "INSERT OR IGNORE INTO bot_messages (chat_id, message_id, at) VALUES (?, ?, ?)", (chat_id, message_id, iso())
    )
    return cursor.rowcount == 1


# -- prompts ---------------------------------------------------------------------------------------------


def add_prompt(
    store: Store, chat_id: int, message_id: int, kind: str, post_id: int, version: int, user_id: int
) -> None:
    store.execute(
        "INSERT OR REPLACE INTO bot_prompts (chat_id, message_id, kind, post_id, version, user_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (chat_id, message_id, kind, post_id, version, user_id, iso()),
    )


def prompt(store: Store, chat_id: int, message_id: int) -> dict[str, Any] | None:
    return store.one("SELECT * FROM bot_prompts WHERE chat_id = ? AND message_id = ?", (chat_id, message_id))


def answer_prompt(store: Store, chat_id: int, message_id: int) -> bool:
    """Mark a prompt answered; False when it was answered already (one reply acts once)."""
    cursor = store.execute(
        "UPDATE bot_prompts SET answered_at = ? WHERE chat_id = ? AND message_id = ? AND answered_at IS NULL",
        (iso(), chat_id, message_id),
    )
    return cursor.rowcount == 1


def reopen_prompt(store: Store, chat_id: int, message_id: int) -> None:
    """An answer that was refused (invalid HTML): the admin may reply again."""
    store.execute(
        "UPDATE bot_prompts SET answered_at = NULL WHERE chat_id = ? AND message_id = ?", (chat_id, message_id)
    )


# -- the alerts' outbox ----------------------------------------------------------------------------------


def queue_alert(store: Store, key: str, level: str, message: str) -> int:
    cursor = store.execute(
        "INSERT INTO bot_outbox (key, level, message, created_at) VALUES (?, ?, ?, ?)", (key, level, message, iso())
    )
    return int(cursor.lastrowid or 0)


def unsent_alerts(store: Store, at: str, limit: int = 20, max_attempts: int = 5) -> list[dict[str, Any]]:
    return store.query(
        "SELECT * FROM bot_outbox WHERE sent_at IS NULL AND attempts < ? AND (retry_at IS NULL OR retry_at <= ?)"
        " ORDER BY id LIMIT ?",
        (max_attempts, at, limit),
    )


def alert_sent(store: Store, alert_id: int) -> None:
    store.execute("UPDATE bot_outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?", (iso(), alert_id))


def alert_failed(store: Store, alert_id: int, error: str, retry_at: str) -> None:
    store.execute(
        "UPDATE bot_outbox SET attempts = attempts + 1, error = ?, retry_at = ? WHERE id = ?",
        (error[:500], retry_at, alert_id),
    )


def failed_job_of_post(store: Store, post_id: int) -> dict[str, Any] | None:
    """The post's latest failed or cancelled job (an alert's Retry button names it)."""
    return store.one(
        "SELECT id, generation, status FROM jobs WHERE post_id = ? AND status IN ('failed', 'cancelled')"
        " ORDER BY updated_at DESC, id DESC LIMIT 1",
        (post_id,),
    )


def card_for(store: Store, post_id: int, chat_id: int, entry: int) -> dict[str, Any] | None:
    return store.one(
        "SELECT * FROM bot_cards WHERE post_id = ? AND chat_id = ? AND entry = ?", (post_id, chat_id, entry)
    )
