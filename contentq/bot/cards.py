"""An approval card: the post as it will be published (publish.render's parts: albums as albums, long texts as
their parts), then a control message with the buttons, which later shows the outcome (who, when, the slot).

Everything here is text and keyboards for the phone screen: one short line per fact, no tables.
"""

from __future__ import annotations

import html
from bisect import insort
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contentq.bot.signing import Callback, Signer
from contentq.clock import iso, now, parse
from contentq.errors import ContentqError
from contentq.flow.schedule import earliest_for, first_free, next_local_midnight, occupied
from contentq.integrations.telegram.bot_gateway import Button, Keyboard
from contentq.integrations.telegram.gateway import OutgoingPart
from contentq.publish import PublishError
from contentq.publish.render import post_media, render
from contentq.routes import Route
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime

SLOT_CHOICES = 6
"""Free slots offered by "Pick a slot"."""

ICONS = {
    "awaiting_approval": "🕓", "scheduled": "✅", "publishing": "🚀", "published": "📣", "rejected": "✖️",
    "collected": "🔁", "rewriting": "🔁", "rewritten": "📝", "failed": "⛔", "cancelled": "🗑",
}  # fmt: skip

WHAT = {
    "approved": "approved", "publish_requested": "sent to publish now", "rescheduled": "rescheduled",
    "rejected": "rejected", "rewrite_again": "sent back for a new rewrite", "unscheduled": "taken off the schedule",
    "publish_started": "being published", "published": "published", "delivered": "published",
}  # fmt: skip


def escape(text: str) -> str:
    """Text for Telegram HTML: <, > and & escaped (quotes need not be, and read better as they are)."""
    return html.escape(text, quote=False)


def route_for(runtime: Runtime, post: dict[str, Any]) -> Route | None:
    """The post's route; None when it is gone from the routes file, or the file cannot be read (a card or an
    outcome is still shown, without the route's slots and time zone)."""
    try:
        return routes_config(runtime).routes.get(post["route"])
    except ContentqError:
        return None


def local(instant: str | datetime | None, timezone: str) -> str:
    """A time as the admin reads it on a phone: 'Tue 02 Jun 18:30 CEST'."""
    if not instant:
        return "—"
    moment = parse(instant) if isinstance(instant, str) else instant
    return moment.astimezone(ZoneInfo(timezone)).strftime("%a %d %b %H:%M %Z")


def parts_of(runtime: Runtime, post: dict[str, Any]) -> tuple[list[OutgoingPart], str]:
    """The parts the post is published as (the publish renderer's own), and a note when they cannot be shown
    (a media file missing: the text alone, said so)."""
    settings = runtime.settings
    route = route_for(runtime, post)
    try:
        media = post_media(runtime.store, settings, post["id"])
        rendered = render(post, media, caption_limit=settings.caption_limit, text_limit=settings.text_limit,
                          route=route)  # fmt: skip
    except PublishError as exc:
        html = str(post.get("rewrite_html") or post.get("text_html") or "")
        return ([OutgoingPart(html=html)] if html.strip() else []), f"⚠️ {escape(str(exc))}"
    notes = "; ".join(escape(n) for n in rendered.notes)
    return rendered.parts, notes


def header(runtime: Runtime, post: dict[str, Any], parts: int, note: str = "") -> str:
    """The control message of an open card."""
    route = route_for(runtime, post)
    tz = route.schedule.timezone if route else "UTC"
    lines = [f"🕓 <b>Post {post['id']}</b> · {escape(str(post['route']))} · awaiting approval"]
    if post.get("title"):
        lines.append(f"<i>{escape(str(post['title']))[:80]}</i>")
    lines.append(f"as published: {parts} message{'s' if parts != 1 else ''} above")
    if route is not None:
        try:
            lines.append(f"next slot: {local(next_slot(runtime, post, route), tz)}")
        except ContentqError as exc:
            lines.append(f"next slot: none ({escape(str(exc))[:120]})")
    if note:
        lines.append(note)
    return "\n".join(lines)


