"""Asking for rewrites by hand (`contentq rewrite`, the web admin): a rewrite job per post.

Light on purpose: imported by every CLI run, so nothing here loads the OpenAI SDK.
"""

from __future__ import annotations

from typing import Any

from contentq import lifecycle
from contentq.errors import NotFoundError
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue


def enqueue_rewrites(
    runtime: Runtime, post_ids: list[int], *, pending: bool = False, route: str | None = None
) -> list[dict[str, Any]]:
    """Enqueue a rewrite job per post (and, with `pending`, per post still in 'collected', of `route` if given);
    a post whose earlier rewrite failed is taken back to 'collected'. One row per post: post, job, result.

    Raises NotFoundError, before enqueuing anything, when one of `post_ids` does not exist.
    """
    store = runtime.store
    ids = list(dict.fromkeys(post_ids))
    missing = [i for i in ids if store.scalar("SELECT 1 FROM posts WHERE id = ?", (i,)) is None]
    if missing:
        which = ", ".join(str(i) for i in missing)
        raise NotFoundError(
            f"no post{'s' if len(missing) > 1 else ''} {which}; nothing was enqueued (`contentq posts list` shows ids)"
        )
    if pending:
        sql = "SELECT id FROM posts WHERE state = 'collected'" + (" AND route = ?" if route else "") + " ORDER BY id"
        ids += [row["id"] for row in store.query(sql, (route,) if route else ()) if row["id"] not in ids]
    rows: list[dict[str, Any]] = []
    for post_id in ids:
        post = store.one("SELECT id, state, rewrite_html FROM posts WHERE id = ?", (post_id,))
        if post is None:  # deleted meanwhile
            rows.append({"post": post_id, "job": None, "result": "no such post"})
            continue
        state = post["state"]
        if state == "failed" and post["rewrite_html"] is None:
            lifecycle.move(store, post_id, "rewrite_requested", reason="rewrite requested again")
            state = "collected"
        if state not in ("collected", "rewriting"):
            rows.append({"post": post_id, "job": None, "result": f"skipped: post is {state}"})
            continue
        job = enqueue(runtime, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id)
        rows.append(
            {"post": post_id, "job": job["id"], "result": "already queued" if job.get("deduplicated") else "queued"}
        )
    return rows
