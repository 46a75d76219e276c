"""One run of publishing a post: the publication's state machine and its outcomes.

scheduled → publishing → published, or failed (the batch cancelled: what went out is deleted, the admin
told), or back to scheduled while it waits (rate limit, FLOOD_WAIT, Telegram unreachable: `Reschedule`).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from telethon import errors as tg_errors

from contentq import accounts, lifecycle
from contentq.clock import iso, now, parse
from contentq.content.refs import normalize_channel_ref
from contentq.errors import (
    ContentqError,
    DatabaseUnavailableError,
    FatalJobError,
    RedisUnavailableError,
    Reschedule,
)
from contentq.integrations.telegram.access import gateway_of
from contentq.integrations.telegram.gateway import (
    Account,
    FetchedMessage,
    OutgoingPart,
    ResolvedChannel,
    TelegramGateway,
)
from contentq.integrations.telegram.profiles import MAIN_ACCOUNT
from contentq.publish import PublishError, ledger
from contentq.publish.render import Rendered
from contentq.publish.settle import SETTLE_LOOKBACK, find_sent, scan_since, settle_candidates
from contentq.routes import Route
from contentq.runtime.context import Runtime
from contentq.store import Store
from contentq.store.backups import latest_restore
from contentq.store.tg_accounts import DOWN_STATUSES

log = logging.getLogger("contentq.publish")


class Reporter(Protocol):
    """Where progress goes: the job's event log and the admin (a JobContext is one)."""

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None: ...

    def notify(self, key: str, message: str, level: str = "warning") -> bool: ...


class LogReporter:
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


def telegram_account(runtime: Runtime, gateway: TelegramGateway) -> Account:
    """Who the gateway is logged in as (asked once per process and gateway)."""
    cached: dict[int, tuple[TelegramGateway, Account]] = runtime.services.setdefault("telegram_accounts", {})
    found = cached.get(id(gateway))
    if found is not None and found[0] is gateway:
        return found[1]
    account = gateway.account()
    cached[id(gateway)] = (gateway, account)
    return account


