"""Job kinds: each names its handler (a dotted path into `contentq.jobs`, imported by the worker when first
needed) and its queue. The runtime enqueues and runs jobs by kind without importing the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass

from contentq.errors import ContentqError


@dataclass(frozen=True)
class Kind:
    name: str
    handler: str
    queue: str
    on_failed: str = ""
    """'module:function(runtime, job_row, reason)' run once the job has ended failed (errors, timeouts, its
    worker's death): it settles the post the job was moving."""


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind("noop", "contentq.jobs.maintenance:noop", "maintenance"),
        Kind("collect", "contentq.jobs.collect:run", "collect"),
        Kind("rewrite", "contentq.jobs.rewrite:run", "rewrite", "contentq.jobs.rewrite:on_failed"),
        Kind("publish", "contentq.jobs.publish:run", "publish", "contentq.jobs.publish:on_failed"),
        Kind("settle", "contentq.jobs.publish:settle", "publish", "contentq.jobs.publish:on_settle_failed"),
        # One delivery of a post to one of its route's destinations (docs/destinations.md).
        Kind("deliver", "contentq.jobs.deliver:run", "publish", "contentq.jobs.deliver:on_failed"),
        Kind("settle_delivery", "contentq.jobs.deliver:settle", "publish", "contentq.jobs.deliver:on_settle_failed"),
        # A batch of rewrites through the OpenAI Batch API: submits, polls, then a child rewrite job per post.
        Kind("rewrite_batch", "contentq.jobs.rewrite_batch:run", "rewrite", "contentq.jobs.rewrite_batch:on_failed"),
        Kind("generate", "contentq.jobs.generate:run", "rewrite", "contentq.jobs.generate:on_failed"),
        Kind("imagegen", "contentq.jobs.imagegen:run", "imagegen", "contentq.jobs.imagegen:on_failed"),
        Kind("donor_change", "contentq.jobs.donor_change:run", "publish"),  # contentq listen: edits, deletions
        # Insights (docs/insights.md): X and Instagram here; Telegram in the Telegram worker (one session).
        Kind("insights", "contentq.jobs.insights:run", "maintenance"),
        Kind("insights_telegram", "contentq.jobs.insights:run_telegram", "collect"),
        Kind("call", "", "maintenance"),  # runs the handler given at enqueue time (plugins, tests, benches)
    ]
}


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ContentqError(f"unknown job kind {name!r} (known: {', '.join(sorted(KINDS))})") from None
