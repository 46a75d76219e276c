"""Who acts: the name recorded with every move of a post (`contentq.lifecycle`).

`job:<job id>` (a worker's job, and its kind's `on_failed` hook after it ended), `cli:<os user>` (a command),
`web:<session>` (a request of the panel), `listen:<listener name>` (`contentq listen`), `bot:<telegram
user id>`. The entry points set it and the lifecycle reads it: a context variable rather than a parameter, so
the functions between a job handler or a request and the move (pipeline, publication, …) need not pass it on,
and each thread or request records its own. Unset, a move names the process (`process:<os user>`): what a
test or a script calling a core function directly gets.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

KINDS = ("job", "cli", "web", "listen", "bot", "process")
"""The kinds of actor, the part before the first ':'."""

_current: ContextVar[str | None] = ContextVar("contentq_actor", default=None)
_process_actor: str | None = None


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's random uid) and no $USER
        return "unknown"


def current() -> str:
    """The actor of the code running now: the innermost `acting_as`, else the process's, else `process:<user>`."""
    return _current.get() or _process_actor or f"process:{os_user()}"


@contextmanager
def acting_as(actor: str) -> Iterator[str]:
    """Moves made inside are recorded as `actor`'s (nested: the innermost wins)."""
    check(actor)
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def set_process_actor(actor: str | None) -> None:
    """The actor of everything this process does outside an `acting_as` (the CLI sets `cli:<os user>`)."""
    global _process_actor
    _process_actor = check(actor) if actor is not None else None


def cli() -> str:
    return f"cli:{os_user()}"


def job(job_id: str) -> str:
    return f"job:{job_id}"


def job_id(actor: str | None = None) -> str | None:
    """The job id of a `job:` actor (the current one by default): the parent of the jobs a move enqueues."""
    kind, _, rest = (actor or current()).partition(":")
    return rest if kind == "job" and rest else None


def check(actor: str) -> str:
    kind, sep, who = actor.partition(":")
    if not sep or kind not in KINDS or not who.strip():
        raise ValueError(f"actor {actor!r} is not <kind>:<who> with a kind of {', '.join(KINDS)}")
    return actor
