"""Publishing one post: render it into parts, send each part exactly once, record what Telegram returned.

Rendering: a text post is one message; media go as one media message or one album (2–10 items, a single
send); a caption longer than the limit (CONTENTQ_CAPTION_LIMIT, 2048 for a Premium account) makes the
media go first without caption and the text follow as its own message — one batch.

Exactly once: each part is recorded in `sends` (status `attempting`, with its random ids) before it is
sent. The random ids are derived from (post, target, round, part, item), so sending a part again after
a crash repeats the same ids and Telegram refuses it (RandomIdDuplicateError) instead of posting twice.
An `attempting` row found by a later run, or that refusal, is an uncertain outcome: it is settled by
looking at the target's recent messages, never by a blind resend. A part failing critically cancels
the batch (the parts already sent are deleted; the next round uses fresh random ids), the post fails
with the reason and the admin is told.

Waits never block the worker: the per-target interval and the account budget, FLOOD_WAIT and an
unreachable Telegram all raise `Reschedule`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from telethon import errors as tg_errors

from contentq.channels import resolve_channel
from contentq.clock import iso, now, parse
from contentq.content.html import html_to_text, visible_len_utf16
from contentq.content.split import SplitError, credit_html, custom_emoji_count, plain_emoji, split_html, truncate
from contentq.errors import (
    ContentqError,
    DatabaseLockedError,
    FatalJobError,
    NotFoundError,
    RedisUnavailableError,
    Reschedule,
)
from contentq.integrations.telegram.gateway import (
    Account,
    FetchedMessage,
    MediaInfo,
    OutgoingMedia,
    OutgoingPart,
    ResolvedChannel,
    TelegramGateway,
)
from contentq.routes import Route, normalize_channel_ref
from contentq.runtime.context import Runtime
from contentq.settings import Settings
from contentq.store import Store
from contentq.store.posts import get_post, transition

log = logging.getLogger("contentq.publish")

ALBUM_MAX = 10
"""Telegram sends at most 10 media in one album."""

PREMIUM_CAPTION_LIMIT = 2048
"""Captions a Premium account may send."""

SETTLE_LOOKBACK = 100
"""Recent messages of the target looked at to settle an uncertain send."""

SETTLE_CLOCK_SLACK = timedelta(seconds=120)
"""A message dated this much before the attempt still counts (clock skew between us and Telegram)."""

RATE_WINDOW_MS = 60_000
"""The account budget counts sends in this sliding window."""

MEDIA_KINDS = {"photo": "photo", "video": "video", "document": "document", "audio": "audio", "voice": "voice"}


class Reporter(Protocol):
    """Where progress goes: the job's event log and the admin (a JobContext is one)."""

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None: ...

    def notify(self, key: str, message: str, level: str = "warning") -> bool: ...


class PublishError(FatalJobError):
    """The post cannot be published as it is (retrying does not help)."""


@dataclass
class Rendered:
    html: str
    parts: list[OutgoingPart]
    media: list[dict[str, Any]] = field(default_factory=list)
    caption_limit: int = 1024
    caption_moved: bool = False
    long_text: str = "split"
    truncated: bool = False
    """Cut with an ellipsis (`long_text = "truncate"`)."""
    custom_emoji: int = 0
    """Custom emoji in the text (sent as such, or as their plain emoji when the account cannot)."""
    credited: bool = False
    """A forward_credit was added."""
    notes: list[str] = field(default_factory=list)
    """Kept on the published post (state_reason), without an alert."""

    @property
    def text_parts(self) -> int:
        return sum(1 for part in self.parts if part.kind == "text")


# -- rendering ----------------------------------------------------------------------------------------


def post_html(post: dict[str, Any]) -> str:
    html = post.get("rewrite_html")
    return str(html if html is not None else post.get("text_html") or "")


def post_media(store: Store, settings: Settings, post_id: int) -> list[dict[str, Any]]:
    """The media files of a post, donor media first (in album order), then generated images."""
    rows = store.query(
        "SELECT * FROM media WHERE post_id = ? AND path IS NOT NULL ORDER BY origin = 'generated', position, id",
        (post_id,),
    )
    for row in rows:
        row["file"] = settings.media_dir / row["path"]
        if not row["file"].exists():
            raise PublishError(
                f"media file {row['file']} of post {post_id} is missing; re-collect the post or remove the media"
            )
    return rows


