"""Auto-posting rules: a route with a `[generate]` section gets an LLM-written original post at each rule
time (local times of day, days of the week, time zone).

`contentq dispatch` fires due rules. Each route has one row in `rules` whose `next_run_at` moves forward
by compare-and-set when the rule fires, so one due time fires once however many dispatchers run; a
dispatcher that was down for several due times fires once and skips the missed ones. The generate job
(queue rewrite, key = route name) writes the post; it then goes through images, approval and scheduling
like a rewritten donor post. One post per due time: the post is keyed by (`generate:<route>`, due time).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contentq import lifecycle
from contentq.clock import iso, now, parse
from contentq.flow.schedule import local_times
from contentq.rewrite.base import RewriteTask
from contentq.rewrite.output import InvalidOutputError, ModelRefusalError
from contentq.rewrite.prompt import TAGS_HELP, examples_message
from contentq.routes import Generate, Route
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.posts import get_post

log = logging.getLogger("contentq.flow.rules")

SOURCE_PREFIX = "generate:"
"""posts.source of generated posts: 'generate:<route>'; source_msg_id is the due time (Unix seconds)."""


def next_rule_time(gen: Generate, after: datetime) -> datetime | None:
    """The first rule time strictly after `after`."""
    for instant in local_times(gen.times, gen.days, gen.timezone, after + timedelta(microseconds=1)):
        return instant
    return None


def _is_rule_time(gen: Generate, instant: datetime) -> bool:
    return next_rule_time(gen, instant - timedelta(microseconds=1)) == instant


def rule_routes(runtime: Runtime) -> list[Route]:
    return [r for r in routes_config(runtime).routes.values() if r.generate is not None]


def sync_rules(runtime: Runtime, current: datetime) -> None:
    """A row per rule; a next_run_at that no longer matches the route's times (config edited) is recomputed."""
    store = runtime.store
    for route in rule_routes(runtime):
        assert route.generate is not None
        upcoming = next_rule_time(route.generate, current)
        row = store.one("SELECT next_run_at FROM rules WHERE route = ?", (route.name,))
        if row is None:
            store.execute(
                "INSERT OR IGNORE INTO rules (route, next_run_at) VALUES (?, ?)",
                (route.name, iso(upcoming) if upcoming else None),
            )
        elif row["next_run_at"] is None or not _is_rule_time(route.generate, parse(row["next_run_at"])):
            store.execute(
                "UPDATE rules SET next_run_at = ? WHERE route = ? AND next_run_at IS ?",
                (iso(upcoming) if upcoming else None, route.name, row["next_run_at"]),
            )


def fire_due_rules(runtime: Runtime, current: datetime | None = None) -> list[dict[str, Any]]:
    """Enqueue a generate job for each rule whose next_run_at has come; each due time fires once."""
    stamp = current or now()
    sync_rules(runtime, stamp)
    store = runtime.store
    fired = []
    for route in rule_routes(runtime):
        assert route.generate is not None
        row = store.one("SELECT next_run_at FROM rules WHERE route = ?", (route.name,))
        if row is None or row["next_run_at"] is None or parse(row["next_run_at"]) > stamp:
            continue
        due = parse(row["next_run_at"])
        following = next_rule_time(route.generate, stamp)
        cursor = store.execute(
            "UPDATE rules SET next_run_at = ?, runs = runs + 1, last_run_at = ? WHERE route = ? AND next_run_at = ?",
            (iso(following) if following else None, iso(stamp), route.name, row["next_run_at"]),
        )
        if cursor.rowcount != 1:
            continue  # another dispatcher fired this due time
        missed = 0
        probe = next_rule_time(route.generate, due)
        while probe is not None and probe <= stamp and missed < 1000:
            missed += 1
            probe = next_rule_time(route.generate, probe)
        job = enqueue(runtime, "generate", route.name, {"route": route.name, "due": iso(due)})
        entry = {"route": route.name, "due": iso(due), "job": job["id"], "missed": missed}
        if job.get("deduplicated"):
            entry["skipped"] = "the previous generation is still running"
            store.execute(
                "UPDATE rules SET last_error = ? WHERE route = ?",
                (f"due time {iso(due)} skipped: the previous generation ({job['id']}) was still running", route.name),
            )
        elif missed:
            log.warning("rule %s: %d due time(s) missed while dispatch did not run; fired once", route.name, missed)
        fired.append(entry)
    return fired


def list_rules(runtime: Runtime) -> list[dict[str, Any]]:
    sync_rules(runtime, now())
    out = []
    for route in rule_routes(runtime):
        gen = route.generate
        assert gen is not None
        row = runtime.store.one("SELECT * FROM rules WHERE route = ?", (route.name,)) or {}
        posts = runtime.store.scalar(
            "SELECT COUNT(*) FROM posts WHERE route = ? AND source = ?", (route.name, SOURCE_PREFIX + route.name)
        )
        out.append(
            {
                "route": route.name,
                "target": route.target,
                "topic": gen.topic,
                "times": ", ".join(gen.times),
                "days": ",".join(gen.days),
                "timezone": gen.timezone,
                "next_run_at": row.get("next_run_at"),
                "next_run_local": _local(row.get("next_run_at"), gen.timezone),
                "runs": row.get("runs", 0),
                "successes": row.get("successes", 0),
                "posts": posts,
                "last_run_at": row.get("last_run_at"),
                "last_error": row.get("last_error"),
            }
        )
    return out