def use_account(pub: Publication, target: str) -> TelegramGateway:
    """The gateway of the account that posts to `target` for the route, once it may be used: a logged-out or
    banned account, or one waiting out a FLOOD_WAIT of its sends, makes the publication wait (Reschedule), the
    reason on the post; other routes go on."""
    runtime = pub.runtime
    pub.account = name = accounts.poster_of(runtime.store, pub.route, target)
    reason = accounts.pause_reason(runtime, name)
    if reason is not None:
        pub.pause_for_account(f"waiting: {reason}")
        raise accounts.paused(runtime, name, reason)
    left = accounts.flood_left(runtime, name, "send")
    if left > 0 and not pub.outstanding():
        reason = f"Telegram account {name!r} waits out a FLOOD_WAIT of its sends for {left:.0f} s more"
        pub.back_to_scheduled(f"waiting: {reason}")
        raise Reschedule(left + _jitter(left), reason)
    pub.gateway = gateway_of(runtime, name)
    return pub.gateway


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
    account: str = MAIN_ACCOUNT
    """The Telegram account that posts (`use_account`)."""
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
        lifecycle.move(self.store, self.post_id, "publish_failed", reason=f"publish: {reason}", unreachable_tries=0)
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
        rows = ledger.round_out(self.store, self.post_id, self.target_ref, self.round_no)
        if not rows:
            return None
        ids = [i for r in rows if r["status"] == "sent" for i in ledger.message_ids_of(r)]
        uncertain = [r["part"] for r in rows if r["status"] == "attempting"]
        unknown = [r["part"] for r in rows if r["status"] == "sent" and not ledger.message_ids_of(r)]
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
        ledger.take_back_round(self.store, self.post_id, self.target_ref, self.round_no)
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
        exclude = ledger.recorded_message_ids(self.store, self.target_ref)
        for index in parts:
            row = ledger.send_row(self.store, self.post_id, self.target_ref, self.round_no, index)
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
        return ledger.count_round(self.store, self.post_id, self.target_ref, self.round_no)

    def back_to_scheduled(self, reason: str) -> None:
        """Nothing of this round is out: the post waits as `scheduled` (its job stays queued)."""
        if not self.outstanding():
            lifecycle.move(self.store, self.post_id, "publish_postponed", reason=reason)

    def pause_for_account(self, reason: str) -> None:
        """Its account is logged out or banned: the post waits as `scheduled`, the reason on it, unless a part of
        this round is out (then it stays `publishing`, and the batch completes once the account is back)."""
        if not self.outstanding():
            lifecycle.move(
                self.store, self.post_id, "account_paused", reason=reason, only_from=("scheduled", "publishing")
            )

    def flood_wait(self, exc: Exception) -> Exception:
        seconds = float(getattr(exc, "seconds", 0) or 0)
        accounts.report_flood(self.runtime, self.account, seconds, "send")
        delay = seconds + _jitter(seconds)
        reason = f"FLOOD_WAIT of {seconds:.0f} s from Telegram while publishing to {self.route.target}"
        sent_any = ledger.count_round(self.store, self.post_id, self.target_ref, self.round_no, ("sent",))
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
        tries = ledger.count_unreachable(self.store, self.post_id)
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
        restored = self.restored_from()
        for index, part in enumerate(parts):
            key = (self.post_id, self.target_ref, self.round_no, index)
            random_ids = [
                ledger.random_id_for(self.post_id, self.target.id, self.round_no, index, item)
                for item in range(max(1, len(part.media)))
            ]
            row = ledger.send_row(self.store, *key)
            if row is not None and row["status"] == "sent":
                all_ids += ledger.message_ids_of(row)
                continue
            # A part whose record comes from a backup (none, or one written before the restore) may have gone out
            # after the backup was taken: it is looked for among everything the channel got since.
            from_backup = restored is not None and (row is None or row["created_at"] <= restored[1])
            if row is not None and row["status"] == "attempting":
                found = self.settle(part, parse(row["created_at"]), set(all_ids), since_restore=from_backup)
                if found is not None:
                    ledger.record_sent(self.store, key, found)
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
            if restored is not None and row is None:
                # Its send, if it went out after the backup, is missing from the ledger: the channel decides.
                found = self.settle(part, restored[0], set(all_ids), since_restore=True)
                if found is not None:
                    ledger.record_attempt(self.store, *key, part.kind, random_ids)
                    ledger.record_sent(self.store, key, found)
                    self.reporter.log(
                        "settled",
                        f"part {index + 1} was sent after the backup this database was restored from: messages {found}",
                    )
                    all_ids += found
                    continue
            ledger.record_attempt(self.store, *key, part.kind, random_ids)
            first_attempt = ledger.send_row(self.store, *key)
            attempted_at = parse(first_attempt["created_at"]) if first_attempt else now()
            if restored is not None and row is None:
                attempted_at = min(attempted_at, restored[0])
            try:
                ids = self.gateway.send(self.target, part, random_ids)
            except tg_errors.RandomIdDuplicateError:
                # Telegram has these random ids already: the part went out. Find it, never send it again.
                ids = self.settle(part, attempted_at, set(all_ids), weak_ok=True, since_restore=from_backup) or []
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
                ledger.record_refused(self.store, key, f"{type(exc).__name__}: {exc}")
                raise
            except tg_errors.RPCError as exc:
                if is_critical(exc):
                    ledger.record_refused(self.store, key, f"{type(exc).__name__}: {exc}")
                raise
            ledger.record_sent(self.store, key, ids)
            self.reporter.log(
                "sent", f"part {index + 1}/{len(parts)} ({part.kind}): messages {ids}", random_ids=random_ids
            )
            all_ids += ids
        return all_ids

    def restored_from(self) -> tuple[datetime, str] | None:
        """When the database was restored from a backup and this post comes from it: (the newest time written in
        the backup, when it was restored). A send after the backup is not in the ledger, but is in the channel."""
        restore = latest_restore(self.store)
        if restore is None or not restore["newest_record_at"] or self.post["collected_at"] > restore["restored_at"]:
            return None
        return parse(restore["newest_record_at"]), str(restore["restored_at"])

    def restored_scan(self, since: datetime) -> list[FetchedMessage]:
        """The target's messages since the backup, read once per process: whatever the system sent before the
        restore is in it, and what it sends after the restore is in the ledger, so it never needs a refresh."""
        assert self.gateway is not None and self.target is not None
        scans: dict[tuple[str, str], list[FetchedMessage]] = self.runtime.services.setdefault("restored_scans", {})
        key = (self.target_ref, iso(since))
        if key not in scans:
            scans[key] = scan_since(self.gateway, self.target, since)
        return scans[key]

    def settle(
        self,
        part: OutgoingPart,
        attempted_at: datetime,
        exclude: set[int],
        *,
        weak_ok: bool = False,
        since_restore: bool = False,
    ) -> list[int] | None:
        """Look for an uncertain part in the target, ignoring every message already recorded for a send. After a
        restore, among everything the channel got since the backup (one scan per process and target)."""
        assert self.gateway is not None and self.target is not None
        if since_restore:
            recent = self.restored_scan(attempted_at)
        else:
            recent = self.gateway.recent_messages(self.target, SETTLE_LOOKBACK)
        exclude = exclude | ledger.recorded_message_ids(self.store, self.target_ref)
        return find_sent(recent, part, attempted_at, exclude, weak_ok=weak_ok)