def outcome(runtime: Runtime, post: dict[str, Any], change: dict[str, Any] | None) -> str:
    """The control message once the post has left awaiting approval: what happened, who did it, when, its slot."""
    route = route_for(runtime, post)
    tz = route.schedule.timezone if route else "UTC"
    state = str(post["state"])
    event = str(change["event"]) if change and change.get("event") else state
    lines = [f"{ICONS.get(state, '•')} <b>Post {post['id']}</b> · {escape(str(post['route']))} · "
             f"{WHAT.get(event, event.replace('_', ' '))}"]  # fmt: skip
    if change:
        lines.append(f"by {escape(str(change.get('actor') or 'someone (by hand)'))} · {local(change['at'], tz)}")
        if change.get("reason") and state in ("rejected", "failed", "cancelled"):
            lines.append(f"reason: {escape(str(change['reason']))[:200]}")
    if state == "scheduled" and post.get("scheduled_at"):
        lines.append(f"slot: {local(post['scheduled_at'], tz)}")
    if state == "published" and post.get("link"):
        lines.append(escape(str(post["link"])))
    return "\n".join(lines)


def next_slot(runtime: Runtime, post: dict[str, Any], route: Route) -> datetime:
    slots = free_slots(runtime, post, route, 1)
    if not slots:
        raise ContentqError(f"route {route.name!r} has no free slot in its schedule's horizon")
    return slots[0]


def free_slots(
    runtime: Runtime, post: dict[str, Any], route: Route, count: int, not_before: datetime | None = None
) -> list[datetime]:
    """The next `count` free slots of the post's route (what approve would take first, then the following)."""
    start = not_before or earliest_for(route.schedule, post.get("posted_at"))
    taken = occupied(runtime.store, route.name, start - timedelta(days=2), exclude_post_id=post["id"])
    found: list[datetime] = []
    cursor = start
    for _ in range(count):
        slot = first_free(route.schedule, taken, cursor)
        if slot is None:
            break
        found.append(slot)
        insort(taken, slot)
        cursor = slot
    return found


def tomorrow_first(runtime: Runtime, post: dict[str, Any], route: Route) -> datetime:
    """The route's first free slot from tomorrow 00:00 (its time zone) on."""
    midnight = next_local_midnight(now(), route.schedule.timezone)
    slots = free_slots(runtime, post, route, 1, not_before=max(midnight, earliest_for(route.schedule, None)))
    if not slots:
        raise ContentqError(f"route {route.name!r} has no free slot from tomorrow on; check its [schedule]")
    return slots[0]


# -- keyboards ----------------------------------------------------------------------------------------------


def button(signer: Signer, text: str, action: str, target: object, version: int = 0, arg: str = "") -> Button:
    return Button(text, signer.sign(Callback(action, str(target), version, arg)))


def main_keyboard(signer: Signer, post_id: int, version: int) -> Keyboard:
    def b(text: str, action: str) -> Button:
        return button(signer, text, action, post_id, version)

    return [
        [b("✅ Approve", "ap"), b("🚀 Publish now", "pn")],
        [b("🕒 Reschedule", "rm"), b("✖️ Reject", "rj")],
        [b("✏️ Edit", "ed"), b("🔁 Rewrite again", "rw")],
    ]


def reschedule_keyboard(signer: Signer, post_id: int, version: int) -> Keyboard:
    def b(text: str, action: str) -> Button:
        return button(signer, text, action, post_id, version)

    return [[b("+1 h", "r1"), b("Tomorrow, first slot", "rt")], [b("Pick a slot…", "rp"), b("« Back", "bk")]]


def slots_keyboard(signer: Signer, post_id: int, version: int, slots: list[datetime], timezone: str) -> Keyboard:
    buttons = [
        button(signer, local(slot, timezone), "rs", post_id, version, str(int(slot.timestamp()) // 60))
        for slot in slots
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([button(signer, "« Back", "bk", post_id, version)])
    return rows


def slot_of(arg: str) -> str:
    """The slot a "Pick a slot" button names (minutes since the epoch) as an ISO time."""
    return iso(datetime.fromtimestamp(int(arg) * 60, tz=ZoneInfo("UTC")))
