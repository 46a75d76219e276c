"""`contentq listen`: donor posts in real time, from Telegram's updates, through the ingest path of collect.

One listener per Telegram session. The order that leaves no gap: subscribe to the live updates first (the
gateway buffers what arrives), then catch up from each source's cursor with collect's incremental fetch, then
take the buffered and live updates. The same happens after every reconnect. A message seen twice (by the
catch-up and live, or by listen and a cron `collect` at the same time) is stored once: `store_group` looks
for the (source, message id) inside the write transaction that would store it.

Album items delivered one by one are held until none came for ALBUM_SETTLE_S (or all 10 are there), then
stored as one post; any later update of the same channel stores a waiting album first.

The cursor never passes a message that is not stored. When a source has a gap below its live messages (a
media download failed live; a catch-up stopped before the newest message: CATCH_UP_PAGES reached, an error,
an album still arriving), live messages are stored without moving the cursor, so catch-up and cron `collect`
still fetch from before the gap (what is stored already comes back as "already stored"). The listener
fetches one page from the cursor every HOLD_RETRY_S itself, and moves the cursor again once it is past the
gap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contentq import accounts, actors
from contentq.clock import iso, now
from contentq.content.refs import normalize_channel_ref
from contentq.errors import ContentqError, Reschedule
from contentq.flow.channels import resolve_channel
from contentq.intake.collect import (
    MAX_PER_RUN,
    CollectFailed,
    ForegroundContext,
    check_session,
    collect_source,
    reader_accounts,
    route_for_source,
    store_group,
)
from contentq.intake.donor_changes import Change, apply_delete, apply_edit
from contentq.intake.ingest import Counts, Ingestor, Outcome, dedup_index
from contentq.integrations.telegram.access import gateway_of, lend_gateways, load_profile
from contentq.integrations.telegram.gateway import FetchedMessage, ListenUpdate, ResolvedChannel
from contentq.integrations.telegram.profiles import MAIN_ACCOUNT
from contentq.redact import redact
from contentq.routes import Route, load_routes
from contentq.runtime.context import Runtime
from contentq.runtime.hosting import Hosted
from contentq.settings import Settings
from contentq.store.footers import load_footer
from contentq.store.listeners import beat, start_listener

log = logging.getLogger("contentq.intake.listen")

ALBUM_SETTLE_S = 0.8
"""Album items delivered one by one: the album is stored this long after its newest item arrived."""

ALBUM_MAX = 10

CATCH_UP_PAGES = 50
"""Pages of collect (MAX_PER_RUN messages each) a catch-up takes from one source before going live; the
rest is taken by cron `collect` or the listener's retries (HOLD_RETRY_S), the cursor held before it."""

HOLD_RETRY_S = 30.0
"""While a source has a gap (messages not stored below live ones), one page is fetched from its cursor this often."""

TICK_S = 0.5
"""The longest the listener waits for an update before flushing albums and writing its heartbeat."""


@dataclass
class ListenContext(ForegroundContext):
    """What collect's ingest path needs (a CollectContext), for a long-running process: events go to the log
    only, never kept in memory."""

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None:
        log.log(logging.WARNING if level in ("warning", "error") else logging.INFO, "%s: %s", event, message)


@dataclass
class Gap:
    """Messages of a source not stored below the ones taken live. While it is open, live messages are stored
    without moving the cursor; it closes when the cursor (moved by a catch-up or cron collect) reaches
    `must_reach`, or a catch-up reaches the newest message."""

    behind: bool = False  # a catch-up did not reach the newest message: the backlog ends before `first_live`
    first_live: int | None = None  # the oldest message taken live since that catch-up
    failed: set[int] = field(default_factory=set)  # taken live but not stored (a media download failed)
    tried_at: float = 0.0  # monotonic time of the last page fetched to fill it

    @property
    def open(self) -> bool:
        return self.behind or bool(self.failed)

    def must_reach(self) -> int:
        return max(self.failed | ({self.first_live} if self.first_live is not None else set()), default=0)


@dataclass
class Source:
    channel: ResolvedChannel
    route: Route
    ingestor: Ingestor
    gap: Gap = field(default_factory=Gap)


