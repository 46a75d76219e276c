"""`contentq demo`: the whole pipeline on a fresh machine, with no credentials.

A demo route imports a Telegram Desktop channel export shipped with the package (Russian and English posts
with formatting, links, mentions, a footer line in most posts, an album and service messages), cleans the
posts with the rule-based rewriter, renders branded cards with Pillow, schedules them as soon as possible and
publishes them to the outbox folder. Burst workers run in this process until no job is left.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from contentq.errors import ContentqError
from contentq.routes import load_routes
from contentq.runtime.context import Runtime
from contentq.runtime.queues import queue_status
from contentq.runtime.redis import embedded_server
from contentq.runtime.worker import run_worker
from contentq.settings import Settings

ROUTE = "demo"
SOURCE = "@techdigest_demo"
TARGET = "@contentq_demo"

DEMO_ROUTE_TOML = f"""
# The demo route written by `contentq demo`: the shipped sample export, cleaned with rules (no API key),
# cards rendered locally, published as soon as possible to the outbox folder (no Telegram account needed).
[routes.{ROUTE}]
target = "{TARGET}"
sources = ["{SOURCE}"]
description = "A tech digest: the donor's links, mentions and footer removed, our signature added."
rewriter = "clean"
images = "optional"
image_backend = "card"
publisher = "outbox"

[routes.{ROUTE}.schedule]
asap = true

[routes.{ROUTE}.clean]
signature = "<b>contentq demo</b> · {TARGET}"
replacements = {{ "Пишите в комментариях" = "Обсудим в нашем чате" }}
"""

PENDING_SQL = "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress')"


def export_path() -> Path:
    """The sample export shipped in the package (contentq/data/demo/result.json, photos beside it)."""
    path = Path(str(resources.files("contentq") / "data" / "demo" / "result.json"))
    if not path.exists():
        raise ContentqError(f"the demo export is missing from the installation ({path}); reinstall contentq")
    return path


def routes_file(settings: Settings) -> Path:
    return settings.config.expanduser() if settings.config is not None else settings.home / "contentq.toml"


def ensure_demo_route(settings: Settings) -> Path:
    """Write the demo route; a routes file of the user's own is never changed."""
    path = routes_file(settings)
    if path.exists():
        existing = load_routes(path)
        if ROUTE in existing.routes:
            return path
        raise ContentqError(
            f"{path} holds your own routes and the demo does not change them: run the demo in a home of its own, "
            "e.g. `contentq demo --home /tmp/contentq-demo`"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_ROUTE_TOML.lstrip(), encoding="utf-8")
    return path


def import_sample(runtime: Runtime) -> dict[str, Any]:
    """Import the shipped export as posts of the demo source (all or nothing; rewrites are enqueued)."""
    from contentq.intake.collect import ForegroundContext
    from contentq.intake.imports import import_export

    report = import_export(ForegroundContext(runtime), export_path(), SOURCE, route_name=ROUTE)
    return _as_counts(report)