def _local(instant: str | None, timezone: str) -> str | None:
    if not instant:
        return None
    return parse(instant).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def record_outcome(runtime: Runtime, route: str, *, error: str | None) -> None:
    if error is None:
        runtime.store.execute("UPDATE rules SET successes = successes + 1, last_error = NULL WHERE route = ?", (route,))
    else:
        runtime.store.execute("UPDATE rules SET last_error = ? WHERE route = ?", (error[:500], route))


# -- writing the post -------------------------------------------------------------------------------


def rule_post(runtime: Runtime, route: Route, due: datetime) -> dict[str, Any]:
    """The post of this due time, created (state `rewriting`) on first call: a re-run reuses it."""
    source = SOURCE_PREFIX + route.name
    stamp = iso()
    with runtime.store.transaction() as conn:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO posts (route, source, source_msg_id, kind, text_html, collected_at, state,"
            " rewriter, target, updated_at) VALUES (?, ?, ?, 'text', '', ?, 'rewriting', 'generate', ?, ?)",
            (route.name, source, int(due.timestamp()), stamp, route.target, stamp),
        )
        if cursor.rowcount:
            lifecycle.enter_in(conn, int(cursor.lastrowid or 0), "due", f"due at {iso(due)}")
        post_id = conn.execute(
            "SELECT id FROM posts WHERE source = ? AND source_msg_id = ?", (source, int(due.timestamp()))
        ).fetchone()[0]
    return get_post(runtime.store, post_id)


def generation_messages(runtime: Runtime, route: Route, due: datetime, limit: int) -> list[dict[str, Any]]:
    from contentq.rewrite.core import style_examples  # the OpenAI SDK: see write_original

    gen = route.generate
    assert gen is not None
    lines = [f"You write original posts for the Telegram channel {route.target}."]
    if route.description:
        lines.append(f"About the channel: {route.description}")
    allowed = ", ".join(route.allowed_links)
    lines += [
        "",
        f"Topic of today's post: {gen.topic}",
        "",
        "Rules:",
        f"- Write the post in Telegram HTML. Use only these tags: {TAGS_HELP}. No <br>, <p> or other tags:"
        " use plain line breaks. Write <, > and & in text as &lt;, &gt; and &amp;.",
        "- " + (f"Links: only these: {allowed}." if allowed else "Add no links."),
        f"- The text must be at most {limit} characters.",
        "- Do not repeat the channel's recent posts; say something new.",
        "- title: a short headline. image_prompt: one sentence describing an illustration for the post"
        " (no text in the picture), or null. skip: false (true only if the topic cannot be written about).",
        "- Answer with one JSON object following the given schema, nothing else.",
    ]
    messages: list[dict[str, Any]] = [{"role": "system", "content": "\n".join(lines)}]
    examples = style_examples(runtime.store, route, route.style_examples)
    if examples:
        messages.append({"role": "user", "content": examples_message(examples)})
    local = due.astimezone(ZoneInfo(gen.timezone))
    messages.append(
        {"role": "user", "content": f"Write the post for {local.strftime('%A, %d %B %Y, %H:%M')} ({gen.timezone})."}
    )
    return messages


def write_original(runtime: Runtime, route: Route, post_id: int, due: datetime, reporter: Any) -> dict[str, Any]:
    """Ask the LLM for an original post on the rule's topic, through the LLM rewriter's loop (invalid answers
    corrected, usage recorded, links and length validated); returns html, title, image_prompt (or skip)."""
    # The OpenAI SDK is loaded only where a post is written (dispatch and the CLI import this module).
    from contentq.integrations.llm import build_llm_client
    from contentq.rewrite.llm import InvalidModelOutputError, LLMRewriter

    settings = runtime.settings
    limit = settings.caption_limit if route.images != "none" else settings.text_limit
    task = RewriteTask(
        post_id=post_id, route=route, donor_html="", limit=limit, job_id=getattr(reporter, "job_id", None)
    )
    rewriter = LLMRewriter(runtime.service("llm", build_llm_client), settings, runtime.store)
    try:
        result = rewriter.complete(task, generation_messages(runtime, route, due, limit), reporter)
    except ModelRefusalError as exc:
        return {"skip": str(exc)}
    except InvalidModelOutputError as exc:
        raise InvalidOutputError(str(exc)) from None  # the generate job fails the rule's post on it
    if result.skip_reason is not None:
        return {"skip": result.skip_reason}
    return {
        "html": result.html,
        "title": result.title,
        "image_prompt": result.image_prompt,
        "truncated": result.truncated,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
    }
