"""`POST /api/jobs`: a job asked for by hand goes through the core its CLI command uses.

A post's jobs are deduplicated on (kind, post id): a rewrite, publish or imagegen job keyed anything else, or for
a post that does not exist, would run beside the pipeline's own job for that post. So those kinds take the post
id (as `post_id`, or as the key) and are enqueued by `contentq rewrite`'s, `contentq publish`'s and `contentq
images generate`'s core functions, with their checks; the other kinds are enqueued as the pipeline enqueues them.
"""

from __future__ import annotations

import json
from typing import Any

from contentq.errors import ConflictError, ContentqError
from contentq.rewrite.enqueue import enqueue_rewrites
from contentq.runtime import queues, tracking
from contentq.runtime.context import Runtime
from contentq.runtime.kinds import get_kind
from contentq.store.db import SQLITE_INT_MAX
from contentq.store.posts import get_post
from contentq.web.actions import in_state

THROUGH_CORE = ("rewrite", "publish", "imagegen")
"""Kinds enqueued by their CLI command's core: its checks apply, and delay_s / queue do not."""

ALLOWED_PAYLOAD = {"rewrite": {"post_id"}, "publish": {"post_id"}, "imagegen": {"post_id", "prompt", "backend"}}

POST_KINDS = (*THROUGH_CORE, "settle")
"""Kinds whose key is the id of the post they work on."""

PAYLOAD_MAX_BYTES = 16 * 1024
"""A job's payload as JSON: ids and options (a prompt at most), never content. Every jobs page carries the
payloads of its jobs, so one huge payload would weigh on every page that lists it."""


class PayloadTooLarge(ContentqError):
    """A request within the body limit whose job payload is still too large to keep (413)."""


PIPELINE_ONLY = {
    "call": "the web does not run arbitrary handlers ('call' jobs); enqueue a pipeline kind",
    "donor_change": "donor_change jobs come from `contentq listen` (they need the donor's edit); nothing to enqueue",
}


def create_job(
    rt: Runtime,
    kind: str,
    key: str | None,
    payload: dict[str, Any],
    *,
    post_id: int | None = None,
    delay_s: float | None = None,
    queue: str | None = None,
) -> dict[str, Any]:
    """Enqueue one job; returns its jobs row (with `deduplicated` when an active job of its key was returned).

    Raises ContentqError (400) for a request that does not fit the kind, NotFoundError (404) for a missing post,
    ConflictError (409) when the post's state does not allow the job.
    """
    name = get_kind(kind).name
    check_payload(payload)
    if name in PIPELINE_ONLY:
        raise ContentqError(PIPELINE_ONLY[name])
    if name not in POST_KINDS:
        if not key:
            raise ContentqError(f"a {name} job needs a key (what it works on: a source, a route …)")
        if queue:
            queues.check_queue(queue)
        return tracking.enqueue(rt, name, key, payload, post_id=post_id, delay=delay_s, queue=queue)

    target = _post_of(name, key, payload, post_id)
    get_post(rt.store, target)  # NotFoundError: 404
    if name == "settle":
        if queue:
            queues.check_queue(queue)
        body = {**payload, "post_id": target}
        return tracking.enqueue(rt, name, str(target), body, post_id=target, delay=delay_s, queue=queue)
    extra = set(payload) - ALLOWED_PAYLOAD[name]
    if extra:
        allowed = ", ".join(sorted(ALLOWED_PAYLOAD[name]))
        raise ContentqError(f"a {name} job's payload takes only {allowed}; not {', '.join(sorted(extra))}")
    if delay_s is not None or queue:
        raise ContentqError(
            f"delay_s and queue do not apply to {name} jobs: they are enqueued as `contentq {name}` enqueues them"
            + (" (to publish later, POST /api/posts/{id}/schedule)" if name == "publish" else "")
        )
    if name == "rewrite":
        row = enqueue_rewrites(rt, [target])[0]
        if row["job"] is None:
            raise ConflictError(f"post {target} was not queued for a rewrite: {row['result']}")
        return {"id": row["job"], "deduplicated": row["result"] == "already queued"}
    if name == "publish":
        from contentq.publish.core import publish_now  # Telethon (and Pillow): only when the panel publishes

        job = in_state(publish_now, rt, target)["job"]
        if job is None:
            raise ContentqError(
                f"post {target} is scheduled to publish now, but no job was made; run `contentq dispatch`"
            )
        return {"id": job, "deduplicated": False}
    from contentq.images.service import request_image  # Pillow: only when the panel asks for an image

    return request_image(rt, target, prompt=payload.get("prompt") or None, backend=payload.get("backend") or None)


def check_payload(payload: dict[str, Any]) -> None:
    """Refuses a payload that cannot be stored (a lone surrogate, which UTF-8 cannot hold) or is too large."""
    try:
        size = len(json.dumps(payload, ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise ContentqError("the payload holds an invalid character (a lone UTF-16 surrogate)") from None
    if size > PAYLOAD_MAX_BYTES:
        raise PayloadTooLarge(
            f"the job payload is {size} bytes as JSON; at most {PAYLOAD_MAX_BYTES}: a job carries ids and options"
            " (a post id, a source, a prompt), not content"
        )


def _post_of(kind: str, key: str | None, payload: dict[str, Any], post_id: int | None) -> int:
    """The post a post-bound job works on: `post_id`, the key and the payload's post_id must agree."""
    named = {str(v) for v in (key, payload.get("post_id"), post_id) if v is not None and v != ""}
    if not named:
        raise ContentqError(f"a {kind} job works on a post: give its id as post_id (the key is then the post id)")
    if len(named) > 1:
        raise ContentqError(
            f"a {kind} job's key is its post id: key, post_id and payload.post_id disagree ({', '.join(sorted(named))})"
        )
    (value,) = named
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= SQLITE_INT_MAX:
        raise ContentqError(f"a {kind} job's key is its post id, a number; got {value[:40]!r}")
    return int(value)
