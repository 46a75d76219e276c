"""Rewriting one post: gather its context from the store, pick the route's rewriter, run it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from contentq.content.refs import normalize_channel_ref
from contentq.integrations.llm import build_llm_client
from contentq.rewrite import budget
from contentq.rewrite.base import Reporter, Rewriter, RewriteResult, RewriteTask
from contentq.rewrite.clean import CleanRewriter, CopyRewriter
from contentq.rewrite.llm import LLMRewriter
from contentq.routes import Route, load_routes
from contentq.runtime.context import Runtime
from contentq.settings import Settings
from contentq.store import Store


def load_route(settings: Settings, name: str) -> Route:
    return load_routes(settings.config_path, required=True).get(name)


def post_has_media(store: Store, post: dict[str, Any], route: Route) -> bool:
    """Whether the text will be a caption: donor media, or an image the route adds."""
    if (post.get("kind") or "text") != "text" or route.images != "none":
        return True
    return bool(store.scalar("SELECT COUNT(*) FROM media WHERE post_id = ?", (post["id"],)))


def style_examples(store: Store, route: Route, count: int) -> list[str]:
    """The target channel's last published posts, newest first."""
    if count <= 0:
        return []
    rows = store.query(
        "SELECT COALESCE(rewrite_html, text_html) AS html FROM posts"
        " WHERE state = 'published' AND (route = ? OR target IN (?, ?))"
        " AND COALESCE(rewrite_html, text_html) != ''"
        " ORDER BY COALESCE(published_at, updated_at) DESC, id DESC LIMIT ?",
        (route.name, route.target, normalize_channel_ref(route.target), count),
    )
    return [row["html"] for row in rows]


def donor_recent_posts(store: Store, post: dict[str, Any], count: int) -> list[str]:
    """The same donor's other recent posts, newest first (footer detection compares against them)."""
    if not post.get("source") or count <= 0:
        return []
    rows = store.query(
        "SELECT text_html FROM posts WHERE source = ? AND id != ? AND text_html != ''"
        " ORDER BY COALESCE(posted_at, collected_at) DESC, id DESC LIMIT ?",
        (post["source"], post["id"], count),
    )
    return [row["text_html"] for row in rows]


def build_task(
    runtime: Runtime, post: dict[str, Any], route: Route, job_id: str | None = None, *, deadline: float | None = None
) -> RewriteTask:
    settings, store = runtime.settings, runtime.store
    has_media = post_has_media(store, post, route)
    return RewriteTask(
        post_id=post["id"],
        route=route,
        donor_html=post["text_html"] or "",
        limit=settings.caption_limit if has_media else settings.text_limit,
        has_media=has_media,
        style_examples=style_examples(store, route, route.style_examples) if route.rewriter == "llm" else [],
        donor_recent=donor_recent_posts(store, post, route.clean.footer_window) if route.rewriter == "clean" else [],
        job_id=job_id,
        deadline=deadline,
    )


def rewriter_for(runtime: Runtime, route: Route) -> Rewriter:
    if route.rewriter == "clean":
        return CleanRewriter()
    if route.rewriter == "none":
        return CopyRewriter()
    return LLMRewriter(
        runtime.service("llm", build_llm_client), runtime.settings, runtime.store, gate=budget.gate(runtime, "rewrite")
    )


def run_rewriter(
    runtime: Runtime,
    rewriter: Rewriter,
    post: dict[str, Any],
    task: RewriteTask,
    reporter: Reporter,
    *,
    attempt: Callable[[], RewriteResult] | None = None,
) -> RewriteResult:
    """The route's rewriter on the task (or `attempt`: a batch line's answer taken through the same checks); when
    the route's budget is spent under on_budget = "clean", the clean rewriter instead (`instead` says why). Under
    "wait" BudgetExceeded (a Reschedule) goes to the caller."""
    try:
        result = attempt() if attempt is not None else rewriter.rewrite(task, reporter)
        if result.cost > 0:
            budget.check(runtime, task.route, "rewrite")  # the admin hears at once of a budget this post spent
        return result
    except budget.BudgetExceeded as over:
        if over.verdict.action != "clean":
            raise
        why = over.verdict.reason or "the budget is spent"
    reporter.log("budget_clean", f"{why}: the clean rewriter rewrites post {task.post_id}", level="warning")
    recent = donor_recent_posts(runtime.store, post, task.route.clean.footer_window)
    clean = replace(task, style_examples=[], donor_recent=recent)
    result = CleanRewriter().rewrite(clean, reporter)
    result.instead = f"rewritten by the clean rewriter: {why}"
    return result


def rewrite_post(
    runtime: Runtime, post: dict[str, Any], route: Route, reporter: Reporter, *, job_id: str | None = None
) -> RewriteResult:
    task = build_task(runtime, post, route, job_id)
    return run_rewriter(runtime, rewriter_for(runtime, route), post, task, reporter)
