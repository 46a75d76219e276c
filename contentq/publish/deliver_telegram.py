"""A delivery to a Telegram channel: the Telegram publication as it is (rendering, the sends ledger, random ids,
settling by the channel, a failed batch taken back), with the delivery's state in place of the post's.

`DeliveryPublication` is the post's `Publication` whose outcomes move the delivery: the ledger rows carry the
destination's channel as their target and the delivery's own round, so two Telegram destinations of one post
never share a row or a random id, and a round taken back never moves the post's own round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contentq.clock import now, parse
from contentq.errors import DatabaseUnavailableError, FatalJobError, Reschedule
from contentq.flow.channels import resolve_channel
from contentq.integrations.telegram.access import gateway_of
from contentq.publish import deliveries, ledger
from contentq.publish.delivery_run import DeliveryRun, fail_delivery
from contentq.publish.fanout import settle_post
from contentq.publish.publication import Publication, report_rendering, send_failure, telegram_account
from contentq.publish.ratelimit import reserve_send
from contentq.publish.render import Rendered, caption_limit_for, message_link, post_media, render
from contentq.runtime.stopping import checkpoint
from contentq.store.deliveries import count_unreachable, next_round

ROUND_BASE = 1 << 20
"""A delivery's Telegram rounds are numbered from here in the ledger: apart from the post's own publish rounds
(which count up from 0), so `ledger.take_back_round` never moves the post's round for a delivery's."""


@dataclass
class DeliveryPublication(Publication):
    """The Telegram publication of one delivery (see the module doc)."""

    run: DeliveryRun | None = None

    def _run(self) -> DeliveryRun:
        assert self.run is not None
        return self.run

    def fail(self, reason: str, *, cancel: bool = True) -> FatalJobError:
        if cancel:
            problem = self.cancel_batch(reason)
            if problem:
                reason = f"{reason}; {problem}"
        run = self._run()
        run.notes.extend(self.notes)
        return fail_delivery(self.runtime, run.delivery, self.reporter, reason, notes=run._notes())

    def cancel_batch(self, reason: str) -> str | None:
        had = bool(ledger.round_out(self.store, self.post_id, self.target_ref, self.round_no))
        problem = super().cancel_batch(reason)
        if had and problem is None:  # taken back: the next run is a new round, with fresh random ids
            next_round(self.store, self._run().delivery_id, self.round_no - ROUND_BASE)
        return problem

    def back_to_scheduled(self, reason: str) -> None:
        if not self.outstanding():
            deliveries.move_delivery(self.store, self._run().delivery_id, "postponed", reason=reason)

    def unreachable(self, exc: BaseException) -> Exception:
        settings = self.runtime.settings
        tries = count_unreachable(self.store, self._run().delivery_id)
        limit = max(1, settings.publish_unreachable_limit)
        reason = f"Telegram unreachable ({type(exc).__name__}: {exc})"
        if tries >= limit:
            return self.fail(f"{reason}; gave up after {tries} tries", cancel=False)
        self.back_to_scheduled(f"waiting: {reason}, try {tries}/{limit}")
        self.reporter.log("unreachable", f"{reason}; try {tries}/{limit}", level="warning")
        return Reschedule(settings.publish_unreachable_retry, f"{reason}; try {tries} of {limit}")


def _publication(run: DeliveryRun) -> DeliveryPublication:
    route = run.route.model_copy(update={"target": run.destination.account})
    return DeliveryPublication(
        run.runtime, run.post, route, run.reporter, last_attempt=run.last_attempt,
        round_no=ROUND_BASE + run.round_no, run=run,
    )  # fmt: skip


def _render(pub: DeliveryPublication, *, premium: bool, caption_limit: int) -> Rendered:
    settings = pub.runtime.settings
    media = post_media(pub.store, settings, pub.post_id)
    return render(
        pub.post, media, caption_limit=caption_limit, text_limit=settings.text_limit, route=pub.route,
        custom_emoji=premium,
    )  # fmt: skip


def deliver_telegram(run: DeliveryRun) -> dict[str, Any]:
    """As `drivers.publish_to_telegram`, for one delivery: each part exactly once, the batch whole or taken back."""
    runtime, store = run.runtime, run.store
    pub = _publication(run)
    try:
        pub.gateway = gateway = gateway_of(runtime)
        gateway.ensure_ready()
        account = telegram_account(runtime, gateway)
        pub.target = resolve_channel(store, gateway, pub.route.target, role="target")
        rendered = _render(pub, premium=account.premium, caption_limit=caption_limit_for(runtime.settings, account))
        pub.parts = rendered.parts
        fresh = not pub.outstanding()  # a fresh round, not the continuation of one a crash cut short
        if fresh:
            wait = reserve_send(runtime, pub.target_ref, account.id, len(rendered.parts), f"d{run.delivery_id}:{now()}")
            if wait > 0:
                raise run.wait(wait, f"rate limit: next send to {pub.route.target} allowed in {wait:.1f} s")
            checkpoint("before the first part was sent")  # a continuation is past it already
        if not run.start():
            return {"delivery_id": run.delivery_id, "skipped": "state changed"}
        report_rendering(pub, rendered, custom_emoji=account.premium)
        ids = pub.send_parts(rendered.parts)
    except Exception as exc:
        failure = send_failure(pub, exc)
        if failure is None:
            raise
        raise failure from None
    assert pub.target is not None
    if pub.rendered is not None:
        run.notes.extend(pub.rendered.notes)
    run.notes.extend(pub.notes)
    return run.finish(ids, message_link(pub.target, ids[0]) if ids else None)


def settle_telegram(run: DeliveryRun, reason: str) -> dict[str, Any]:
    """The channel decides: every part of the round recorded as sent or found there → published; else the round
    is taken back and the delivery failed with `reason`."""
    runtime = run.runtime
    pub = _publication(run)
    try:
        pub.gateway = gateway = gateway_of(runtime)
        gateway.ensure_ready()
        account = telegram_account(runtime, gateway)
        pub.target = resolve_channel(run.store, gateway, pub.route.target, role="target")
        rendered = _render(pub, premium=account.premium, caption_limit=caption_limit_for(runtime.settings, account))
        pub.parts = rendered.parts
        ids = _parts_out(pub)
    except DatabaseUnavailableError:
        raise  # waited out by the job runner, then the channel is looked at again
    except Exception as exc:
        pub.gateway = pub.target = None
        pub.fail(f"{reason}; the channel could not be checked ({type(exc).__name__}: {exc})")
        return {"delivery_id": run.delivery_id, "state": "failed", "reason": reason}
    if ids is None:
        pub.fail(f"{reason}; the post is not (completely) in {pub.route.target}")
        return {"delivery_id": run.delivery_id, "state": "failed", "reason": reason}
    deliveries.move_delivery(run.store, run.delivery_id, "started")  # finish moves a delivery from publishing
    run.reporter.log("settled", f"every part is in {pub.route.target}: delivered ({reason})")
    result = run.finish(ids, message_link(pub.target, ids[0]) if ids else None)
    settle_post(runtime, run.post_id, run.reporter)
    return {**result, "state": "published"}


def _parts_out(pub: DeliveryPublication) -> list[int] | None:
    """The message ids of every part when all are out (recorded, or found in the channel), else None."""
    ids: list[int] = []
    for index, part in enumerate(pub.parts):
        key = (pub.post_id, pub.target_ref, pub.round_no, index)
        row = ledger.send_row(pub.store, *key)
        if row is not None and row["status"] == "sent":
            ids += ledger.message_ids_of(row)
            continue
        if row is None or row["status"] != "attempting":
            return None
        found = pub.settle(part, parse(row["created_at"]), set(ids))
        if found is None:
            return None
        ledger.record_sent(pub.store, key, found)
        ids += found
    return ids