def render(
    post: dict[str, Any],
    media: list[dict[str, Any]],
    *,
    caption_limit: int,
    text_limit: int,
    route: Route | None = None,
    custom_emoji: bool = True,
) -> Rendered:
    """The parts to send for a post, in order (see the module doc); `custom_emoji`: whether the account can
    send them (else each goes as its plain emoji)."""
    long_text = route.long_text if route is not None else "split"
    html = post_html(post).strip()
    rendered = Rendered(html, [], media, caption_limit, long_text=long_text)
    if route is not None and route.forward_credit and post.get("is_forward"):
        credit = credit_html(route.forward_credit, name=post.get("forward_name"), link=post.get("forward_link"))
        if credit is None:
            rendered.notes.append("forwarded post: its origin is not known, so no forward_credit was added")
        else:
            html = f"{html}\n\n{credit}" if html else credit
            rendered.credited = True
    rendered.custom_emoji = custom_emoji_count(html)
    if rendered.custom_emoji and not custom_emoji:
        html = plain_emoji(html)
    rendered.html = html
    length = visible_len_utf16(html)
    if not media and not html:
        raise PublishError(f"post {post['id']} has neither text nor media; edit it with `contentq posts edit`")
    items = [OutgoingMedia(path=Path(m["file"]), kind=MEDIA_KINDS.get(m["kind"], "document")) for m in media]  # type: ignore[arg-type]
    chunks = [items[i : i + ALBUM_MAX] for i in range(0, len(items), ALBUM_MAX)]
    if media and length <= caption_limit:
        rendered.parts = [OutgoingPart(html=html if i == 0 else "", media=chunk) for i, chunk in enumerate(chunks)]
        return rendered
    # The text is a message of its own (after the media, if any): split, or cut under `truncate`.
    rendered.caption_moved = bool(media)
    if long_text == "truncate":
        cut, rendered.truncated = truncate(html, text_limit)
        texts = [cut]
        if rendered.truncated:
            rendered.notes.append(
                f"text cut to {visible_len_utf16(cut)} of its {length} characters (UTF-16 units) with an ellipsis: "
                f'the route has long_text = "truncate"'
            )
    else:
        try:
            texts = split_html(html, text_limit, number=bool(route and route.number_parts))
        except SplitError as exc:
            raise PublishError(f"post {post['id']}: {exc}") from None
    rendered.parts = [OutgoingPart(html="", media=chunk) for chunk in chunks] + [OutgoingPart(html=t) for t in texts]
    return rendered


def caption_limit_for(settings: Settings, account: Account | None) -> int:
    if account is not None and account.premium:
        return max(settings.caption_limit, PREMIUM_CAPTION_LIMIT)
    return settings.caption_limit


