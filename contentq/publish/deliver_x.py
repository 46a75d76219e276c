"""A delivery to X: the post adapted (`adapt.adapt_for_x`), each tweet of the thread exactly once.

X takes no idempotency key, so each tweet is recorded (`delivery_parts`, status `attempting`) before its POST
leaves. A run that finds a tweet `attempting` (its last run died, or the answer was lost) looks at the account's
own tweets since that attempt: the tweet with the same text (X's t.co links and entities aside), replying to the
previous tweet of the thread and recorded for no other part, is it; none means it never went out and it is sent;
several are never guessed between (the delivery fails, asking the operator to look).
"""

from __future__ import annotations

import html as htmllib
import re
from datetime import datetime, timedelta
from typing import Any

from contentq.clock import parse
from contentq.errors import ContentqError, DatabaseUnavailableError, FatalJobError, Reschedule
from contentq.integrations.oauth1 import OAuth1Credentials
from contentq.integrations.x import XAuthFailed, XClient, XRateLimited, XRefused, XUnavailable
from contentq.publish import PublishError
from contentq.publish.adapt import XPost, adapt_for_x
from contentq.publish.delivery_run import DeliveryRun
from contentq.publish.render import post_html, post_media
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.settings import ACCOUNT_SECRETS, account_secret, account_variable
from contentq.store.deliveries import (
    part_row,
    record_part_attempt,
    record_part_refused,
    record_part_sent,
    recorded_platform_ids,
)

LOOK_BACK_SLACK = timedelta(seconds=120)
"""A tweet dated this much before the attempt still counts (clock skew between us and X)."""

_URL = re.compile(r"https?://\S+")
_SPACE = re.compile(r"\s+")


def x_client(runtime: Runtime, account: str) -> XClient:
    """The account's client (one per process), from its secrets in .env and its [accounts.x.NAME] table."""
    values = {f: account_secret(runtime.settings, "x", account, f) for f in ACCOUNT_SECRETS["x"]}
    missing = [account_variable("x", account, f) for f, v in values.items() if not v]
    if missing:
        raise ContentqError(
            f"X account {account!r} has no credentials: set {', '.join(missing)} in .env (docs/destinations.md)"
        )
    config = routes_config(runtime).x_account(account)
    creds = OAuth1Credentials(
        str(values["consumer_key"]), str(values["consumer_secret"]), str(values["access_token"]),
        str(values["access_token_secret"]),
    )  # fmt: skip
    key = f"x:{account}"
    cached = runtime.services.get(key)
    if isinstance(cached, XClient) and cached.credentials == creds and cached.api_base == config.api_base.rstrip("/"):
        return cached
    if isinstance(cached, XClient):
        cached.close()
    client = XClient(creds, account=account, api_base=config.api_base, timeout=runtime.settings.destination_timeout)
    runtime.services[key] = client
    return client


def plan_for(run: DeliveryRun) -> XPost:
    media = post_media(run.store, run.runtime.settings, run.post_id)
    return adapt_for_x(post_html(run.post), media, run.route.x)


def normalize(text: str) -> str:
    """A tweet's text as comparable: entities decoded, every URL one token (X shows t.co links), trailing URLs
    (X adds one for attached media) dropped, spaces collapsed."""
    text = _URL.sub(" <url> ", htmllib.unescape(text))
    words = _SPACE.sub(" ", text).strip().split(" ")
    while words and words[-1] == "<url>":
        words.pop()
    return " ".join(words)


class Ambiguous(Exception):  # noqa: N818 - an outcome of the lookup
    pass


def find_tweet(
    client: XClient, text: str, attempted_at: datetime, reply_to: str | None, exclude: set[str]
) -> str | None:
    """The id of the tweet an uncertain attempt posted, None when it is not on the account; raises Ambiguous."""
    wanted = normalize(text)
    found = [
        t.id
        for t in client.recent_tweets(attempted_at - LOOK_BACK_SLACK)
        if t.id not in exclude and t.replied_to == reply_to and normalize(t.text) == wanted
    ]
    if len(found) > 1:
        raise Ambiguous(f"{len(found)} tweets since the attempt match it ({', '.join(found)})")
    return found[0] if found else None


def _link(client: XClient, tweet_id: str) -> str:
    try:
        username = client.me().get("username")
    except ContentqError:
        username = None
    return f"https://x.com/{username}/status/{tweet_id}" if username else f"https://x.com/i/web/status/{tweet_id}"


