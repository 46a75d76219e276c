"""Settling an uncertain send: is a part that may have gone out among the target's recent messages?

The channel decides, never a resend: a part is matched by its text or caption, or by every media item's
fingerprint (strong), or only by its kind and album size (weak: a captionless photo). Several candidates
are never guessed between.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from contentq.content.html import html_to_text
from contentq.integrations.telegram.gateway import (
    FetchedMessage,
    MediaInfo,
    OutgoingMedia,
    OutgoingPart,
    ResolvedChannel,
    TelegramGateway,
)

SETTLE_LOOKBACK = 100
"""Recent messages of the target looked at to settle an uncertain send."""

SETTLE_CLOCK_SLACK = timedelta(seconds=120)
"""A message dated this much before the attempt still counts (clock skew between us and Telegram)."""

RESTORE_SCAN_MAX = 3000
"""After a restore, the most recent messages of a target read to find what went out since the backup."""


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
        if info.file_name not in (item.name, item.path.name):  # the name it is sent under (older sends: the path's)
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


def scan_since(gateway: TelegramGateway, target: ResolvedChannel, since: datetime) -> list[FetchedMessage]:
    """The target's newest messages back to `since` (newest first), in growing reads of at most RESTORE_SCAN_MAX."""
    limit = SETTLE_LOOKBACK
    while True:
        recent = gateway.recent_messages(target, limit)
        reached = not recent or recent[-1].date < since - SETTLE_CLOCK_SLACK
        if reached or len(recent) < limit or limit >= RESTORE_SCAN_MAX:
            return recent
        limit = min(limit * 4, RESTORE_SCAN_MAX)


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
