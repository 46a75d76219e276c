"""A delivery to Instagram: the post adapted (`adapt.adapt_for_instagram`), published exactly once.

Steps: the 24 h publishing limit is read first (`content_publishing_limit`): at the limit, the delivery waits
until the window opens (when the oldest publication in it is a window old, from the account's media), with that
reason shown. Then the images get public copies (`public_media`; a post without images gets an image card), the
containers are made (one image, or a carousel of its items) and recorded (part 0: they are not visible), the
container is waited for (FINISHED), the publish is recorded as `attempting` (part 1) and sent.

After a crash with the publish `attempting`, the container's status decides: PUBLISHED → it went out (its media
is found among the account's recent media by caption and time, for its id and link); FINISHED → it did not,
and it is published now (a container is published once at most); EXPIRED or ERROR → new containers.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from contentq.clock import iso, now, parse
from contentq.errors import ContentqError, DatabaseUnavailableError, FatalJobError, Reschedule
from contentq.images.card import CardRenderer, card_text_for_post
from contentq.integrations.instagram import (
    InstagramAuthFailed,
    InstagramClient,
    InstagramQuota,
    InstagramRateLimited,
    InstagramRefused,
    InstagramUnavailable,
)
from contentq.publish import PublishError, deliveries, public_media
from contentq.publish.adapt import InstagramPost, adapt_for_instagram
from contentq.publish.delivery_run import DeliveryRun
from contentq.publish.render import post_html, post_media
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.settings import account_secret, account_variable
from contentq.store.deliveries import (
    part_row,
    record_part_attempt,
    record_part_detail,
    record_part_refused,
    record_part_sent,
    recorded_platform_ids,
)

CONTAINERS, PUBLISH = 0, 1
"""The delivery's parts: its containers (made, not visible), and the publish (what makes the post visible)."""

LOOK_BACK_SLACK = timedelta(seconds=120)
POLLS_IN_RUN = 5
"""Looks at a container still IN_PROGRESS before the job steps aside and comes back."""
WINDOW_MARGIN = 5.0
"""Seconds after the 24 h window opens that a waiting delivery tries again."""


def instagram_client(runtime: Runtime, account: str) -> InstagramClient:
    token = account_secret(runtime.settings, "instagram", account, "access_token")
    if not token:
        raise ContentqError(
            f"Instagram account {account!r} has no access token: set "
            f"{account_variable('instagram', account, 'access_token')} in .env (docs/destinations.md)"
        )
    config = routes_config(runtime).instagram_account(account)
    key = f"instagram:{account}"
    cached = runtime.services.get(key)
    if isinstance(cached, InstagramClient) and (cached.token, cached.user_id, cached.api_base) == (
        token,
        config.user_id,
        config.api_base.rstrip("/"),
    ):
        return cached
    if isinstance(cached, InstagramClient):
        cached.close()
    client = InstagramClient(
        config.user_id, token, account=account, api_base=config.api_base, timeout=runtime.settings.destination_timeout
    )
    runtime.services[key] = client
    return client


def plan_for(run: DeliveryRun) -> InstagramPost:
    media = post_media(run.store, run.runtime.settings, run.post_id)
    return adapt_for_instagram(post_html(run.post), media, run.route.instagram)


def window_opens(client: InstagramClient, usage: int, total: int, duration: int) -> datetime | None:
    """When the rolling window lets one more publication in: the (usage - total + 1)-th oldest publication of the
    window leaves it then. None when the account's media do not tell (deleted posts)."""
    since = now() - timedelta(seconds=duration)
    stamps = sorted(m.timestamp for m in client.recent_media(min(100, total + 5)) if m.timestamp >= since)
    index = usage - total
    if index < 0 or index >= len(stamps):
        return None
    return stamps[index] + timedelta(seconds=duration)


def check_quota(run: DeliveryRun, client: InstagramClient) -> None:
    """At the 24 h limit, the delivery waits for the window to open (raised as a Reschedule, reason shown)."""
    quota = client.publishing_limit()
    if quota.usage < quota.total:
        return
    opens = window_opens(client, quota.usage, quota.total, quota.duration)
    hours = quota.duration // 3600
    if opens is None:
        raise run.wait(3600.0, f"Instagram's {hours} h publishing limit is reached ({quota.usage} of {quota.total});"
                               " when it opens is not known: looking again in 1 h")  # fmt: skip
    delay = max(1.0, (opens - now()).total_seconds() + WINDOW_MARGIN)
    raise run.wait(
        delay,
        f"Instagram's {hours} h publishing limit is reached ({quota.usage} of {quota.total}): "
        f"the window opens at {iso(opens)}",
    )


