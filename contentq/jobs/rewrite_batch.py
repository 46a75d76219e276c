"""The `rewrite_batch` job (queue rewrite, key = the batch's id): the parent of a batch of rewrites.

It submits the batch once its posts stopped coming, then looks at it every `openai_batch_poll` seconds (a
reschedule each time, never a sleep), moving the posts whose slot comes near to direct calls; once the batch
is over, each post gets a child rewrite job that validates its answer (or asks the model directly). A batch
job that fails for good hands every post still waiting in it to a direct call (`on_failed`).
"""

from __future__ import annotations

from typing import Any

from contentq.integrations.openai_batch import BatchClient
from contentq.rewrite import batch
from contentq.runtime.context import JobContext, Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.batches import get_batch
from contentq.store.jobs import log_event


def _client(runtime: Runtime) -> BatchClient:
    client: BatchClient = runtime.service("openai_batch", lambda rt: BatchClient(rt.settings))
    return client


def _children(runtime: Runtime, parent: str) -> batch.Children:
    def child(post_id: int, item_id: int) -> str:
        payload = {"post_id": post_id, "batch_item": item_id}
        return str(enqueue(runtime, "rewrite", str(post_id), payload, post_id=post_id, parent_id=parent)["id"])

    return batch.Children(child)


def run(ctx: JobContext, batch_id: int, **_: Any) -> dict[str, Any]:
    runtime = ctx.runtime
    client = _client(runtime)
    row = get_batch(ctx.store, batch_id)  # NotFoundError: fatal
    if row["status"] in ("gathering", "submitting"):
        ctx.checkpoint("before the batch is submitted")
        batch.submit(runtime, batch_id, client, ctx)
        row = get_batch(ctx.store, batch_id)
    if not row["provider_id"]:
        ctx.log("skipped", f"batch {batch_id} is {row['status']}: nothing to follow")
        return {"batch_id": batch_id, "status": row["status"]}
    return batch.follow(runtime, batch_id, client, ctx, _children(runtime, ctx.job_id))


class _Log:
    """The failed job's event log, for the fallback after it ended (no JobContext then)."""

    def __init__(self, runtime: Runtime, job_id: str) -> None:
        self.runtime, self.job_id = runtime, job_id

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None:
        log_event(self.runtime.store, self.job_id, event, message, level=level, data=data or None)

    def notify(self, key: str, message: str, level: str = "warning") -> bool:
        return self.runtime.notifier.notify(key, message, level=level)


def on_failed(runtime: Runtime, job: dict[str, Any], reason: str) -> None:
    """The batch's job ended failed (the Batch API refused it, its tries ran out, its worker died): each post
    still waiting in the batch is rewritten by a direct call, and the admin told."""
    payload_id = runtime.store.scalar("SELECT id FROM rewrite_batches WHERE job_id = ?", (job["id"],))
    if payload_id is None:
        return
    reporter = _Log(runtime, job["id"])
    moved = batch.fall_back_all(
        runtime, int(payload_id), f"its batch job failed: {reason}", _children(runtime, job["id"]), reporter
    )
    if moved:
        runtime.notifier.notify(
            f"batch-failed:{payload_id}",
            f"rewrite batch {payload_id} failed ({reason}); its {len(moved)} posts are rewritten by direct calls",
            "warning",
        )