def is_critical(exc: BaseException) -> bool:
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


def send_failure(pub: Publication, exc: Exception) -> Exception | None:
    """What a Telegram publication raises for an error of its send (the publish job's and a Telegram delivery's
    one mapping): the post failed, a flood wait, Telegram unreachable; None to let the error itself through (a
    wait of any kind, an error pub.fail recorded already, the machine's trouble, a try that may still succeed)."""
    if isinstance(exc, PublishError):
        return pub.fail(str(exc))
    if isinstance(exc, Reschedule | FatalJobError | DatabaseUnavailableError | RedisUnavailableError):
        return None  # waited out or retried by the job runner; a fatal one is recorded by pub.fail already
    problem = accounts.classify(exc)
    if problem is not None:
        reason = accounts.report_problem(pub.runtime, pub.account, problem)  # the admin is told once
        if problem.status in DOWN_STATUSES:  # the route waits for the account; nothing failed
            pub.pause_for_account(f"waiting: {reason}")
            pub.reporter.log("account_down", reason, level="error")
            return accounts.paused(pub.runtime, pub.account, reason)
    if isinstance(exc, ContentqError):  # no Telegram session, an invalid one …: retrying cannot help
        return pub.fail(str(exc))
    if isinstance(exc, tg_errors.FloodWaitError | tg_errors.FloodError):
        return pub.flood_wait(exc)
    if isinstance(exc, ConnectionError | OSError):
        return pub.unreachable(exc)
    if isinstance(exc, tg_errors.RPCError) and is_critical(exc):
        return pub.fail(f"Telegram refused the post: {type(exc).__name__}: {exc}")
    return pub.fail(f"{type(exc).__name__}: {exc}") if pub.last_attempt else None


def start(pub: Publication) -> bool:
    moved = lifecycle.move(pub.store, pub.post_id, "publish_started", target=pub.route.target)
    if not moved:
        pub.reporter.log("skipped", f"post {pub.post_id} changed state meanwhile")
    return moved


def report_rendering(pub: Publication, rendered: Rendered, *, custom_emoji: bool) -> None:
    """Say in the job log how the post is sent: caption moved, split, cut, custom emoji kept or replaced."""
    log = pub.reporter.log
    if rendered.caption_moved:
        why = (
            f"a {rendered.captionless.replace('_', ' ')} carries no caption" if rendered.captionless
            else f"text over the caption limit of {rendered.caption_limit}"
        )  # fmt: skip
        log("caption_moved", f"{why}: media first, then the text as its own message")
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


def finish(pub: Publication, message_ids: list[int] | None, link: str | None) -> dict[str, Any]:
    remarks = list(pub.rendered.notes) if pub.rendered is not None else []
    absent = pub.store.scalar("SELECT COUNT(*) FROM media WHERE post_id = ? AND path IS NULL", (pub.post_id,))
    if absent:  # missing from an export, or over CONTENTQ_COLLECT_MAX_MEDIA_MB: said on the post, not silent
        remarks.append(f"{absent} donor media file(s) were never stored (missing from the export or too large)"
                       " and were left out")  # fmt: skip
    fields: dict[str, Any] = {
        "published_at": iso(), "message_ids": json.dumps(message_ids) if message_ids is not None else None,
        "link": link, "unreachable_tries": 0,
    }  # fmt: skip
    if pub.rendered is not None and pub.rendered.truncated:
        fields["truncated"] = 1
    moved = lifecycle.move(pub.store, pub.post_id, "published", reason="; ".join(pub.notes + remarks) or None, **fields)
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