def random_id_for(post_id: int, target_id: int, round_no: int, part: int, item: int) -> int:
    """A deterministic, non-zero signed 64-bit id for one sent item."""
    digest = hashlib.sha256(f"contentq/{post_id}/{target_id}/{round_no}/{part}/{item}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True) or 1


def message_link(channel: ResolvedChannel, message_id: int) -> str:
    if channel.username:
        return f"https://t.me/{channel.username}/{message_id}"
    raw = str(channel.id)
    if raw.startswith("-100"):
        raw = raw[4:]
    return f"https://t.me/c/{raw.lstrip('-')}/{message_id}"


# -- the sends table ----------------------------------------------------------------------------------


def _send_row(store: Store, post_id: int, target: str, round_no: int, part: int) -> dict[str, Any] | None:
    return store.one(
        "SELECT * FROM sends WHERE post_id = ? AND target = ? AND round = ? AND part = ?",
        (post_id, target, round_no, part),
    )


def _record_attempt(
    store: Store, post_id: int, target: str, round_no: int, part: int, kind: str, random_ids: list[int]
) -> None:
    """Committed before the request leaves: a crash after it leaves an `attempting` row behind. A retry keeps
    `created_at`, the first attempt: an uncertain send is looked for from then on."""
    stamp = iso()
    store.execute(
        "INSERT INTO sends (post_id, target, round, part, kind, random_id, random_ids, status, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'attempting', ?, ?)"
        " ON CONFLICT (post_id, target, round, part) DO UPDATE SET status = 'attempting', error = NULL,"
        " updated_at = excluded.updated_at",
        (post_id, target, round_no, part, kind, random_ids[0], json.dumps(random_ids), stamp, stamp),
    )


def _record_sent(store: Store, row_key: tuple[int, str, int, int], message_ids: list[int]) -> None:
    store.execute(
        "UPDATE sends SET status = 'sent', message_ids = ?, error = NULL, updated_at = ?"
        " WHERE post_id = ? AND target = ? AND round = ? AND part = ?",
        (json.dumps(message_ids), iso(), *row_key),
    )


def _record_refused(store: Store, row_key: tuple[int, str, int, int], error: str) -> None:
    """The request was refused before anything was posted (flood wait, bad request): not uncertain."""
    store.execute(
        "UPDATE sends SET status = 'failed', error = ?, updated_at = ?"
        " WHERE post_id = ? AND target = ? AND round = ? AND part = ?",
        (error[:500], iso(), *row_key),
    )


def recorded_message_ids(store: Store, target: str) -> set[int]:
    """Message ids of the target recorded for any send (any post, any round): never another part's."""
    rows = store.query(
        "SELECT message_ids FROM sends WHERE target = ? AND message_ids IS NOT NULL AND message_ids != '[]'",
        (target,),
    )
    return {int(i) for r in rows for i in json.loads(r["message_ids"] or "[]")}


def sends_of(store: Store, post_id: int) -> list[dict[str, Any]]:
    return store.query("SELECT * FROM sends WHERE post_id = ? ORDER BY round, part", (post_id,))


# -- settling an uncertain send -----------------------------------------------------------------------


_SPACE = re.compile(r"\s+")


def _norm(html: str) -> str:
    return _SPACE.sub(" ", html_to_text(html or "")).strip()


def _fingerprint(info: MediaInfo, item: OutgoingMedia) -> bool | None:
    """Whether a fetched media is the file sent: True (same name or size: Telegram keeps a document's bytes),
    False (it is another file), None (nothing to tell by: a photo is recompressed)."""
    if info.kind != item.kind:
        return False
    if info.kind == "photo":
        return None
    verdict: bool | None = None
    if info.file_name:
        if info.file_name != item.path.name:
            return False
        verdict = True
    if info.size is not None:
        try:
            size = item.path.stat().st_size
        except OSError:
            return verdict
        if info.size != size:
            return False
        verdict = True
    return verdict


def settle_candidates(
    recent: list[FetchedMessage], part: OutgoingPart, attempted_at: datetime, exclude: set[int]
) -> tuple[list[list[int]], list[list[int]]]:
    """The messages among the target's recent ones (newest first) that may be `part`, sent at or after
    `attempted_at` and not already recorded as another send (`exclude`): (strong, weak) lists of message ids.
    Strong: the text or caption matches, or every media item's fingerprint does. Weak: only the kind and the
    album size match (a captionless photo)."""
    since = attempted_at - SETTLE_CLOCK_SLACK
    candidates = [m for m in recent if m.id not in exclude and m.date >= since]
    wanted = _norm(part.html)
    strong: list[list[int]] = []
    weak: list[list[int]] = []
    if part.kind == "text":
        strong = [[m.id] for m in candidates if m.media is None and _norm(m.html) == wanted]
        return strong, weak
    groups: list[list[FetchedMessage]] = []
    if part.kind == "media":
        groups = [[m] for m in candidates if m.media is not None and m.grouped_id is None]
    else:
        by_group: dict[int, list[FetchedMessage]] = {}
        for m in candidates:
            if m.media is not None and m.grouped_id is not None:
                by_group.setdefault(m.grouped_id, []).append(m)
        groups = [sorted(members, key=lambda m: m.id) for members in by_group.values()]
    for members in groups:
        if len(members) != len(part.media):
            continue
        text = " ".join(t for t in (_norm(m.html) for m in members) if t)
        if text != wanted:
            continue
        prints = [_fingerprint(m.media, item) for m, item in zip(members, part.media, strict=True) if m.media]
        if False in prints:
            continue
        ids = [m.id for m in members]
        if wanted or (prints and all(prints)):
            strong.append(ids)
        else:
            weak.append(ids)
    return strong, weak


def find_sent(
    recent: list[FetchedMessage],
    part: OutgoingPart,
    attempted_at: datetime,
    exclude: set[int],
    *,
    weak_ok: bool = False,
) -> list[int] | None:
    """The message ids of `part` when they can be told apart, else None: one strong match; with `weak_ok`
    (Telegram said the part went out), also the one candidate there is. Several candidates are never guessed."""
    strong, weak = settle_candidates(recent, part, attempted_at, exclude)
    if len(strong) == 1:
        return strong[0]
    if weak_ok and not strong and len(weak) == 1:
        return weak[0]
    return None


# -- rate control -------------------------------------------------------------------------------------

_RESERVE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local wait = 0
if interval > 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then wait = ttl end
end
if budget > 0 then
  if n > budget then n = budget end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[2])
  if count + n > budget then
    local oldest = redis.call('ZRANGE', KEYS[2], count + n - budget - 1, count + n - budget - 1, 'WITHSCORES')
    local until_free = tonumber(oldest[2]) + window - now
    if until_free > wait then wait = until_free end
  end
