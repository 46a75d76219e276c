"""Settling a post whose publish job ended failed (its last try errored, timed out, or its worker died).

The channel decides, never a resend: every part of the current round that is recorded as sent, or that
can be told apart among the target's recent messages, is out. All parts out → the post is `published`.
Otherwise the round is cancelled (what went out is deleted, so the channel never shows half a post), the
post is `failed` with the reason and the admin is told; `contentq jobs retry` publishes it again.
"""

from __future__ import annotations

from typing import Any

from contentq import lifecycle
from contentq.clock import parse
from contentq.errors import ContentqError, DatabaseUnavailableError
from contentq.flow.channels import resolve_channel
from contentq.integrations.telegram.access import gateway_of
from contentq.publish import PublishError, ledger
from contentq.publish.fanout import settle_fanout
from contentq.publish.publication import Publication, Reporter, finish, telegram_account
from contentq.publish.render import caption_limit_for, message_link, post_media, render
from contentq.runtime.config import route_of
from contentq.runtime.context import Runtime
from contentq.store.posts import get_post

SETTLE_FROM = ("publishing", "scheduled")
"""States a failed publish job can leave a post in."""


def settle_publication(
    runtime: Runtime, post_id: int, reason: str, reporter: Reporter, *, last_attempt: bool = True
) -> dict[str, Any]:
    """Published if the channel shows every part, else failed with `reason`; raises (to be retried) only when
    the channel cannot be looked at and `last_attempt` is False."""
    post = get_post(runtime.store, post_id)
    if post["state"] not in SETTLE_FROM:
        reporter.log("settled", f"post {post_id} is {post['state']}: nothing to settle")
        return {"post_id": post_id, "state": post["state"]}
    try:
        route = route_of(runtime, post["route"])
    except DatabaseUnavailableError:
        raise
    except ContentqError as exc:
        reason = f"{reason}; its route cannot be loaded: {exc}"
        lifecycle.move(runtime.store, post_id, "publish_failed", reason=f"publish: {reason}", only_from=SETTLE_FROM)
        reporter.notify(f"publish-failed:{post_id}", f"publishing post {post_id} failed: {reason}", level="error")
        return {"post_id": post_id, "state": "failed", "reason": reason}
    if route.destinations:  # its deliveries settle themselves; the post follows them
        return {"post_id": post_id, "state": settle_fanout(runtime, post_id, reason, reporter)}
    pub = Publication(runtime, post, route, reporter, last_attempt=True, round_no=post["publish_round"])
    if route.publisher == "outbox":  # nothing to look at: the outbox write either happened or not
        pub.fail(reason, cancel=False)
        return {"post_id": post_id, "state": "failed", "reason": reason}
    settings = runtime.settings
    try:
        pub.gateway = gateway = gateway_of(runtime)
        gateway.ensure_ready()
        account = telegram_account(runtime, gateway)
        pub.target = resolve_channel(runtime.store, gateway, route.target, role="target")
        rendered = render(
            post,
            post_media(runtime.store, settings, post_id),
            caption_limit=caption_limit_for(settings, account),
            text_limit=settings.text_limit,
        )
        pub.parts = rendered.parts
        ids = _parts_out(pub)
    except PublishError as exc:
        pub.fail(f"{reason}; {exc}")
        return {"post_id": post_id, "state": "failed", "reason": reason}
    except DatabaseUnavailableError:
        raise  # the machine's trouble: waited out by the job runner, then the channel is looked at again
    except Exception as exc:
        if not last_attempt:
            raise  # the channel could not be looked at: the settle job tries again
        pub.gateway = pub.target = None  # nothing could be checked: cancel_batch says so
        pub.fail(f"{reason}; the channel could not be checked ({type(exc).__name__}: {exc})")
        return {"post_id": post_id, "state": "failed", "reason": reason}
    if ids is None:
        pub.fail(f"{reason}; the post is not (completely) in {route.target}")
        return {"post_id": post_id, "state": "failed", "reason": reason}
    assert pub.target is not None
    lifecycle.move(runtime.store, post_id, "publish_started", only_from="scheduled")  # finish moves from publishing
    reporter.log("settled", f"every part of post {post_id} is in {route.target}: it was published ({reason})")
    return {**finish(pub, ids, message_link(pub.target, ids[0]) if ids else None), "state": "published"}


def _parts_out(pub: Publication) -> list[int] | None:
    """The message ids of every part when all are out (recorded, or found in the channel), else None."""
    ids: list[int] = []
    for index, part in enumerate(pub.parts):
        key = (pub.post_id, pub.target_ref, pub.round_no, index)
        row = ledger.send_row(pub.store, *key)
        if row is not None and row["status"] == "sent":
            ids += ledger.message_ids_of(row)
            continue
        if row is None or row["status"] != "attempting":
            return None  # never sent, refused or taken back
        found = pub.settle(part, parse(row["created_at"]), set(ids))
        if found is None:
            return None
        ledger.record_sent(pub.store, key, found)
        pub.reporter.log("settled", f"part {index + 1} is in the channel: messages {found}")
        ids += found
    return ids
