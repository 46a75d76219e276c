"""Collecting one donor channel: session check, messages newer than the cursor, albums, media, dedup, filters.

Each post is stored in its own transaction together with the cursor (channels.last_message_id), so a run
that stops half way (a flood wait, a crash) resumes after the last stored post. Accepted posts enqueue
their rewrite job as a child of the collect job.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn, Protocol

import tenacity
from telethon import errors

from contentq.clock import now
from contentq.content.media_types import clean_media_type
from contentq.content.refs import normalize_channel_ref
from contentq.errors import ContentqError, FatalJobError, Reschedule
from contentq.flow import pipeline
from contentq.flow.channels import advance, get_channel, mark_run, resolve_channel
from contentq.intake.ingest import (
    Candidate,
    CandidateMedia,
    Counts,
    Ingestor,
    Outcome,
    dedup_index,
    forget_dedup_index,
    paid_reason,
    plural,
)
from contentq.integrations.telegram.access import gateway_of
from contentq.integrations.telegram.gateway import FetchedMessage, ResolvedChannel, TelegramGateway
from contentq.media import store_bytes
from contentq.redact import redact
from contentq.routes import Route, load_routes
from contentq.runtime.context import Runtime
from contentq.runtime.stopping import checkpoint
from contentq.runtime.tracking import enqueue
from contentq.store.footers import load_footer, refresh_footer

log = logging.getLogger("contentq.intake.collect")

MAX_RECONNECTS = 3
"""Reconnects tried when the session is down before the run fails and the admin is told."""

MAX_PER_RUN = 1000
"""Messages taken from a source in one run after the first (which takes settings.collect_backfill)."""

ALBUM_SETTLE_S = 30.0
"""An album whose newest item is younger than this may still be arriving: the run stops before it."""

Progress = Callable[[int, int], None]


class CollectFailed(FatalJobError):
    """A collect that retrying cannot fix: a dead or unauthorized session, an unknown or private source."""


class CollectContext(Protocol):
    """What collect needs from its caller: a JobContext, or ForegroundContext for `collect --now`/import."""

    @property
    def runtime(self) -> Runtime: ...

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None: ...

    def notify(self, key: str, message: str, level: str = "warning") -> bool: ...

    def enqueue_child(
        self, kind: str, key: str, payload: dict[str, Any] | None = None, *, post_id: int | None = None,
        delay: timedelta | float | None = None,
    ) -> dict[str, Any]: ...  # fmt: skip


@dataclass
class ForegroundContext:
    """Collect or import run by the CLI itself: events kept in memory, children enqueued without a parent."""

    runtime: Runtime
    events: list[tuple[str, str]] = field(default_factory=list)

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None:
        self.events.append((event, message))
        log.log(logging.WARNING if level in ("warning", "error") else logging.INFO, "%s: %s", event, message)

    def notify(self, key: str, message: str, level: str = "warning") -> bool:
        return self.runtime.notifier.notify(key, message, level=level)

    def enqueue_child(
        self, kind: str, key: str, payload: dict[str, Any] | None = None, *, post_id: int | None = None,
        delay: timedelta | float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return enqueue(self.runtime, kind, key, payload, post_id=post_id, delay=delay)


@dataclass
class CollectReport:
    source: str
    cursor: int
    fetched: int
    counts: Counts
    media_not_downloaded: int = 0  # over CONTENTQ_COLLECT_MAX_MEDIA_MB: stored without the file
    held_back: int = 0  # messages of an album that may be incomplete: taken by the next run
    cut: int = 0  # messages of an album that starts before the first run's backfill: not taken
    footer: list[str] = field(default_factory=list)  # the donor's learned footer/header lines

    def lines(self) -> list[str]:
        """The summary: what was stored, and one line per reason something was not."""
        out = self.counts.lines()
        if self.media_not_downloaded:
            out.append(f"{plural(self.media_not_downloaded, 'media file')} not downloaded (over "
                       "CONTENTQ_COLLECT_MAX_MEDIA_MB; stored without the file)")  # fmt: skip
        if self.held_back:
            out.append(f"{plural(self.held_back, 'message')} of an album still arriving left for the next run")
        if self.cut:
            out.append(f"{plural(self.cut, 'message')} of an album older than the backfill skipped")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "cursor": self.cursor, "fetched": self.fetched, **self.counts.as_dict(),
            "media_not_downloaded": self.media_not_downloaded, "held_back": self.held_back, "cut": self.cut,
            "footer": self.footer, "summary": self.lines(),
        }  # fmt: skip


def route_for_source(runtime: Runtime, ref: str) -> Route:
    routes = load_routes(runtime.settings.config_path)
    route = routes.route_for_source(ref)
    if route is None:
        raise CollectFailed(
            f"{ref} is not a source of any route in {runtime.settings.config_path}; add it to a route's sources"
        )
    return route


def collect_source(ctx: CollectContext, source: str, *, progress: Progress | None = None) -> CollectReport:
    """Collect new posts of one donor channel; raises Reschedule on a long flood wait."""
    runtime = ctx.runtime
    ref = normalize_channel_ref(source)
    counts = Counts()
    try:
        route = route_for_source(runtime, ref)
        gateway = gateway_of(runtime)
        check_session(ctx, gateway, ref, counts)
        channel = _resolve(ctx, gateway, ref)
        report = _collect(ctx, gateway, route, channel, counts, progress)
    except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:
        counts.flood_waits += 1
        reschedule_after_flood_wait(ctx, ref, int(exc.seconds), counts)
    except Exception as exc:
        mark_run(runtime.store, ref, error=redact(f"{type(exc).__name__}: {exc}")[:500])
        ctx.log("counts", counts.summary(), level="error", **counts.as_dict())
        raise
    ctx.log("counts", counts.summary(), **counts.as_dict())
    ctx.log("summary", "; ".join(report.lines()))  # with one line per reason a message was not taken
    return report


def check_session(ctx: CollectContext, gateway: TelegramGateway, ref: str, counts: Counts) -> None:
    """Connected and authorized; on a network error reconnects up to MAX_RECONNECTS times (tenacity), then
    fails and tells the admin. A session that is not authorized fails at once."""

    def log_reconnect(state: tenacity.RetryCallState) -> None:
        counts.reconnects += 1
        failure = state.outcome.exception() if state.outcome is not None else None
        ctx.log(
            "reconnect",
            f"session check failed ({failure}); reconnect {state.attempt_number}/{MAX_RECONNECTS}",
            level="warning",
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(OSError),  # ConnectionError, TimeoutError
        stop=tenacity.stop_after_attempt(MAX_RECONNECTS + 1),
        before_sleep=log_reconnect,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    gateway.reconnect()
                gateway.ensure_ready()
    except (errors.UnauthorizedError, errors.AuthKeyError) as exc:
        _unauthorized(ctx, ref, exc)
    except ContentqError as exc:  # no session, no API credentials: the operator must act
        ctx.notify("telegram-session", f"collect from {ref} failed: {exc}", level="error")
        raise CollectFailed(str(exc)) from None
    except OSError as exc:
        message = (
            f"collect from {ref} failed: the Telegram session is down after {MAX_RECONNECTS} reconnects ({exc}); "
            "check the network, then `contentq login --status`"
        )
        ctx.notify("telegram-session", message, level="error")
        raise CollectFailed(message) from None


def _unauthorized(ctx: CollectContext, ref: str, exc: BaseException) -> NoReturn:
    message = (
        f"collect from {ref} failed: the Telegram session is not authorized ({type(exc).__name__}); "
        "run `contentq login`"
    )
    ctx.notify("telegram-session", message, level="error")
    raise CollectFailed(message)


_UNREADABLE = (
    errors.ChannelPrivateError,
    errors.ChannelInvalidError,
    errors.UsernameNotOccupiedError,
    errors.UsernameInvalidError,
)


def _resolve(ctx: CollectContext, gateway: TelegramGateway, ref: str) -> ResolvedChannel:
    try:
        return resolve_channel(ctx.runtime.store, gateway, ref)
    except _UNREADABLE as exc:
        message = (
            f"cannot read {ref} ({type(exc).__name__}): check the name in contentq.toml, "
            "or join the channel with the logged-in account"
        )
        ctx.notify(f"collect-source:{ref}", message, level="error")
        raise CollectFailed(message) from None


def reschedule_after_flood_wait(ctx: CollectContext, ref: str, seconds: int, counts: Counts) -> NoReturn:
    """Never sleep on a flood wait: tell the admin and run again once it is over (plus jitter)."""
    settings = ctx.runtime.settings
    delay = seconds + random.uniform(1.0, max(2.0, seconds * 0.05))
    resume = now() + timedelta(seconds=delay)
    message = f"collect from {ref} is blocked by Telegram for {seconds} s; resuming at {resume:%Y-%m-%d %H:%M} UTC"
    ctx.log("flood_wait", message, level="warning", seconds=seconds, **counts.as_dict())
    mark_run(ctx.runtime.store, ref, error=f"FLOOD_WAIT {seconds} s")
    if seconds > settings.tg_flood_sleep_threshold:
        ctx.notify(f"collect-flood:{ref}", message)
    raise Reschedule(delay, f"FLOOD_WAIT of {seconds} s from Telegram while collecting {ref}")


def group_albums(messages: list[FetchedMessage]) -> list[list[FetchedMessage]]:
    """Messages oldest first, the items of an album (one grouped_id) together."""
    groups: list[list[FetchedMessage]] = []
    album_at: dict[int, int] = {}
    for message in sorted(messages, key=lambda m: m.id):
        if message.grouped_id is not None and message.grouped_id in album_at:
            groups[album_at[message.grouped_id]].append(message)
            continue
        if message.grouped_id is not None:
            album_at[message.grouped_id] = len(groups)
        groups.append([message])
    return groups


@dataclass
class Page:
    """The groups of one fetch to store, and what was left out at its edges."""

    groups: list[list[FetchedMessage]]
    held_back: list[FetchedMessage] = field(default_factory=list)  # newest edge: taken by a later run
    cut: list[FetchedMessage] = field(default_factory=list)  # oldest edge of a first run: older than the backfill


def split_page(messages: list[FetchedMessage], *, limit: int, newest_first: bool) -> Page:
    """Group a fetched page into posts, leaving out albums a page edge may have cut.

    The newest group is held back (the cursor stops before it, the next run takes it whole) when it is an
    album that may be incomplete: its newest item is younger than ALBUM_SETTLE_S (items still uploading),
    or it ends a full page fetched oldest first (its other items are on the next page). On a first run
    (newest first) an album starting a full page has its older items beyond the backfill: it is left out.
    """
    page = Page(group_albums(messages))
    full = bool(limit) and len(messages) >= limit
    groups = page.groups
    if newest_first and full and len(groups) > 1 and groups[0][0].grouped_id is not None:
        page.cut = groups.pop(0)
    if groups and groups[-1][0].grouped_id is not None:
        last = groups[-1]
        young = now() - max(m.date for m in last) < timedelta(seconds=ALBUM_SETTLE_S)
        at_page_edge = full and not newest_first and len(groups) > 1  # a lone album must not block the source
        if young or at_page_edge:
            page.held_back = groups.pop()
    return page


def _candidate(ref: str, group: list[FetchedMessage]) -> Candidate:
    caption = next((m.html for m in group if m.html.strip()), "")
    return Candidate(
        source=ref,
        msg_ids=[m.id for m in group],
        html=caption,
        posted_at=group[0].date,
        grouped_id=group[0].grouped_id,
        is_forward=any(m.is_forward for m in group),
        forward_name=next((m.forward_name for m in group if m.forward_name), None),
        forward_link=next((m.forward_link for m in group if m.forward_link), None),
        skip_reason=next((paid_reason(m.paid_stars) for m in group if m.paid_stars is not None), None),
    )


def _download(runtime: Runtime, gateway: TelegramGateway, channel: ResolvedChannel, group: list[FetchedMessage]
              ) -> list[CandidateMedia]:  # fmt: skip
    out = []
    for message in group:
        info = message.media
        if info is None:
            continue
        origin = f"{channel.ref}:{message.id}"
        mime = clean_media_type(info.mime or ("image/jpeg" if info.kind == "photo" else None), origin)
        media = CandidateMedia(
            info.kind, mime, info.size, info.width, info.height, origin=origin, duration=info.duration,
            spoiler=info.spoiler, title=info.title, performer=info.performer, file_name=info.file_name,
            emoji=info.emoji,
        )  # fmt: skip
        limit = runtime.settings.collect_max_media_mb * 1024 * 1024
        if info.size is not None and limit and info.size > limit:
            # Held in memory while downloading, and bound by the job timeout: a huge file would fail every retry.
            log.warning("%s message %s: %s of %.0f MB skipped (CONTENTQ_COLLECT_MAX_MEDIA_MB=%s)", channel.ref,
                        message.id, info.kind, info.size / 1048576, runtime.settings.collect_max_media_mb)  # fmt: skip
            out.append(media)  # recorded without a file, like an export placeholder; publishing skips it
            continue
        data = gateway.download_media(channel, message.id)
        if data:
            stored = store_bytes(runtime.settings.media_dir, data, mime=mime)
            media.sha256, media.relpath, media.size = stored.sha256, stored.relpath, stored.size
        out.append(media)
    return out


def _collect(
    ctx: CollectContext,
    gateway: TelegramGateway,
    route: Route,
    channel: ResolvedChannel,
    counts: Counts,
    progress: Progress | None,
) -> CollectReport:
    runtime = ctx.runtime
    store = runtime.store
    ref = channel.ref
    row = get_channel(store, ref)
    first_run = row is None or row["last_collected_at"] is None
    cursor = int(row["last_message_id"]) if row else 0
    limit = runtime.settings.collect_backfill if first_run else MAX_PER_RUN
    newest_first = cursor == 0  # see TelegramGateway.fetch_messages: else the oldest page after the cursor
    messages = gateway.fetch_messages(channel, min_id=cursor, limit=limit)
    ctx.log(
        "fetched", f"{plural(len(messages), 'message')} newer than {cursor}" + (" (first run)" if first_run else "")
        + ("; more remain, the next run goes on" if not newest_first and len(messages) >= limit else ""),
        cursor=cursor, limit=limit,
    )  # fmt: skip
    page = split_page(messages, limit=limit, newest_first=newest_first)
    groups = page.groups
    if page.cut:
        ctx.log("album_cut", f"album of messages {[m.id for m in page.cut]} starts before the backfill: skipped",
                level="warning")  # fmt: skip
    if page.held_back:
        ctx.log("album_held", f"album of messages {[m.id for m in page.held_back]} may be incomplete: "
                "left for the next run")  # fmt: skip
    ingestor = Ingestor(route, dedup_index(runtime))
    ingestor.index.refresh(store.conn)  # the first load is long: do it before taking the write lock
    if groups:  # learn the donor's footer again from this page and its stored posts
        with store.transaction() as conn:
            footer = refresh_footer(conn, ref, [m.html for m in sorted(messages, key=lambda m: -m.id)])
    else:
        footer = load_footer(store.conn, ref)
    ingestor.use_footer(ref, footer)
    not_downloaded = 0
    for done, group in enumerate(groups, start=1):
        checkpoint(f"after {done - 1} of {len(groups)} messages or albums")  # each stored one moved the cursor
        _, missing = store_group(ctx, ingestor, gateway, channel, group, counts)
        not_downloaded += missing
        cursor = max(cursor, *(m.id for m in group))
        if progress is not None:
            progress(done, len(groups))
    if page.held_back and cursor == 0:
        # A first run that stored nothing before the held album: start the next run just before it, not at
        # 0 (which would mean "the newest page" again, without the backfill limit).
        before = min(m.id for m in page.held_back) - 1
        with store.transaction() as conn:
            advance(conn, ref, before, Counts())
        cursor = before
    mark_run(store, ref)
    enqueue_missing_rewrites(ctx, ref)
    return CollectReport(ref, cursor, len(messages), counts, not_downloaded, len(page.held_back), len(page.cut),
                         list(footer.lines) if footer else [])  # fmt: skip


def store_group(
    ctx: CollectContext,
    ingestor: Ingestor,
    gateway: TelegramGateway,
    channel: ResolvedChannel,
    group: list[FetchedMessage],
    counts: Counts,
    *,
    move_cursor: bool = True,
) -> tuple[Outcome | None, int]:
    """One post to be (a message, or the messages of an album) through the ingest path shared by collect and
    listen: media downloaded unless the messages are stored already, then dedup, filters and footer in one
    transaction with the cursor, then the rewrite enqueued when it was collected.

    Idempotent: the transaction takes the write lock before looking for the (source, message id), so when
    collect and listen store the same message at once, one stores it and the other finds it ('exact', no
    rewrite enqueued). With move_cursor=False the cursor stays where it is (listen, while older messages of the
    source are not stored: catch-up and cron collect must still fetch them). Returns the outcome (None for a
    message with nothing to keep) and the media not downloaded (over CONTENTQ_COLLECT_MAX_MEDIA_MB)."""
    runtime = ctx.runtime
    store = runtime.store
    ref = channel.ref
    ids = [m.id for m in group]
    candidate = _candidate(ref, group)
    has_media = any(m.media is not None for m in group)
    wanted = has_media or bool(candidate.html.strip()) or candidate.skip_reason is not None  # else nothing to keep
    not_downloaded = 0
    if has_media and ingestor.stored_as(store.conn, ref, ids) is None:
        candidate.media = _download(runtime, gateway, channel, group)
        not_downloaded = sum(1 for m in candidate.media if m.relpath is None)
    outcome: Outcome | None = None
    try:
        with store.transaction() as conn:
            ingestor.index.refresh(conn)
            delta = Counts()
            if wanted:
                outcome = ingestor.ingest(conn, candidate)
                delta.add(outcome)
            advance(conn, ref, max(ids) if move_cursor else 0, delta)  # MAX(cursor, 0): the counters only
    except BaseException:
        forget_dedup_index(runtime)
        raise
    if outcome is not None:
        counts.add(outcome)
        if outcome.state == "collected" and outcome.post_id is not None:
            route = ingestor.route
            if outcome.reason:  # a route regex gave up on it (the post is kept)
                ctx.log("filter_timeout", f"post {outcome.post_id}: {outcome.reason}", level="warning")
                ctx.notify(f"regex-timeout:{route.name}", f"route {route.name}: {outcome.reason}")
            _enqueue_rewrite(ctx, outcome.post_id)
    return outcome, not_downloaded


def _enqueue_rewrite(ctx: CollectContext, post_id: int) -> None:
    pipeline.follow_up(ctx.runtime, post_id, "collected")  # the rewrite job (lifecycle.MOVES)


def enqueue_missing_rewrites(ctx: CollectContext, source: str) -> int:
    """Collected posts of `source` without a rewrite job (a crash between storing and enqueueing) get one."""
    rows = ctx.runtime.store.query(
        "SELECT id FROM posts p WHERE p.source = ? AND p.state = 'collected' AND NOT EXISTS"
        " (SELECT 1 FROM jobs j WHERE j.kind = 'rewrite' AND j.key = CAST(p.id AS TEXT)) ORDER BY id",
        (source,),
    )
    for row in rows:
        _enqueue_rewrite(ctx, row["id"])
    return len(rows)