def _image_data(run: DeliveryRun, plan: InstagramPost) -> list[bytes]:
    if plan.needs_card:
        return [CardRenderer.from_settings(run.runtime.settings).generate(card_text_for_post(run.post)).data]
    return [path.read_bytes() for path in plan.images]


def make_containers(run: DeliveryRun, client: InstagramClient, plan: InstagramPost) -> dict[str, Any]:
    """Public copies and containers for the post; recorded as part 0 (nothing is visible yet)."""
    settings = run.runtime.settings
    base = run.route.instagram.public_media_url
    assert base is not None  # checked when the routes file is read
    files: list[str] = []
    urls: list[str] = []
    for data in _image_data(run, plan):
        url, path = public_media.publish_image(settings, base, data)
        urls.append(url)
        files.append(path.name)
    detail: dict[str, Any] = {"files": files}
    record_part_attempt(run.store, run.delivery_id, run.round_no, CONTAINERS, detail)
    if len(urls) == 1:
        container = client.create_image(urls[0], caption=plan.caption)
        detail["children"] = []
    else:
        detail["children"] = [client.create_image(url, carousel_item=True) for url in urls]
        container = client.create_carousel(detail["children"], plan.caption)
    detail["container"] = container
    record_part_detail(run.store, run.delivery_id, run.round_no, CONTAINERS, detail)
    record_part_sent(run.store, run.delivery_id, run.round_no, CONTAINERS, container)
    run.reporter.log("containers", f"{run.name}: container {container} ({len(urls)} image(s))")
    return detail


def _detail(row: dict[str, Any] | None) -> dict[str, Any]:
    return dict(json.loads(row["detail"])) if row is not None and row["detail"] else {}


def wait_until_finished(run: DeliveryRun, client: InstagramClient, container: str) -> str:
    """The container's status once it is no longer IN_PROGRESS (a short wait in the run, then a Reschedule)."""
    import time

    for poll in range(POLLS_IN_RUN):
        status = client.container_status(container)
        if status != "IN_PROGRESS":
            return status
        if poll < POLLS_IN_RUN - 1:
            time.sleep(run.runtime.settings.instagram_poll_seconds)
    raise Reschedule(10.0, f"{run.name}: Instagram is still processing container {container}")


def find_published(run: DeliveryRun, client: InstagramClient, caption: str, since: datetime) -> Any:
    exclude = recorded_platform_ids(run.store, "instagram", run.destination.account)
    found = [
        m for m in client.recent_media() if m.id not in exclude and m.timestamp >= since - LOOK_BACK_SLACK
        and m.caption.strip() == caption.strip()
    ]  # fmt: skip
    return found[-1] if found else None  # the oldest match: the first publication after the attempt


def _published(run: DeliveryRun, client: InstagramClient, media_id: str, files: list[str]) -> dict[str, Any]:
    record_part_sent(run.store, run.delivery_id, run.round_no, PUBLISH, media_id)
    public_media.remove(run.runtime.settings, files)
    try:
        link = client.permalink(media_id)
    except ContentqError:
        link = None
    return run.finish([media_id], link)


def _resume(run: DeliveryRun, client: InstagramClient, plan: InstagramPost) -> dict[str, Any] | None:
    """A publish recorded as attempting: did it go out? The published result, or None (publish it now)."""
    attempt = part_row(run.store, run.delivery_id, run.round_no, PUBLISH)
    if attempt is None or attempt["status"] != "attempting":
        return None
    containers = part_row(run.store, run.delivery_id, run.round_no, CONTAINERS)
    detail = _detail(containers)
    status = client.container_status(str(detail.get("container")))
    if status != "PUBLISHED":
        run.reporter.log("settled", f"{run.name}: container {detail.get('container')} is {status}: not published")
        return None
    media = find_published(run, client, plan.caption, parse(attempt["attempted_at"]))
    run.reporter.log("settled", f"{run.name}: the container was published before the last run stopped")
    if media is None:
        run.notes.append("published (its container says so) but its media was not found on the account: no link")
        record_part_sent(run.store, run.delivery_id, run.round_no, PUBLISH, f"container:{detail.get('container')}")
        return run.finish([], None)
    return _published(run, client, media.id, list(detail.get("files") or []))