@dataclass
class PendingAlbum:
    source: Source
    grouped_id: int
    messages: dict[int, FetchedMessage] = field(default_factory=dict)
    last_at: float = 0.0  # monotonic time of its newest item


Stored = Callable[[str, list[FetchedMessage], Outcome | None, float], None]
"""Called after each group is stored: (source, messages, outcome, received_at); benches measure with it."""


class AccountDown(CollectFailed):
    """The listener's account is logged out or banned: reported (the admin told once); the listener waits."""


class Listener:
    def __init__(self, runtime: Runtime, sources: list[str], *, name: str = "listen", tick: float = TICK_S,
                 on_stored: Stored | None = None, hold_retry: float = HOLD_RETRY_S,
                 account: str | None = None) -> None:  # fmt: skip
        self.runtime = runtime
        self.account = account or accounts.default_account(runtime.store)
        # A long-running process, like a worker: it waits out a busy database or a full disk for as long as it
        # takes (one WARNING), rather than giving up after the CLI's CONTENTQ_DB_WAIT_SECONDS and exiting.
        runtime.store.wait.limit = None
        self.refs = list(dict.fromkeys(normalize_channel_ref(s) for s in sources))
        self.name = name
        self.tick = tick
        self.on_stored = on_stored
        self.hold_retry = hold_retry
        self.ctx = ListenContext(runtime)
        self.sources: dict[int, Source] = {}
        self.pending: dict[tuple[int, int], PendingAlbum] = {}
        self.counts = Counts()
        self.connected = False
        self.disconnected_since: float | None = None
        self.alerted = False
        self._stopping = False
        self._last_beat = 0.0

    def stop(self) -> None:
        """Stop after the current update (within `tick` seconds); albums waiting are stored first."""
        self._stopping = True

    # the loop --------------------------------------------------------------------------------------

    def run(self) -> Counts:
        with actors.acting_as(f"listen:{self.name}"):  # the posts it moves are recorded as the listener's
            return self._run()

    def _run(self) -> Counts:
        store, gateway = self.runtime.store, gateway_of(self.runtime, self.account)
        start_listener(store, self.name, self.refs)
        try:
            try:
                check_session(self.ctx, gateway, ", ".join(self.refs), self.counts, account=self.account)
                accounts.report_ok(self.runtime, self.account)
                self._resolve_sources()
                for update in gateway.listen([s.channel for s in self.sources.values()], tick=self.tick):
                    self.handle(update)
                    if self._stopping:
                        break
            except Exception as exc:
                problem = accounts.classify(exc)
                if problem is None:
                    raise
                raise AccountDown(accounts.report_problem(self.runtime, self.account, problem)) from None
            self.flush(force=True)
        finally:
            beat(store, self.name, state="stopped")
        return self.counts

    def _resolve_sources(self) -> None:
        dedup = dedup_index(self.runtime)
        dedup.refresh(self.runtime.store.conn)  # the first load is long: before taking updates
        for ref in self.refs:
            route = route_for_source(self.runtime, ref)
            channel = resolve_channel(self.runtime.store, gateway_of(self.runtime, self.account), ref,
                                      account=self.account)  # fmt: skip
            ingestor = Ingestor(route, dedup)
            ingestor.use_footer(ref, load_footer(self.runtime.store.conn, ref))
            self.sources[channel.id] = Source(channel, route, ingestor)

    def handle(self, update: ListenUpdate) -> None:
        """One update; albums whose items stopped arriving are stored after it."""
        if update.kind == "connected":
            self._connected()
        elif update.kind == "disconnected":
            self._disconnected(update.detail)
        elif update.kind != "idle":
            source = self.sources.get(update.channel_id or 0)
            if source is not None:
                self._from_source(source, update)
        self.flush()
        self._fill_gaps()
        self._heartbeat()

    def _from_source(self, source: Source, update: ListenUpdate) -> None:
        lag = _lag(update)
        beat(self.runtime.store, self.name, last_update_at=iso(), updates=("+", 1),
             **({"lag_seconds": lag} if lag is not None else {}))  # fmt: skip
        if update.kind in ("new", "album"):
            for message in update.messages:
                if message.grouped_id is None:
                    self._flush_source(source)
                    self._store(source, [message], update.received_at)
                else:
                    self._hold(source, message)
            if update.kind == "album":  # Telethon's Album event: the album is complete
                self._flush_source(source)
        elif update.kind in ("edit", "delete"):
            self._flush_source(source)
            try:
                self._donor_change(source, update)
            except Exception:  # one change that cannot be applied must not stop the collection
                log.exception("donor %s in %s not applied", update.kind, source.channel.ref)

    def _donor_change(self, source: Source, update: ListenUpdate) -> None:
        ref = source.channel.ref
        if update.kind == "edit":
            for message in update.messages:
                self._log_change("edit", source, apply_edit(self.ctx, source.ingestor, ref, message))
        else:
            for change in apply_delete(self.ctx, source.route.on_donor_delete, ref, list(update.deleted_ids)):
                self._log_change("delete", source, change)

    # albums ----------------------------------------------------------------------------------------

    def _hold(self, source: Source, message: FetchedMessage) -> None:
        assert message.grouped_id is not None
        key = (source.channel.id, message.grouped_id)
        for other_key in [k for k in self.pending if k[0] == key[0] and k != key]:
            self._store_album(self.pending.pop(other_key))  # a new album: the one before it is over
        album = self.pending.setdefault(key, PendingAlbum(source, message.grouped_id))
        album.messages[message.id] = message
        album.last_at = time.monotonic()
        if len(album.messages) >= ALBUM_MAX:
            self._store_album(self.pending.pop(key))

    def flush(self, *, force: bool = False) -> None:
        """Store the albums no item was added to for ALBUM_SETTLE_S."""
        due = time.monotonic() - ALBUM_SETTLE_S
        for key in [k for k, a in self.pending.items() if force or a.last_at <= due]:
            self._store_album(self.pending.pop(key))

    def _flush_source(self, source: Source) -> None:
        for key in [k for k in self.pending if k[0] == source.channel.id]:
            self._store_album(self.pending.pop(key))

    def _store_album(self, album: PendingAlbum) -> None:
        messages = sorted(album.messages.values(), key=lambda m: m.id)
        self._store(album.source, messages, time.time())

    def _store(self, source: Source, group: list[FetchedMessage], received_at: float) -> None:
        ids = [m.id for m in group]
        move = self._cursor_may_move(source, ids)
        try:
            gateway = gateway_of(self.runtime, self.account)
            outcome, _ = store_group(self.ctx, source.ingestor, gateway, source.channel, group, self.counts,
                                     move_cursor=move)  # fmt: skip
        except (ConnectionError, OSError) as exc:
            # A media download failed: the cursor stays before these messages (and before every later one
            # until they are stored), so the listener's retry, a catch-up or cron collect fetches them.
            if not source.gap.open:
                source.gap.tried_at = time.monotonic()
            source.gap.failed.update(ids)
            log.warning("%s messages %s not stored now (%s); the cursor stays before them until they are",
                        source.channel.ref, ids, exc)  # fmt: skip
            return
        if outcome is not None:
            log.info("%s message(s) %s: %s%s", source.channel.ref, [m.id for m in group], outcome.state,
                     f" as post {outcome.post_id}" if outcome.post_id else "")  # fmt: skip
        if self.on_stored is not None:
            self.on_stored(source.channel.ref, group, outcome, received_at)

    # gaps: the cursor never passes a message that is not stored ------------------------------------

    def _cursor_may_move(self, source: Source, ids: list[int]) -> bool:
        gap = source.gap
        if gap.behind and gap.first_live is None:
            gap.first_live = min(ids)
        if not gap.open:
            return True
        cursor = int(self.runtime.store.scalar(
            "SELECT last_message_id FROM channels WHERE ref = ?", (source.channel.ref,)) or 0)  # fmt: skip
        if cursor >= gap.must_reach():  # a catch-up or cron collect stored everything up to here
            log.info("%s: the messages before %s are stored; the cursor moves again", source.channel.ref, ids)
            source.gap = Gap()
            return True
        return False

    def _fill_gaps(self) -> None:
        """One page from the cursor of each source with a gap, every hold_retry seconds."""
        if not self.connected:
            return  # the catch-up after the reconnect does it
        for source in self.sources.values():
            gap = source.gap
            if gap.open and time.monotonic() - gap.tried_at >= self.hold_retry:
                gap.tried_at = time.monotonic()
                if self._catch_up_source(source, pages=1):
                    log.info("%s: the gap is filled; the cursor moves again", source.channel.ref)
                    source.gap = Gap()

    # connection ------------------------------------------------------------------------------------

    def _connected(self) -> None:
        store = self.runtime.store
        was_down = self.disconnected_since is not None
        beat(store, self.name, state="catching_up", disconnected_since=None, disconnect_reason=None,
             **({"reconnects": ("+", 1)} if was_down else {}))  # fmt: skip
        if was_down:
            down = time.monotonic() - (self.disconnected_since or 0)
            log.info("live updates are back after %.0f s; catching up", down)
            if self.alerted:
                message = f"listener {self.name} is connected again after {down:.0f} s"
                self.ctx.notify(f"listen-reconnected:{self.name}", message, level="info")
        self.disconnected_since, self.alerted = None, False
        if was_down:
            accounts.report_ok(self.runtime, self.account)  # written at once: the status was `unreachable`
        self.catch_up()
        self.connected = True
        beat(store, self.name, state="connected", connected_since=iso())

    def _disconnected(self, detail: str) -> None:
        self.flush(force=True)  # what arrived before the drop is complete as far as anyone can know
        if self.disconnected_since is None:
            self.disconnected_since = time.monotonic()
            accounts.report_unreachable(self.runtime, self.account, ConnectionError(detail or "disconnected"))
        self.connected = False
        log.warning("live updates lost (%s); catching up when they are back", detail or "disconnected")
        beat(self.runtime.store, self.name, state="disconnected", disconnected_since=iso(),
             disconnect_reason=redact(detail)[:300] or None)  # fmt: skip

    def catch_up(self) -> None:
        """Every source from its cursor with collect's incremental fetch: what arrived while not listening.
        A source not caught up to its newest message keeps its cursor there (see Gap)."""
        for source in self.sources.values():
            if self._catch_up_source(source, CATCH_UP_PAGES):
                source.gap = Gap()
            else:  # the backlog now ends before the first message taken live from here on
                source.gap = Gap(behind=True, failed=source.gap.failed, tried_at=time.monotonic())

    def _catch_up_source(self, source: Source, pages: int) -> bool:
        """Up to `pages` pages of collect from the cursor; True when it stored up to the newest message."""
        ref = source.channel.ref
        complete = False
        try:
            for _ in range(pages):
                report = collect_source(self.ctx, ref)
                if report.fetched < MAX_PER_RUN:
                    complete = not report.held_back  # an album still arriving: the cursor stays before it
                    break
            else:
                log.info("catch-up of %s stopped after %d page(s); the cursor stays there until cron collect "
                            "or the listener's retries take the rest", ref, pages)  # fmt: skip
        except Reschedule as wait:  # a long flood wait: a collect job takes it up afterwards
            self.ctx.enqueue_child("collect", ref, {"source": ref}, delay=wait.delay)
            log.warning("catch-up of %s: %s; collect job enqueued", ref, wait.reason)
        except CollectFailed as exc:
            log.error("catch-up of %s failed: %s", ref, exc)
        except (ConnectionError, OSError, ContentqError) as exc:
            log.error("catch-up of %s failed (%s); cron collect or the next reconnect takes it", ref, exc)
        source.ingestor.use_footer(ref, load_footer(self.runtime.store.conn, ref))  # learned again
        return complete

    def _heartbeat(self) -> None:
        settings = self.runtime.settings
        if self.connected:
            accounts.report_ok(self.runtime, self.account)  # at most once a minute
        if self.disconnected_since is not None and not self.alerted:
            down = time.monotonic() - self.disconnected_since
            if down >= settings.listen_alert_after:
                self.alerted = True
                self.ctx.notify(
                    f"listen-disconnected:{self.name}",
                    f"listener {self.name} has been disconnected from Telegram for {down:.0f} s; posts of "
                    f"{', '.join(self.refs)} arrive only through cron collect until it is back",
                    level="error",
                )
        if time.monotonic() - self._last_beat >= settings.listen_heartbeat:
            self._last_beat = time.monotonic()
            beat(self.runtime.store, self.name)

    def _log_change(self, what: str, source: Source, change: Change) -> None:
        if change.action in ("unchanged", "not_stored"):
            return
        log.info("donor %s in %s: post %s %s%s", what, source.channel.ref, change.post_id, change.action,
                 f" ({change.detail})" if change.detail else "")  # fmt: skip


