"""Collect tests' shared helpers: the routes file, running a collect job, reading what it stored."""

from __future__ import annotations

from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.jobs import get_job
from tests.conftest import drain

ROUTES = """
[routes.news]
target = "@mine"
sources = ["@donor_a", "https://t.me/Donor_B"]
rewriter = "none"
"""


def collect(rt: Runtime, source: str = "@donor_a") -> dict:
    row = enqueue(rt, "collect", source, {"source": source})
    drain(rt, "collect")
    return get_job(rt.store, row["id"])


def posts(rt: Runtime, source: str | None = None) -> list[dict]:
    if source:
        return rt.store.query("SELECT * FROM posts WHERE source = ? ORDER BY id", (source,))
    return rt.store.query("SELECT * FROM posts ORDER BY id")


def channel(rt: Runtime, ref: str = "@donor_a") -> dict:
    return rt.store.one("SELECT * FROM channels WHERE ref = ?", (ref,))
