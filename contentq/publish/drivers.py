"""The two publishers: Telegram (each part sent exactly once, see `publication`) and the outbox folder."""

from __future__ import annotations

from typing import Any

from contentq.clock import now
from contentq.errors import Reschedule
from contentq.flow.channels import resolve_channel
from contentq.integrations.telegram.access import gateway_of
from contentq.publish import PublishError
from contentq.publish.outbox import write_outbox
from contentq.publish.publication import Publication, finish, report_rendering, send_failure, start, telegram_account
from contentq.publish.ratelimit import reserve_send
from contentq.publish.render import caption_limit_for, message_link, post_media, render
from contentq.runtime.stopping import checkpoint


def publish_to_outbox(pub: Publication) -> dict[str, Any]:
    settings = pub.runtime.settings
    try:
        media = post_media(pub.store, settings, pub.post_id)
        rendered = render(
            pub.post, media, caption_limit=settings.caption_limit, text_limit=settings.text_limit, route=pub.route
        )
    except PublishError as exc:
        raise pub.fail(str(exc), cancel=False) from None
    checkpoint("before the post was written to the outbox")
    if not start(pub):
        return {"post_id": pub.post_id, "skipped": "state changed"}
    report_rendering(pub, rendered, custom_emoji=True)
    try:
        folder = write_outbox(settings, pub.post, pub.route, rendered)
    except Exception as exc:
        reason = f"writing the outbox {settings.outbox_dir} failed: {type(exc).__name__}: {exc}"
        if pub.last_attempt:
            raise pub.fail(reason, cancel=False) from None
        pub.back_to_scheduled(f"waiting: {reason}")
        pub.reporter.log("outbox_failed", f"{reason}; trying again", level="warning")
        raise
    return finish(pub, None, folder.as_uri())


def publish_to_telegram(pub: Publication) -> dict[str, Any]:
    runtime, settings, store = pub.runtime, pub.runtime.settings, pub.store
    try:
        pub.gateway = gateway = gateway_of(runtime)
        gateway.ensure_ready()
        account = telegram_account(runtime, gateway)
        pub.target = resolve_channel(store, gateway, pub.route.target, role="target")
        media = post_media(store, settings, pub.post_id)
        rendered = render(
            pub.post, media, caption_limit=caption_limit_for(settings, account), text_limit=settings.text_limit,
            route=pub.route, custom_emoji=account.premium,
        )  # fmt: skip
        pub.parts = rendered.parts
        fresh = not pub.outstanding()  # not the continuation of a publication that a crash cut short
        if fresh:
            wait = reserve_send(
                runtime, pub.target_ref, account.id, len(rendered.parts), f"{pub.post_id}:{now().timestamp()}"
            )
            if wait > 0:
                pub.back_to_scheduled("waiting for the rate limit")
                raise Reschedule(wait, f"rate limit: next send to {pub.route.target} allowed in {wait:.1f} s")
        # The last safe point: once a part is attempted the batch goes out whole (never half a post), and the
        # ledger keeps each part exactly-once whatever happens to the job. A continuation is past it already.
        if fresh:
            checkpoint("before the first part was sent")
        if not start(pub):
            return {"post_id": pub.post_id, "skipped": "state changed"}
        report_rendering(pub, rendered, custom_emoji=account.premium)
        ids = pub.send_parts(rendered.parts)
    except Exception as exc:
        failure = send_failure(pub, exc)
        if failure is None:
            raise
        raise failure from None
    assert pub.target is not None
    link = message_link(pub.target, ids[0]) if ids else None
    return finish(pub, ids, link)