def _lag(update: ListenUpdate) -> float | None:
    """How long after the donor posted it the update reached us (edits: after the message was first posted)."""
    if update.kind not in ("new", "album") or not update.messages:
        return None
    date = max(m.date for m in update.messages)
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    received = datetime.fromtimestamp(update.received_at, UTC) if update.received_at else now()
    return round(max(0.0, (received - date).total_seconds()), 3)


# the program under supervisor: waits for a login instead of exiting ------------------------------------

RETRY_FIRST_S = 5.0
"""After a start that could not go live (no login, Telegram unreachable, an error): the first wait."""

RETRY_MAX_S = 300.0
"""The longest wait between two starts; a login (the session file or .env changing) is noticed within a second."""


def login_problem(settings: Settings, session_path: Path | None = None, *, env_session: bool = True) -> str | None:
    """What keeps a listener from logging in that only the operator can fix, seen without asking Telegram; None
    when API keys and a session are there (a stand-in gateway needs neither)."""
    if settings.tg_gateway:
        return None
    if settings.tg_api_id is None or settings.tg_api_hash is None:
        return "CONTENTQ_TG_API_ID / CONTENTQ_TG_API_HASH are not set"
    if env_session and settings.tg_session is not None and settings.tg_session.get_secret_value().strip():
        return None
    path = session_path or settings.session_path
    try:
        if path.stat().st_size > 0:
            return None
    except OSError:
        pass
    return f"no Telegram session ({path} is missing)"