def _publish(run: DeliveryRun, client: InstagramClient, plan: InstagramPost) -> dict[str, Any]:
    resumed = _resume(run, client, plan)
    if resumed is not None:
        return resumed
    check_quota(run, client)
    containers = part_row(run.store, run.delivery_id, run.round_no, CONTAINERS)
    detail = _detail(containers) if containers is not None and containers["status"] == "sent" else {}
    container = str(detail.get("container") or "")
    status = wait_until_finished(run, client, container) if container else ""
    if status in ("", "EXPIRED", "ERROR"):
        if status == "ERROR":
            raise run.fail(
                f"Instagram could not process the images of container {container} (status ERROR): check that "
                f"{run.route.instagram.public_media_url} serves CONTENTQ_HOME/media (`contentq doctor`)"
            )
        public_media.remove(run.runtime.settings, list(detail.get("files") or []))
        detail = make_containers(run, client, plan)
        container = str(detail["container"])
        status = wait_until_finished(run, client, container)
        if status == "ERROR":
            raise run.fail(
                f"Instagram could not fetch or process the images (container {container} is ERROR): check that "
                f"{run.route.instagram.public_media_url} serves CONTENTQ_HOME/media (`contentq doctor`)"
            )
    record_part_attempt(run.store, run.delivery_id, run.round_no, PUBLISH, {"container": container})
    try:
        media_id = client.publish(container)
    except (InstagramQuota, InstagramRateLimited, InstagramRefused, InstagramAuthFailed) as exc:
        record_part_refused(run.store, run.delivery_id, run.round_no, PUBLISH, str(exc))
        raise
    run.reporter.log("sent", f"{run.name}: published as media {media_id}")
    return _published(run, client, media_id, list(detail.get("files") or []))


def deliver_instagram(run: DeliveryRun) -> dict[str, Any]:
    """Send the post to Instagram (see the module doc)."""
    try:
        plan = plan_for(run)
        run.notes.extend(plan.notes)
        client = instagram_client(run.runtime, run.destination.account)
        if part_row(run.store, run.delivery_id, run.round_no, CONTAINERS) is None:
            limit = routes_config(run.runtime).instagram_account(run.destination.account).limit
            check_quota(run, client)
            run.take_token(limit.burst, limit.per_hour)
        if not run.start():
            return {"delivery_id": run.delivery_id, "skipped": "state changed"}
        return _publish(run, client, plan)
    except InstagramQuota:
        client = instagram_client(run.runtime, run.destination.account)
        check_quota(run, client)  # the refusal came first (another app published): wait for the window
        raise run.wait(3600.0, "Instagram refused the post: its 24 h publishing limit is reached") from None
    except InstagramRateLimited as exc:
        raise run.wait(exc.delay, exc.reason) from None
    except Reschedule:
        raise
    except (InstagramRefused, InstagramAuthFailed, PublishError) as exc:
        raise run.fail(str(exc)) from None
    except FatalJobError:
        raise
    except InstagramUnavailable:
        raise
    except DatabaseUnavailableError:
        raise  # the machine's trouble: the job runner waits it out and runs the job again, no try spent
    except ContentqError as exc:
        raise run.fail(str(exc)) from None


def settle_instagram(run: DeliveryRun, reason: str) -> dict[str, Any]:
    """The deliver job ended failed: published if the container says so, else failed with `reason` (a `jobs
    retry` publishes it, the container first looked at)."""
    try:
        plan = plan_for(run)
        client = instagram_client(run.runtime, run.destination.account)
        deliveries.move_delivery(run.store, run.delivery_id, "started")
        resumed = _resume(run, client, plan)
    except DatabaseUnavailableError:
        raise  # waited out by the job runner, then the container is looked at again
    except Exception as exc:
        run.fail(f"{reason}; Instagram could not be checked ({type(exc).__name__}: {exc})")
        return {"delivery_id": run.delivery_id, "state": "failed", "reason": reason}
    if resumed is not None:
        return {**resumed, "state": "published"}
    run.fail(reason)
    return {"delivery_id": run.delivery_id, "state": "failed", "reason": reason}
