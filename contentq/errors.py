"""Every error contentq raises on purpose, and what it means for a job.

A `ContentqError` says what is wrong and what to do next: the CLI prints it as one `error:` line and exits 1.
The three `JobError` kinds also tell the job runner (`contentq.runtime.execute.run_tracked`) what to do when
one escapes a job, so no job module translates errors by hand:

- `RetryableError`: this try failed, another may not; it uses up one of the queue's attempts (after the
  queue's retry interval, or after `defer` seconds when given), and fails the job when none are left.
- `Reschedule`: not a failure, a wait (rate limit, flood wait, open circuit breaker, not due yet): the job
  runs again in `delay` seconds as a new generation; no attempt is used up; the reason is recorded.
- `FatalJobError`: retrying cannot help (bad input, refused by policy, credentials, configuration): the job
  fails at once and its kind's `on_failed` hook settles the post it was moving.

Any other exception (a bug, a network error nobody classified) counts as retryable. Integrations raise
these classes, or subclasses named for what happened (`LLMFatalError`, `CollectFailed`, `PublishError` …).
"""

from __future__ import annotations


class ContentqError(Exception):
    """An error with a message that says what is wrong and what to do next."""


class JobError(ContentqError):
    """An error that also says what a job should do about it (see the module doc)."""


class RetryableError(JobError):
    """Worth another try: uses up an attempt; `defer` (seconds) replaces the queue's retry interval once."""

    def __init__(self, message: str, *, defer: float | None = None) -> None:
        super().__init__(message)
        self.defer = None if defer is None else max(0.0, float(defer))


class Reschedule(JobError):  # noqa: N818 - an outcome, not an error
    """Run the job again after `delay` seconds without sleeping in the worker and without using up a try:
    flood waits, rate limits and an open circuit breaker are not failures."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = max(0.0, float(delay))
        self.reason = reason


class FatalJobError(JobError):
    """Retrying cannot help (bad input, refused by policy, auth errors): the job fails without a retry."""


class ConfigError(FatalJobError):
    """Settings or contentq.toml are invalid; a job fails at once (fix the file, then `contentq jobs retry`)."""


class NotFoundError(FatalJobError):
    """An id given by the user (or a job's payload) does not exist."""


class RedisUnavailableError(RetryableError):
    """Neither CONTENTQ_REDIS_URL nor the embedded server can be reached."""


class DatabaseUnavailableError(RetryableError):
    """The database cannot take a write now (held by another process, a full disk): the machine's trouble, not
    the job's. The job runner waits it out and runs the job again without using up a try."""

    cause = "busy"


class DatabaseLockedError(DatabaseUnavailableError):
    """SQLite stayed locked (by another process) past the wait allowed."""

    cause = "busy"


class DatabaseFullError(DatabaseUnavailableError):
    """The disk holding the database is full."""

    cause = "full"


class ConflictError(ContentqError):
    """The request is valid but the thing it acts on is busy: try again once it has settled (HTTP 409)."""


class InvalidInputError(ContentqError):
    """A value the person gave is well formed but unusable (a weak password, two that differ, an unknown
    route): the same request fails until the value changes (HTTP 422)."""


class JobStopped(BaseException):  # noqa: N818 - an outcome, like asyncio.CancelledError
    """Raised at a job's safe point (`contentq.runtime.stopping.checkpoint`) when the operator cancelled the
    run: the job stops between two steps, never inside one. A BaseException, like asyncio's CancelledError, so
    that a job's `except Exception` (a try that failed, a post to settle) does not take it for a failure; the
    job runner (`run_tracked`) ends the run on it."""