def _send_thread(run: DeliveryRun, client: XClient, plan: XPost) -> list[str]:
    store, delivery_id, round_no = run.store, run.delivery_id, run.round_no
    ids: list[str] = []
    previous: str | None = None
    for index, tweet in enumerate(plan.tweets):
        row = part_row(store, delivery_id, round_no, index)
        if row is not None and row["status"] == "sent":
            previous = str(row["platform_id"])
            ids.append(previous)
            continue
        if row is not None and row["status"] == "attempting":
            exclude = recorded_platform_ids(store, "x", run.destination.account)
            try:
                found = find_tweet(client, tweet.text, parse(row["attempted_at"]), previous, exclude)
            except Ambiguous as exc:
                raise run.fail(
                    f"tweet {index + 1} may have gone out and cannot be told apart: {exc}; look at the account, "
                    "delete the extra tweets, then `contentq jobs retry` the deliver job"
                ) from None
            if found is not None:
                record_part_sent(store, delivery_id, round_no, index, found)
                run.reporter.log(
                    "settled", f"{run.name}: tweet {index + 1} went out before the last run stopped: {found}"
                )
                previous = found
                ids.append(found)
                continue
            run.reporter.log("settled", f"{run.name}: tweet {index + 1} is not on the account: sending it")
        media_ids = [client.upload_image(path) for path in tweet.images]  # an upload shows nothing: before the record
        record_part_attempt(store, delivery_id, round_no, index, {"media": len(media_ids)})
        try:
            tweet_id = client.create_tweet(tweet.text, media_ids=media_ids, reply_to=previous)
        except (XRateLimited, XRefused, XAuthFailed) as exc:  # refused: nothing went out
            record_part_refused(store, delivery_id, round_no, index, str(exc))
            raise
        record_part_sent(store, delivery_id, round_no, index, tweet_id)
        run.reporter.log("sent", f"{run.name}: tweet {index + 1}/{len(plan.tweets)}: {tweet_id}")
        previous = tweet_id
        ids.append(tweet_id)
    return ids


def deliver_x(run: DeliveryRun) -> dict[str, Any]:
    """Send the post to X as a tweet or a thread (see the module doc)."""
    try:
        plan = plan_for(run)
        run.notes.extend(plan.notes)
        client = x_client(run.runtime, run.destination.account)
        if part_row(run.store, run.delivery_id, run.round_no, 0) is None:  # a fresh delivery: it takes a token
            limit = routes_config(run.runtime).x_account(run.destination.account).limit
            run.take_token(limit.burst, limit.per_hour, count=len(plan.tweets))  # a request per tweet
        if not run.start():
            return {"delivery_id": run.delivery_id, "skipped": "state changed"}
        ids = _send_thread(run, client, plan)
    except XRateLimited as exc:
        raise run.wait(exc.delay, exc.reason) from None
    except Reschedule:
        raise
    except (XRefused, XAuthFailed, PublishError) as exc:
        raise run.fail(str(exc)) from None
    except FatalJobError:
        raise
    except XUnavailable:
        raise  # tried again; a tweet that may have gone out is looked for first
    except DatabaseUnavailableError:
        raise  # the machine's trouble: the job runner waits it out and runs the job again, no try spent
    except ContentqError as exc:
        raise run.fail(str(exc)) from None
    return run.finish(ids, _link(client, ids[0]) if ids else None)


def settle_x(run: DeliveryRun, reason: str) -> dict[str, Any]:
    """The deliver job ended failed: every tweet recorded or found on the account → published; else failed (what
    is out stays recorded: `contentq jobs retry` continues the thread, never posts a tweet twice)."""
    store = run.store
    try:
        plan = plan_for(run)
        client = x_client(run.runtime, run.destination.account)
        out = 0
        previous: str | None = None
        ids: list[str] = []
        for index, tweet in enumerate(plan.tweets):
            row = part_row(store, run.delivery_id, run.round_no, index)
            found = str(row["platform_id"]) if row is not None and row["status"] == "sent" else None
            if found is None and row is not None and row["status"] == "attempting":
                exclude = recorded_platform_ids(store, "x", run.destination.account)
                found = find_tweet(client, tweet.text, parse(row["attempted_at"]), previous, exclude)
                if found is not None:
                    record_part_sent(store, run.delivery_id, run.round_no, index, found)
            if found is None:
                break
            out += 1
            ids.append(found)
            previous = found
    except DatabaseUnavailableError:
        raise  # waited out by the job runner, then the account is looked at again
    except Exception as exc:
        run.fail(f"{reason}; X could not be checked ({type(exc).__name__}: {exc})")
        return {"delivery_id": run.delivery_id, "state": "failed", "reason": reason}
    if ids and out == len(plan.tweets):
        from contentq.publish import deliveries

        deliveries.move_delivery(store, run.delivery_id, "started")
        run.reporter.log("settled", f"{run.name}: every tweet is on the account ({reason})")
        return {**run.finish(ids, _link(client, ids[0])), "state": "published"}
    run.fail(f"{reason}; {out} of {len(plan.tweets)} tweet(s) are out (recorded): `contentq jobs retry` the "
             "deliver job to send the rest")  # fmt: skip
    return {"delivery_id": run.delivery_id, "state": "failed", "reason": reason}
