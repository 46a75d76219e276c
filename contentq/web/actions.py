"""Post and job actions of the panel: each calls the core function its CLI command calls (contentq.review.posts,
contentq.publish.core, runtime.tracking, runtime.bulk); this module only adapts form and API input and the
results' shapes, and says which refusals are conflicts.

A request the server understood, on a job or post whose state does not allow it now (approve a published
post, retry a running job), is a ConflictError (HTTP 409), not a bad request: the same request succeeds once
the state is right. The cores raise a plain ContentqError for it, with the sentence the CLI prints; here it
becomes a ConflictError with that sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from contentq.clock import parse
from contentq.errors import ConfigError, ConflictError, ContentqError, NotFoundError, RedisUnavailableError
from contentq.flow.schedule import resolve_at
from contentq.review import posts
from contentq.runtime import bulk as bulk_jobs
from contentq.runtime import tracking
from contentq.runtime.config import route_of
from contentq.runtime.context import Runtime
from contentq.store.posts import get_post

T = TypeVar("T")


def is_plain(exc: ContentqError) -> bool:
    """A refusal that names no more particular cause (not a missing id, Redis, the settings, a conflict)."""
    return not isinstance(exc, NotFoundError | RedisUnavailableError | ConfigError | ConflictError)


@contextmanager
def state_conflict() -> Iterator[None]:
    """Inside: a plain refusal of the core is about the job's or post's state (the input was checked before)."""
    try:
        yield
    except ContentqError as exc:
        if is_plain(exc):
            raise ConflictError(str(exc)) from None
        raise


def in_state(fn: Callable[..., T], *args: Any) -> T:
    with state_conflict():
        return fn(*args)


def approve(rt: Runtime, post_id: int) -> datetime:
    return parse(in_state(posts.approve, rt, post_id)["scheduled_at"])


def reject(rt: Runtime, post_id: int, reason: str | None) -> dict[str, Any]:
    return in_state(posts.reject, rt, post_id, reason or None)


def unschedule(rt: Runtime, post_id: int) -> dict[str, Any]:
    return in_state(posts.unschedule, rt, post_id)


def schedule_at(rt: Runtime, post_id: int, at: str) -> tuple[datetime, str | None]:
    try:
        result = posts.schedule_at(rt, post_id, at)
    except ContentqError as exc:
        if is_plain(exc) and _readable_time(rt, post_id, at):
            raise ConflictError(str(exc)) from None  # the time was fine: the post's state refused it
        raise
    return parse(result["scheduled_at"]), result["note"]


def _readable_time(rt: Runtime, post_id: int, at: str) -> bool:
    try:
        resolve_at(at, route_of(rt, get_post(rt.store, post_id)["route"]).schedule.timezone)
    except ContentqError:
        return False
    return True


def edit_post(rt: Runtime, post_id: int, edited: str) -> str:
    """Save a new text with the checks of `posts edit`; returns what the CLI prints after the save."""
    in_state(posts.text_to_edit, rt, post_id)  # refuses a post that may no longer be edited (409)
    edited = edited.replace("\r\n", "\n").rstrip("\n")  # a browser's textarea sends CRLF
    saved = posts.save_text(rt, post_id, edited)  # the text's own problems: 400
    return f"post {post_id} saved, {saved['length']} characters{saved['note']}"


def publish_post_now(rt: Runtime, post_id: int) -> str:
    """`contentq publish ID` (through the publish queue): skip the slot and approval; returns the job id."""
    from contentq.publish.core import publish_now  # Telethon (and Pillow): only when the panel publishes

    return str(in_state(publish_now, rt, post_id)["job"] or "?")


def retry_job(rt: Runtime, job_id: str) -> dict[str, Any]:
    return in_state(tracking.retry, rt, job_id)


def cancel_job(rt: Runtime, job_id: str) -> dict[str, Any]:
    return in_state(tracking.cancel, rt, job_id)


def bulk(rt: Runtime, spec: bulk_jobs.JobFilter, *, dry_run: bool = False) -> dict[str, Any]:
    """Retry or cancel every job `spec` matches (`jobs retry --all`); with dry_run, how many it would take."""
    if dry_run:
        ids = bulk_jobs.matching(rt, spec, bulk_jobs.BULK_MAX + 1)
        return bulk_jobs.BulkResult(
            spec.action, matched=min(len(ids), bulk_jobs.BULK_MAX), more=len(ids) > bulk_jobs.BULK_MAX
        ).as_dict()
    return bulk_jobs.bulk_action(rt, spec).as_dict()
