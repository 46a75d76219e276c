"""Housekeeping jobs."""

from __future__ import annotations

from typing import Any

from contentq.runtime.context import JobContext


def noop(ctx: JobContext, **payload: Any) -> dict[str, Any]:
    """Does nothing; used by `contentq queue ping` style checks and by bench/overhead.py."""
    return {}


def bare_noop() -> None:
    """The same no-op as a plain RQ function, for the untracked baseline in bench/overhead.py."""
