"""The two publishers: Telegram (each part sent exactly once, see `publication`) and the outbox folder."""

from __future__ import annotations

from typing import Any

from telethon import errors as tg_errors

from contentq.channels import resolve_channel
from contentq.clock import now
from contentq.errors import ContentqError, DatabaseUnavailableError, FatalJobError, RedisUnavailableError, Reschedule
from contentq.integrations.telegram.access import gateway_of
from contentq.publish import PublishError
from contentq.publish.outbox import write_outbox
from contentq.publish.publication import Publication, finish, is_critical, report_rendering, start, telegram_account
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
    except Reschedule:
        raise
    except PublishError as exc:
        raise pub.fail(str(exc)) from None
    except FatalJobError:
        raise  # already recorded by pub.fail (a cancelled batch, a refused part)
    except (DatabaseUnavailableError, RedisUnavailableError):
        raise  # the machine's trouble: waited out by the job runner (a database) or retried (Redis)
    except ContentqError as exc:  # no Telegram session, an invalid one …: retrying cannot help
        raise pub.fail(str(exc)) from None
    except (tg_errors.FloodWaitError, tg_errors.FloodError) as exc:
        raise pub.flood_wait(exc) from None
    except (ConnectionError, OSError) as exc:
        raise pub.unreachable(exc) from None
    except tg_errors.RPCError as exc:
        if is_critical(exc):
            raise pub.fail(f"Telegram refused the post: {type(exc).__name__}: {exc}") from None
        if pub.last_attempt:
            raise pub.fail(f"{type(exc).__name__}: {exc}") from None
        raise
    except Exception as exc:
        if pub.last_attempt:
            raise pub.fail(f"{type(exc).__name__}: {exc}") from None
        raise
    assert pub.target is not None
    link = message_link(pub.target, ids[0]) if ids else None
    return finish(pub, ids, link)