end
if wait > 0 then return wait end
if interval > 0 then redis.call('SET', KEYS[1], now, 'PX', interval) end
if budget > 0 then
  for i = 1, n do redis.call('ZADD', KEYS[2], now, ARGV[6] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[2], window)
end
return 0
"""


def reserve_send(runtime: Runtime, target: str, account_id: int, sends: int, tag: str) -> float:
    """Take a place under the per-target interval and the account budget: 0 when granted, else seconds to wait."""
    settings = runtime.settings
    script = runtime.redis.register_script(_RESERVE)
    wait_ms = script(
        keys=[f"contentq:publish:interval:{target}", f"contentq:publish:budget:{account_id}"],
        args=[
            int(now().timestamp() * 1000),
            max(0, settings.publish_min_interval) * 1000,
            max(0, settings.publish_account_budget),
            RATE_WINDOW_MS,
            sends,
            tag,
        ],
    )
    return float(wait_ms) / 1000.0


# -- publishing ---------------------------------------------------------------------------------------


class _LogReporter:
    """Progress to the Python log, alerts to the admin (publishing outside a job)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None:
        log.log({"warning": logging.WARNING, "error": logging.ERROR}.get(level, logging.INFO), "%s: %s", event, message)

    def notify(self, key: str, message: str, level: str = "warning") -> bool:
        try:
            return self.runtime.notifier.notify(key, message, level=level)
        except Exception as exc:  # an alert that cannot go out must not change the publication's outcome
            log.warning("could not notify the admin (%s): %s", key, exc)
            return False


def _account(runtime: Runtime, gateway: TelegramGateway) -> Account:
    cached = runtime.services.get("telegram_account")
    if cached is not None and cached[0] is gateway:
        return cached[1]
    account = gateway.account()
    runtime.services["telegram_account"] = (gateway, account)
    return account


def _jitter(seconds: float) -> float:
    return random.uniform(1.0, max(2.0, seconds * 0.1))