def _fingerprint(settings: Settings, session_path: Path | None = None) -> tuple[float, ...]:
    """Modification times of what a login changes: the session file and the .env files."""
    stamps = []
    for path in (session_path or settings.session_path, settings.home / ".env", Path(".env")):
        try:
            stamps.append(path.stat().st_mtime)
        except OSError:
            stamps.append(0.0)
    return tuple(stamps)


class ListenService:
    """`contentq listen` as supervisor runs it: a listener that cannot start (not logged in, Telegram
    unreachable, an error) never exits, which would be a restart every second or two; it records why in its
    heartbeat row (health and doctor show it, with the fix), waits (5 s, doubling up to 5 minutes; at once when
    the session file or .env changes, as `contentq login` does) and starts again with the settings read anew."""

    def __init__(
        self,
        load_settings: Callable[[], Settings],
        sources: Callable[[Runtime], list[str]],
        *,
        name: str = "listen",
        first_wait: float = RETRY_FIRST_S,
        max_wait: float = RETRY_MAX_S,
        make_runtime: Callable[[Settings], Runtime] = Runtime,
        account: str | None = None,
    ) -> None:
        self.account = account
        self.load_settings = load_settings
        self.sources = sources
        self.name = name
        self.first_wait = first_wait
        self.max_wait = max_wait
        self.make_runtime = make_runtime
        self.counts = Counts()
        self._stop = threading.Event()
        self._listener: Listener | None = None

    def stop(self) -> None:
        self._stop.set()
        listener = self._listener
        if listener is not None:
            listener.stop()

    def run(self) -> Counts:
        delay = self.first_wait
        problem_since: str | None = None
        while not self._stop.is_set():
            runtime = self.make_runtime(self.load_settings())
            try:
                session = self._session_path(runtime)
                problem = login_problem(runtime.settings, session, env_session=session == runtime.settings.session_path)
                state = "not_logged_in"
                if problem is None:
                    state, problem = self._listen(runtime)
                    if problem is None:
                        return self.counts  # stopped on request
                problem_since = problem_since or iso()
                self._wait(runtime, state, problem, problem_since, delay)
            finally:
                self._listener = None
                runtime.close()
            delay = min(delay * 2, self.max_wait)
        return self.counts

    def _listen(self, runtime: Runtime) -> tuple[str, str | None]:
        """Run a listener until stopped: (state, None); or until it fails: the state to show and why."""
        try:
            listener = Listener(runtime, self.sources(runtime), name=self.name, account=self.account)
            self._listener = listener
            if self._stop.is_set():
                return "stopped", None
            counts = listener.run()
        except AccountDown as exc:  # logged out or banned: reported against the account, the admin told once
            return "not_logged_in", redact(str(exc))
        except CollectFailed as exc:  # the session check: not authorized, or Telegram unreachable
            reason = redact(str(exc))
            return ("not_logged_in" if "not authorized" in reason else "waiting"), reason
        except Exception as exc:  # noqa: BLE001 - logged with its traceback; never a crash loop
            log.exception("listener %s stopped by an error", self.name)
            return "waiting", redact(f"{type(exc).__name__}: {exc}")
        self.counts = counts
        if self._stop.is_set():
            return "stopped", None
        return "waiting", "the live updates ended"

    def _session_path(self, runtime: Runtime) -> Path:
        """The session file of the listener's account (a login writes it: the wait ends then)."""
        try:
            account = self.account or accounts.default_account(runtime.store)
            return load_profile(runtime.store, runtime.settings, account).session_path
        except ContentqError:
            return runtime.settings.session_path

    def _wait(self, runtime: Runtime, state: str, problem: str, since: str, delay: float) -> None:
        store, settings = runtime.store, runtime.settings
        login = "contentq login" if not self.account or self.account == MAIN_ACCOUNT else (
            f"contentq accounts login {self.account}")  # fmt: skip
        fix = f"run `{login}`" if state == "not_logged_in" else "see this log"
        log.warning("listener %s not listening: %s; %s; trying again in %g s (or at once after a login)",
                    self.name, problem, fix, delay)  # fmt: skip
        start_listener(store, self.name, [])
        beat(store, self.name, state=state, disconnect_reason=problem[:300], disconnected_since=since)
        session = self._session_path(runtime)
        seen = _fingerprint(settings, session)
        deadline = time.monotonic() + delay
        last_beat = time.monotonic()
        while not self._stop.wait(1.0) and time.monotonic() < deadline:
            if _fingerprint(settings, session) != seen:
                return  # a login (or an edit of .env): try now
            if time.monotonic() - last_beat >= settings.listen_heartbeat:
                last_beat = time.monotonic()
                beat(store, self.name)
        if self._stop.is_set():
            beat(store, self.name, state="stopped")


