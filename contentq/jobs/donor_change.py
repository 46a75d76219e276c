"""The `donor_change` job (queue publish, key `edit:<post>:<edit>` or `delete:<post>`): a donor's edit or
deletion carried over to our published post (contentq/intake/donor_changes.py)."""

from __future__ import annotations

from typing import Any

from contentq.errors import FatalJobError, NotFoundError
from contentq.intake.donor_changes import delete_published, edit_published
from contentq.jobs.rewrite import job_deadline, job_started
from contentq.runtime.context import JobContext


def run(ctx: JobContext, post_id: int, edit_id: int | None = None, delete: bool = False, **_: Any) -> dict[str, Any]:
    started = job_started()  # the rewrite of an edit is bounded by this job's deadline, like a rewrite job
    try:
        if delete:
            return delete_published(ctx, post_id)
        if edit_id is None:
            raise FatalJobError("a donor_change job needs an edit_id or delete")
        return edit_published(ctx, post_id, edit_id, deadline=job_deadline(ctx, started))
    except (NotFoundError, LookupError) as exc:
        raise FatalJobError(str(exc)) from None