@dataclass
class Publication:
    """One run of publishing a post to Telegram."""

    runtime: Runtime
    post: dict[str, Any]
    route: Route
    reporter: Reporter
    last_attempt: bool = True
    gateway: TelegramGateway | None = None
    target: ResolvedChannel | None = None
    round_no: int = 0
    parts: list[OutgoingPart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Kept on the published post (state_reason): e.g. a part whose message ids are unknown."""
    rendered: Rendered | None = None
    """How the post is sent; its notes are kept on the published post too, without an alert."""

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def post_id(self) -> int:
        return int(self.post["id"])

    @property
    def target_ref(self) -> str:
        return normalize_channel_ref(self.route.target)

    # Outcomes --------------------------------------------------------------------------------------

    def fail(self, reason: str, *, cancel: bool = True) -> FatalJobError:
        """Cancel the batch, fail the post, tell the admin; the job must not be retried."""
        if cancel:
            problem = self.cancel_batch(reason)
            if problem:
                reason = f"{reason}; {problem}"
        transition(self.store, self.post_id, ("publishing", "scheduled", "failed"), "failed",
                   state_reason=f"publish: {reason}"[:500], unreachable_tries=0)  # fmt: skip
        self.reporter.log("publish_failed", reason, level="error")
        self.reporter.notify(
            f"publish-failed:{self.post_id}",
            f"publishing post {self.post_id} to {self.route.target} failed: {reason}. "
            f"Fix the cause, then `contentq jobs retry` the publish job (see `contentq jobs list --kind publish`)",
            level="error",
        )
        return FatalJobError(reason)

    def cancel_batch(self, reason: str) -> str | None:
        """Delete what this round sent, so the channel never shows half a post; the next round gets new ids.

        Returns None when the batch was taken back (or nothing was out), else what stopped it: a part that
        could not be checked or deleted stays recorded (`attempting` / `sent`) and the round is kept, so a
        restart completes the batch by looking at the channel instead of sending a part that may be visible.
        """
        rows = self.store.query(
            "SELECT * FROM sends WHERE post_id = ? AND target = ? AND round = ? AND status IN ('sent', 'attempting')",
            (self.post_id, self.target_ref, self.round_no),
        )
        if not rows:
            return None
        ids = [i for r in rows if r["status"] == "sent" for i in json.loads(r["message_ids"] or "[]")]
        uncertain = [r["part"] for r in rows if r["status"] == "attempting"]
        unknown = [r["part"] for r in rows if r["status"] == "sent" and not json.loads(r["message_ids"] or "[]")]
        if self.gateway is None or self.target is None:
            unchecked = sorted(uncertain + [r["part"] for r in rows if r["status"] == "sent"])
        else:
            found, unchecked = self._settle_for_cancel(uncertain)
            ids += found
            unchecked = sorted(unchecked + unknown)
        if unchecked:
            parts = ", ".join(str(p + 1) for p in unchecked)
            problem = (
                f"part(s) {parts} of this post may be visible in {self.route.target} and could not be checked "
                f"or taken back: check the channel, then either delete the post's messages there and "
                f"`contentq posts reject {self.post_id}`, or `contentq jobs retry` the publish job to complete it"
            )
            self.reporter.log("cancel_unchecked", problem, level="error", parts=unchecked)
            self.reporter.notify(f"publish-cancel-failed:{self.post_id}", f"post {self.post_id}: {problem}", "error")
            return problem
        if ids:
            assert self.gateway is not None and self.target is not None
            try:
                self.gateway.delete_messages(self.target, ids)
                self.reporter.log("batch_cancelled", f"deleted messages {ids} already sent ({reason})", level="warning")
            except Exception as exc:
                # Still out: the sends stay recorded, so a restart completes the batch instead of repeating it.
                problem = (
                    f"could not delete the parts already sent (messages {ids} in {self.route.target}): {exc}; "
                    "delete them by hand, or restart the publication to complete it"
                )
                self.reporter.log("cancel_failed", problem, level="error")
                self.reporter.notify(
                    f"publish-cancel-failed:{self.post_id}", f"post {self.post_id}: {problem}", "error"
                )
                return problem
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE sends SET status = 'deleted', updated_at = ? WHERE post_id = ? AND target = ? AND round = ?"
                " AND status IN ('sent', 'attempting')",
                (iso(), self.post_id, self.target_ref, self.round_no),
            )
            conn.execute(
                "UPDATE posts SET publish_round = ? WHERE id = ? AND publish_round = ?",
                (self.round_no + 1, self.post_id, self.round_no),
            )
        return None

    def _settle_for_cancel(self, parts: list[int]) -> tuple[list[int], list[int]]:
        """(message ids of the uncertain parts found in the channel, parts that could not be checked)."""
        assert self.gateway is not None and self.target is not None
        if not parts:
            return [], []
        try:
            recent = self.gateway.recent_messages(self.target, SETTLE_LOOKBACK)
        except Exception as exc:
            self.reporter.log("settle_failed", f"could not look at {self.route.target}: {exc}", level="error")
            return [], list(parts)
        found: list[int] = []
        unchecked: list[int] = []
        rendered = self.parts
        exclude = recorded_message_ids(self.store, self.target_ref)
        for index in parts:
            row = _send_row(self.store, self.post_id, self.target_ref, self.round_no, index)
            if row is None:
                continue
            if index >= len(rendered):
                unchecked.append(index)
                continue
            since = parse(row["created_at"])
            strong, weak = settle_candidates(recent, rendered[index], since, exclude | set(found))
            if len(strong) == 1:
                found += strong[0]
            elif not strong and len(weak) == 1:
                found += weak[0]
            elif strong or weak:  # several could be it: never delete a message that may be another post's
                unchecked.append(index)
        return found, unchecked

    def outstanding(self) -> int:
        """Parts of this round that are out, or may be (sent or attempting)."""
        return int(
            self.store.scalar(
                "SELECT COUNT(*) FROM sends WHERE post_id = ? AND target = ? AND round = ?"
                " AND status IN ('sent', 'attempting')",
                (self.post_id, self.target_ref, self.round_no),
            )
        )

    def back_to_scheduled(self, reason: str) -> None:
        """Nothing of this round is out: the post waits as `scheduled` (its job stays queued)."""
        if not self.outstanding():
            transition(self.store, self.post_id, "publishing", "scheduled", state_reason=reason[:500])

    def flood_wait(self, exc: Exception) -> Exception:
        seconds = float(getattr(exc, "seconds", 0) or 0)
        delay = seconds + _jitter(seconds)
        reason = f"FLOOD_WAIT of {seconds:.0f} s from Telegram while publishing to {self.route.target}"
        sent_any = self.store.scalar(
            "SELECT COUNT(*) FROM sends WHERE post_id = ? AND target = ? AND round = ? AND status = 'sent'",
            (self.post_id, self.target_ref, self.round_no),
        )
        if sent_any and seconds > self.runtime.settings.tg_flood_sleep_threshold:
            problem = self.cancel_batch(f"{reason}; the whole post is sent again after the wait")
            if problem:
                return self.fail(f"{reason}; {problem}", cancel=False)
        self.back_to_scheduled(f"waiting: {reason}")
        self.reporter.log("flood_wait", f"{reason}; trying again in {delay:.0f} s", level="warning", seconds=seconds)
        if seconds > self.runtime.settings.flood_notify_threshold:
            self.reporter.notify(
                f"flood:{self.target_ref}",
                f"{reason}: post {self.post_id} goes out in {delay / 60:.0f} min instead",
                level="warning",
            )
        return Reschedule(delay, reason)

    def unreachable(self, exc: BaseException) -> Exception:
        settings = self.runtime.settings
        with self.store.transaction() as conn:
            conn.execute("UPDATE posts SET unreachable_tries = unreachable_tries + 1 WHERE id = ?", (self.post_id,))
            tries = conn.execute("SELECT unreachable_tries FROM posts WHERE id = ?", (self.post_id,)).fetchone()[0]
        limit = max(1, settings.publish_unreachable_limit)
        reason = f"Telegram unreachable ({type(exc).__name__}: {exc})"
        if tries >= limit:
            # Nothing can be deleted while Telegram is out of reach: a restart settles and completes the batch.
            return self.fail(f"{reason}; gave up after {tries} tries", cancel=False)
        self.back_to_scheduled(f"waiting: {reason}, try {tries}/{limit}")
        self.reporter.log(
            "unreachable", f"{reason}; try {tries}/{limit}, again in {settings.publish_unreachable_retry} s",
            level="warning",
        )  # fmt: skip
        return Reschedule(settings.publish_unreachable_retry, f"{reason}; try {tries} of {limit}")

    # The sends ----------------------------------------------------------------------------------------

    def send_parts(self, parts: list[OutgoingPart]) -> list[int]:
        assert self.gateway is not None and self.target is not None
        self.parts = parts
        all_ids: list[int] = []
        for index, part in enumerate(parts):
            key = (self.post_id, self.target_ref, self.round_no, index)
            random_ids = [
                random_id_for(self.post_id, self.target.id, self.round_no, index, item)
                for item in range(max(1, len(part.media)))
            ]
            row = _send_row(self.store, *key)
            if row is not None and row["status"] == "sent":
                all_ids += json.loads(row["message_ids"] or "[]")
                continue
            if row is not None and row["status"] == "attempting":
                found = self.settle(part, parse(row["created_at"]), set(all_ids))
                if found is not None:
                    _record_sent(self.store, key, found)
                    self.reporter.log(
                        "settled", f"part {index + 1} was sent before the last run stopped: messages {found}"
                    )
                    all_ids += found
                    continue
                self.reporter.log(
                    "settled",
                    f"part {index + 1} cannot be told apart in {self.route.target}: sending it with the same "
                    "random ids (Telegram refuses them if it went out)",
                )
            _record_attempt(self.store, *key, part.kind, random_ids)
            first_attempt = _send_row(self.store, *key)
            attempted_at = parse(first_attempt["created_at"]) if first_attempt else now()
            try:
                ids = self.gateway.send(self.target, part, random_ids)
            except tg_errors.RandomIdDuplicateError:
                # Telegram has these random ids already: the part went out. Find it, never send it again.
                ids = self.settle(part, attempted_at, set(all_ids), weak_ok=True) or []
                if ids:
                    self.reporter.log(
                        "settled",
                        f"part {index + 1}: Telegram refused the resend (random id known), so it was sent: "
                        f"messages {ids}",
                    )
                else:
                    note = (
                        f"part {index + 1} was sent (Telegram refused the resend: random id known) but its "
                        f"message in {self.route.target} could not be identified; its message ids are unknown"
                    )
                    self.notes.append(note)
                    self.reporter.log("settled", note, level="warning")
            except (tg_errors.FloodWaitError, tg_errors.FloodError) as exc:
                _record_refused(self.store, key, f"{type(exc).__name__}: {exc}")
                raise
            except tg_errors.RPCError as exc:
                if _is_critical(exc):
                    _record_refused(self.store, key, f"{type(exc).__name__}: {exc}")
                raise
            _record_sent(self.store, key, ids)
            self.reporter.log(
                "sent", f"part {index + 1}/{len(parts)} ({part.kind}): messages {ids}", random_ids=random_ids
            )
            all_ids += ids
        return all_ids

    def settle(
        self, part: OutgoingPart, attempted_at: datetime, exclude: set[int], *, weak_ok: bool = False
    ) -> list[int] | None:
        """Look for an uncertain part in the target, ignoring every message already recorded for a send."""
        assert self.gateway is not None and self.target is not None
        recent = self.gateway.recent_messages(self.target, SETTLE_LOOKBACK)
        exclude = exclude | recorded_message_ids(self.store, self.target_ref)
        return find_sent(recent, part, attempted_at, exclude, weak_ok=weak_ok)


def _is_critical(exc: BaseException) -> bool:
    """Errors that will not go away by trying again: the request itself is refused."""
    return isinstance(
        exc,
        (
            tg_errors.BadRequestError,
            tg_errors.ForbiddenError,
            tg_errors.UnauthorizedError,
            tg_errors.NotFoundError,
            tg_errors.AuthKeyError,
        ),
    )


DUE_TOLERANCE_SECONDS = 0.0


def publish_post(
    runtime: Runtime,
    post_id: int,
    reporter: Reporter | None = None,
    *,
    last_attempt: bool = True,
    force: bool = False,
    route_loader: Callable[[Runtime, str], Route] | None = None,
) -> dict[str, Any]:
    """Publish a scheduled post now (or continue one whose last run stopped midway); see the module doc.

    Raises Reschedule (not due yet, rate limit, flood wait, Telegram unreachable) and FatalJobError (the
    post failed; the admin was told). `force` publishes before the slot.
    """
    from contentq.dispatch import DISPATCH_AHEAD_SECONDS
    from contentq.pipeline import route_of

    reporter = reporter or _LogReporter(runtime)
    store = runtime.store
    try:
        post = get_post(store, post_id)
    except NotFoundError as exc:
        raise FatalJobError(str(exc)) from None
    state = post["state"]
    if state == "published":
        return {"post_id": post_id, "skipped": "already published", "link": post["link"]}
    if state not in ("scheduled", "publishing", "failed"):
        reporter.log("skipped", f"post {post_id} is {state}: nothing to publish")
        return {"post_id": post_id, "skipped": state}
    if state == "scheduled" and not force and post["scheduled_at"]:
        wait = (parse(post["scheduled_at"]) - now()).total_seconds()
        if wait > DUE_TOLERANCE_SECONDS:
            if wait <= DISPATCH_AHEAD_SECONDS:
                raise Reschedule(wait, f"not due until {post['scheduled_at']}")
            store.execute("UPDATE posts SET dispatched_at = NULL WHERE id = ? AND state = 'scheduled'", (post_id,))
            reporter.log("not_due", f"due at {post['scheduled_at']}; `contentq dispatch` hands it over then")
            return {"post_id": post_id, "skipped": "not due", "scheduled_at": post["scheduled_at"]}
    if state == "failed":
        reporter.log("restart", f"publishing the failed post again (it failed with: {post['state_reason']})")

    try:
        route = (route_loader or route_of)(runtime, post["route"])
    except ContentqError as exc:
        transition(store, post_id, ("scheduled", "publishing", "failed"), "failed", state_reason=f"publish: {exc}")
        raise FatalJobError(str(exc)) from None

    pub = Publication(runtime, post, route, reporter, last_attempt=last_attempt, round_no=post["publish_round"])
    if route.publisher == "outbox":
        return _publish_to_outbox(pub)
    return _publish_to_telegram(pub)


def _start(pub: Publication) -> bool:
    moved = transition(
        pub.store, pub.post_id, ("scheduled", "publishing", "failed"), "publishing",
        target=pub.route.target, state_reason=None,
    )  # fmt: skip
    if not moved:
        pub.reporter.log("skipped", f"post {pub.post_id} changed state meanwhile")
    return moved


def _report_rendering(pub: Publication, rendered: Rendered, *, custom_emoji: bool) -> None:
    """Say in the job log how the post is sent: caption moved, split, cut, custom emoji kept or replaced."""
    log = pub.reporter.log
    if rendered.caption_moved:
        log(
            "caption_moved",
            f"text over the caption limit of {rendered.caption_limit}: media first, then the text as its own message",
        )
    if rendered.text_parts > 1:
        log("split", f"text over Telegram's limit: sent as {rendered.text_parts} messages of one batch")
    if rendered.truncated:
        log("truncated", rendered.notes[-1], level="warning")
    if rendered.custom_emoji:
        how = (
            "as custom emoji (Premium account)" if custom_emoji else "as their plain emoji (the account is not Premium)"
        )
        log("custom_emoji", f"{rendered.custom_emoji} custom emoji sent {how}", custom=custom_emoji)
    if rendered.credited:
        log("forward_credit", "forwarded post: credit added")
    pub.rendered = rendered


def _finish(pub: Publication, message_ids: list[int] | None, link: str | None) -> dict[str, Any]:
    remarks = pub.rendered.notes if pub.rendered is not None else []
    moved = transition(
        pub.store, pub.post_id, "publishing", "published",
        published_at=iso(), message_ids=json.dumps(message_ids) if message_ids is not None else None,
        link=link, unreachable_tries=0, state_reason="; ".join(pub.notes + remarks)[:500] or None,
        **({"truncated": 1} if pub.rendered is not None and pub.rendered.truncated else {}),
    )  # fmt: skip
    if not moved:
        pub.reporter.log("discarded", "the post left 'publishing' while it was published", level="warning")
    pub.reporter.log("published", f"post {pub.post_id} → {pub.route.target}: {link}", message_ids=message_ids)
    if pub.notes:
        pub.reporter.notify(
            f"publish-note:{pub.post_id}",
            f"post {pub.post_id} was published to {pub.route.target}, but: {'; '.join(pub.notes)}",
            level="warning",
        )
    return {"post_id": pub.post_id, "message_ids": message_ids, "link": link, "target": pub.route.target}


def _publish_to_outbox(pub: Publication) -> dict[str, Any]:
    from contentq.integrations.outbox import write_outbox

    settings = pub.runtime.settings
    try:
        media = post_media(pub.store, settings, pub.post_id)
        rendered = render(
            pub.post, media, caption_limit=settings.caption_limit, text_limit=settings.text_limit, route=pub.route
        )
    except PublishError as exc:
        raise pub.fail(str(exc), cancel=False) from None
    if not _start(pub):
        return {"post_id": pub.post_id, "skipped": "state changed"}
    _report_rendering(pub, rendered, custom_emoji=True)
    try:
        folder = write_outbox(settings, pub.post, pub.route, rendered)
    except Exception as exc:
        reason = f"writing the outbox {settings.outbox_dir} failed: {type(exc).__name__}: {exc}"
        if pub.last_attempt:
            raise pub.fail(reason, cancel=False) from None
        pub.back_to_scheduled(f"waiting: {reason}")
        pub.reporter.log("outbox_failed", f"{reason}; trying again", level="warning")
        raise
    return _finish(pub, None, folder.as_uri())


def _publish_to_telegram(pub: Publication) -> dict[str, Any]:
    runtime, settings, store = pub.runtime, pub.runtime.settings, pub.store
    try:
        pub.gateway = gateway = runtime.telegram
        gateway.ensure_ready()
        account = _account(runtime, gateway)
        pub.target = resolve_channel(store, gateway, pub.route.target, role="target")
        media = post_media(store, settings, pub.post_id)
        rendered = render(
            pub.post, media, caption_limit=caption_limit_for(settings, account), text_limit=settings.text_limit,
            route=pub.route, custom_emoji=account.premium,
        )  # fmt: skip
        pub.parts = rendered.parts
        if not pub.outstanding():  # a fresh publication (not the continuation of a stopped one)
            wait = reserve_send(
                runtime, pub.target_ref, account.id, len(rendered.parts), f"{pub.post_id}:{now().timestamp()}"
            )
            if wait > 0:
                pub.back_to_scheduled("waiting for the rate limit")
                raise Reschedule(wait, f"rate limit: next send to {pub.route.target} allowed in {wait:.1f} s")
        if not _start(pub):
            return {"post_id": pub.post_id, "skipped": "state changed"}
        _report_rendering(pub, rendered, custom_emoji=account.premium)
        ids = pub.send_parts(rendered.parts)
    except Reschedule:
        raise
    except PublishError as exc:
        raise pub.fail(str(exc)) from None
    except (DatabaseLockedError, RedisUnavailableError):
        raise  # transient: retried
    except ContentqError as exc:  # no Telegram session, an invalid one …: retrying cannot help
        raise pub.fail(str(exc)) from None
    except (tg_errors.FloodWaitError, tg_errors.FloodError) as exc:
        raise pub.flood_wait(exc) from None
    except (ConnectionError, OSError) as exc:
        raise pub.unreachable(exc) from None
    except tg_errors.RPCError as exc:
        if _is_critical(exc):
            raise pub.fail(f"Telegram refused the post: {type(exc).__name__}: {exc}") from None
        if pub.last_attempt:
            raise pub.fail(f"{type(exc).__name__}: {exc}") from None
        raise
    except FatalJobError:
        raise
    except Exception as exc:
        if pub.last_attempt:
            raise pub.fail(f"{type(exc).__name__}: {exc}") from None
        raise
    assert pub.target is not None
    link = message_link(pub.target, ids[0]) if ids else None
    return _finish(pub, ids, link)


def dry_run(runtime: Runtime, post_id: int) -> Path:
    """Render the post into the outbox without touching Telegram or the post's state."""
    from contentq.integrations.outbox import write_outbox
    from contentq.pipeline import route_of

    post = get_post(runtime.store, post_id)
    route = route_of(runtime, post["route"])
    settings = runtime.settings
    media = post_media(runtime.store, settings, post_id)
    rendered = render(post, media, caption_limit=settings.caption_limit, text_limit=settings.text_limit, route=route)
    return write_outbox(settings, post, route, rendered, dry_run=True)