# hosted by a worker (the compact layout: `contentq worker --host listen`) -------------------------------


def reading_accounts(runtime: Runtime) -> dict[str, list[str]]:
    """Account → the sources of every route it reads (empty without sources)."""
    refs = list(dict.fromkeys(ref for ref, _ in load_routes(runtime.settings.config_path).sources()))
    return reader_accounts(runtime, refs) if refs else {}


def listener_name(account: str, default: str) -> str:
    """`listen` for the default account, `listen-<account>` for another, as `contentq listen --name` is run."""
    return "listen" if account == default else f"listen-{account}"


def hosted_listeners(owner: Runtime) -> list[Hosted]:
    """One listener per account that reads sources, to run in `owner`'s process with `owner`'s Telegram clients
    (one session, one client: the one the worker's collect and publish jobs use). The accounts are read once,
    at start: after adding an account's first source, restart the worker (as the standalone listener)."""
    try:
        readers = reading_accounts(owner)
        default = accounts.default_account(owner.store) if readers else ""
    except ContentqError as exc:
        # The routes or the accounts are wrong: the default listener runs, fails and says why in health.
        log.warning("listeners: %s", redact(str(exc)))
        return [_hosted(owner, None, "listen")]
    if not readers:
        log.info("no sources in %s: no listener (add sources to a route, then restart this worker)",
                 owner.settings.config_path)  # fmt: skip
        return []
    return [_hosted(owner, account, listener_name(account, default)) for account in readers]


def _hosted(owner: Runtime, account: str | None, name: str) -> Hosted:
    def borrowing(settings: Settings) -> Runtime:
        runtime = Runtime(settings)
        lend_gateways(owner, runtime)
        return runtime

    def sources(runtime: Runtime) -> list[str]:
        mine = account or accounts.default_account(runtime.store)
        return reading_accounts(runtime).get(mine, [])

    def make() -> ListenService:
        # The worker's settings: its Telegram clients were built from them (new API keys: restart the worker).
        return ListenService(lambda: owner.settings, sources, name=name, account=account, make_runtime=borrowing)

    return Hosted(name, make)