def _as_counts(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    for method in ("as_dict", "_asdict"):
        fn = getattr(result, method, None)
        if callable(fn):
            value = fn()
            if isinstance(value, dict):
                return value
    if hasattr(result, "__dict__"):
        return {k: v for k, v in vars(result).items() if not k.startswith("_")}
    return {"result": result}


PREPARE_QUEUES = ["rewrite", "collect", "imagegen", "maintenance"]  # the order a worker takes them in
"""Run before publishing, so that every post's card is attached when it goes out (images are optional on the
demo route: a post whose publish job ran first would go without its card)."""


def _pending(runtime: Runtime, queues: list[str] | None) -> int:
    sql = PENDING_SQL
    params: list[str] = []
    if queues:
        sql += f" AND queue IN ({','.join('?' for _ in queues)})"
        params = queues
    return int(runtime.store.scalar(sql, params) or 0)


def run_until_idle(
    runtime: Runtime,
    queues: list[str] | None = None,
    *,
    timeout: float = 180.0,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Burst workers until no job of these queues (default: all) is queued or running; delayed jobs (asap
    slots, retries) are waited for."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        run_worker(runtime, queues, burst=True)
        pending = _pending(runtime, queues)
        if progress:
            progress(_pending(runtime, None))
        if not pending:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise ContentqError(
                f"the demo still has {pending} job(s) pending after {timeout:.0f} s; "
                "see `contentq queue status` and `contentq jobs list`"
            )
        time.sleep(0.3)


@dataclass
class DemoResult:
    home: Path
    routes_file: Path
    imported: dict[str, Any]
    seconds: float
    posts: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    queues: list[dict[str, Any]]
    outbox: Path
    outbox_entries: list[str] = field(default_factory=list)
    stopped_embedded_redis: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "routes_file": str(self.routes_file),
            "imported": self.imported,
            "seconds": round(self.seconds, 2),
            "posts": self.posts,
            "jobs": self.jobs,
            "queues": self.queues,
            "outbox": str(self.outbox),
            "outbox_entries": self.outbox_entries,
        }


def run_demo(
    runtime: Runtime,
    *,
    timeout: float = 180.0,
    step: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    stop_embedded: bool = True,
) -> DemoResult:
    settings = runtime.settings
    say = step or (lambda _msg: None)
    settings.ensure_home()
    path = ensure_demo_route(settings)
    say(f"routes: {path} (route {ROUTE!r}: clean rewriter, cards, asap, outbox)")
    server = embedded_server(settings) if not settings.redis_url else None
    was_running = server.ping() if server is not None else True
    try:
        imported = import_sample(runtime)
        say("imported the sample export " + _summary(imported))
        seconds = run_until_idle(runtime, PREPARE_QUEUES, timeout=timeout, progress=progress)
        seconds += run_until_idle(runtime, None, timeout=timeout, progress=progress)
        queues = queue_status(runtime)
    finally:
        stopped = False
        if server is not None and stop_embedded and not was_running:
            runtime.close()  # drop connections first: the server is shut down below
            stopped = server.stop()
    store = runtime.store
    posts = store.query(
        "SELECT id, state, kind, COALESCE(title, '') AS title, rewrite_html, scheduled_at, published_at, state_reason,"
        # A photo missing from the export is stored without a file (path NULL): not one the post carries.
        " (SELECT COUNT(*) FROM media m WHERE m.post_id = p.id AND m.origin = 'donor' AND m.path IS NOT NULL)"
        " AS photos,"
        " (SELECT COUNT(*) FROM media m WHERE m.post_id = p.id AND m.origin = 'donor' AND m.path IS NULL)"
        " AS photos_missing,"
        " (SELECT COUNT(*) FROM media m WHERE m.post_id = p.id AND m.origin = 'generated') AS cards"
        " FROM posts p WHERE route = ? ORDER BY id",
        (ROUTE,),
    )
    for post in posts:
        post["preview"] = _preview(post.pop("rewrite_html") or "")
    jobs = store.query("SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status ORDER BY kind, status")
    outbox = settings.outbox_dir / ROUTE
    entries = (
        sorted((p.name for p in outbox.iterdir() if not p.name.startswith(".")), key=_natural)
        if outbox.is_dir()
        else []
    )
    return DemoResult(
        home=settings.home, routes_file=path, imported=imported, seconds=seconds, posts=posts, jobs=jobs,
        queues=queues, outbox=outbox, outbox_entries=entries, stopped_embedded_redis=stopped,
    )  # fmt: skip


def _summary(counts: dict[str, Any]) -> str:
    keys = [k for k in ("collected", "duplicate", "filtered", "skipped", "exact") if isinstance(counts.get(k), int)]
    if not keys:
        return ""
    return "(" + ", ".join(f"{counts[k]} {k}" for k in keys) + ")"


def _preview(html: str, limit: int = 60) -> str:
    text = " ".join(re.sub(r"<[^>]+>", "", html).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 62, name)
