"""Batch rewrites: a route's posts rewritten through the OpenAI Batch API at about half the price.

A rewrite job of a route with `rewrite_mode = "batch"` (or `"auto"` with the post's slot further away than the
provider's batch window) does not call the model: it puts the post's request — the very body a direct call
would send — in the gathering batch (`add_to_batch`) and the post waits in `rewriting`. The batch's job (kind
`rewrite_batch`, the parent) submits it once no post joined for `openai_batch_gather` seconds (`submit`),
then looks at its status every `openai_batch_poll` seconds (`follow`). Once it is over, each post gets a child
rewrite job that validates its line's answer exactly as a direct answer (`answered`); a line that failed, or
an answer that is refused, is asked again by a direct call. A post whose slot comes near while its batch runs
(`deadline`), or whose batch failed, expired or was cancelled, is rewritten by a direct call before its slot.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from contentq.clock import iso, now, parse
from contentq.content.html import html_to_text
from contentq.errors import Reschedule
from contentq.integrations.llm import (
    Completion,
    MalformedResponseError,
    check_completion,
    estimate_messages,
    estimate_tokens,
    json_schema_format,
)
from contentq.integrations.openai_batch import (
    ENDPOINT,
    BatchClient,
    BatchRefusedError,
    BatchUnavailableError,
    BatchView,
)
from contentq.rewrite.base import Reporter
from contentq.rewrite.core import build_task
from contentq.rewrite.llm import LLMRewriter
from contentq.rewrite.output import OUTPUT_SCHEMA, SCHEMA_NAME
from contentq.rewrite.prices import model_price
from contentq.routes import Route
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.batches import (
    add_item,
    get_batch,
    items_of,
    set_batch_job,
    set_items,
    settle_item,
    take_for_submit,
    update_batch,
)
from contentq.store.jobs import ACTIVE

KIND = "rewrite_batch"
"""The parent job of a batch."""

METADATA_KEY = "contentq_batch"
"""The batch's metadata naming contentq's batch id: a submission whose answer was lost is found by it."""


def source_hash(html: str | None) -> str:
    """Names the donor text a batch line was asked for: a donor edit since makes its answer stale."""
    return hashlib.sha256((html or "").encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Plan:
    """Whether a post's rewrite goes into a batch, why, and by when it must be done (its slot less a margin)."""

    batch: bool
    why: str
    deadline: datetime | None = None


def plan(runtime: Runtime, post: dict[str, Any], route: Route, prospective_slot: Callable[[], datetime | None]) -> Plan:
    """Batch or direct, for a post of a route whose rewrite_mode is not "direct". `prospective_slot` gives the
    slot the post would take (None: the schedule has none), asked only for a route with slots
    (contentq.flow.schedule.prospective_slot)."""
    settings = runtime.settings
    if route.rewrite_mode == "direct" or route.rewriter != "llm":
        return Plan(False, "the route rewrites directly")
    if not html_to_text(post.get("text_html") or "").strip():
        return Plan(False, "the post has no text: no model call to batch")
    window = timedelta(seconds=settings.openai_batch_window)
    margin = timedelta(seconds=settings.openai_batch_margin)
    current = now()
    if route.schedule.asap or route.approval:
        if route.rewrite_mode == "auto":
            why = "its route approves posts first" if route.approval else "its route publishes as soon as possible"
            return Plan(False, f"rewrite_mode auto: no slot to wait for ({why})")
        return Plan(True, "rewrite_mode batch (no slot to keep: it goes out once rewritten)")
    slot = prospective_slot()
    if slot is None:
        return Plan(False, "no free slot in the route's schedule")
    away = slot - current
    when = slot.strftime("%Y-%m-%d %H:%M UTC")
    if route.rewrite_mode == "auto" and away <= window:
        return Plan(False, f"rewrite_mode auto: its slot ({when}) is within the batch window ({_hours(window)})")
    if away <= margin:
        return Plan(False, f"its slot ({when}) is nearer than the batch margin ({_hours(margin)})")
    return Plan(True, f"rewrite_mode {route.rewrite_mode}: its slot is {when}", deadline=slot - margin)


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h" if hours >= 1 else f"{delta.total_seconds() / 60:g} min"


def add_to_batch(
    runtime: Runtime,
    post: dict[str, Any],
    route: Route,
    rewriter: LLMRewriter,
    reporter: Reporter,
    chosen: Plan,
    *,
    job_id: str | None,
) -> dict[str, Any] | None:
    """Put the post's request line in the gathering batch (and enqueue the batch's job when the batch is new);
    None when the post is to be rewritten directly: the request does not fit the model's context window (a
    direct call then says so), or it waits in a sent batch whose job is gone (cancelled by the operator)."""
    task = build_task(runtime, post, route, job_id)
    messages = rewriter.messages_for(task, reporter)
    if not rewriter.client.fits(messages)[0]:
        return None
    body = rewriter.client.request_for(messages, json_schema_format(SCHEMA_NAME, OUTPUT_SCHEMA))
    # What the line will cost, counted by budgets until its answer is recorded: the prompt as estimated, an
    # answer as long as the post, at the batch price.
    estimate = (
        model_price(runtime.settings, rewriter.client.model).cost(
            estimate_messages(messages), estimate_tokens(str(post.get("text_html") or "")), 0
        )
        * runtime.settings.openai_batch_price_share
    )
    item, _ = add_item(
        runtime.store,
        post_id=post["id"],
        route=route.name,
        model=rewriter.client.model,
        body=json.dumps(body, ensure_ascii=False),
        source_hash=source_hash(post.get("text_html")),
        deadline=iso(chosen.deadline) if chosen.deadline else None,
        max_lines=runtime.settings.openai_batch_max_lines,
        estimate=estimate,
    )
    batch = get_batch(runtime.store, item["batch_id"])
    job = batch["job_id"]
    alive = job is not None and runtime.store.scalar("SELECT status FROM jobs WHERE id = ?", (job,)) in ACTIVE
    if not alive and batch["status"] != "gathering":
        # Its batch was sent, but its job was cancelled or ended: nothing will bring the answer back.
        set_items(runtime.store, [item["id"]], "direct", error=f"batch {batch['id']} has no running job", only="queued")
        return None
    if not alive:  # a new batch (or one whose job was cancelled, or could not be enqueued): its job submits it
        job = str(enqueue(runtime, KIND, str(batch["id"]), {"batch_id": batch["id"]},
                          delay=_gather_left(runtime, batch))["id"])  # fmt: skip
        set_batch_job(runtime.store, batch["id"], job)
    return {"batch": batch["id"], "batch_job": job, "item": item["id"]}


def _gather_left(runtime: Runtime, batch: dict[str, Any]) -> float:
    """Seconds before the gathering batch is submitted: `openai_batch_gather` after its newest post, at most
    `openai_batch_gather_max` after its first."""
    settings = runtime.settings
    newest = runtime.store.scalar("SELECT MAX(created_at) FROM batch_items WHERE batch_id = ?", (batch["id"],))
    current = now()
    quiet = settings.openai_batch_gather - ((current - parse(newest)).total_seconds() if newest else 0.0)
    cap = settings.openai_batch_gather_max - (current - parse(batch["created_at"])).total_seconds()
    return max(0.0, min(quiet, cap))


# -- the batch's job ------------------------------------------------------------------------------------


@dataclass
class Children:
    """Enqueues a post's child rewrite job (its parent the batch's job)."""

    enqueue: Callable[[int, int], str]


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    lines = [
        json.dumps(
            {"custom_id": i["custom_id"], "method": "POST", "url": ENDPOINT, "body": json.loads(i["body"])},
            ensure_ascii=False,
        )
        for i in items
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def submit(runtime: Runtime, batch_id: int, client: BatchClient, reporter: Reporter) -> BatchView | None:
    """Send a gathering batch once its posts stopped coming (else Reschedule for the rest of the gather);
    a submission cut short (`submitting` without a provider id) is found by its metadata or sent again."""
    store = runtime.store
    batch = get_batch(store, batch_id)
    resumed = batch["status"] == "submitting"
    if batch["status"] == "gathering":
        left = _gather_left(runtime, batch)
        if left > 0.5:
            raise Reschedule(left, f"batch {batch_id} gathers posts ({batch['lines']} so far)")
        if take_for_submit(store, batch_id) is None:
            return None
    elif not resumed or batch["provider_id"]:
        return None
    items = items_of(store, batch_id, "queued")
    meta = {METADATA_KEY: str(batch_id)}
    if not items:
        update_batch(store, batch_id, status="cancelled", error="no post was left to send")
        reporter.log("batch_empty", f"batch {batch_id}: no post left to send")
        return None
    found = client.find(METADATA_KEY, str(batch_id)) if resumed else None
    if found is not None:
        reporter.log("batch_found", f"batch {batch_id} was created before this run stopped: {found.id}")
        update_batch(store, batch_id, provider_id=found.id, status=found.status)
        return found
    payload = _jsonl(items)
    input_file, view = client.submit(payload, metadata=meta)
    update_batch(store, batch_id, provider_id=view.id, input_file_id=input_file, status=view.status, lines=len(items))
    reporter.log(
        "batch_submitted",
        f"batch {batch_id}: {len(items)} posts in one request ({len(payload)} bytes), {view.id} {view.status}",
        provider_id=view.id, input_file_id=input_file, posts=[i["post_id"] for i in items],
    )  # fmt: skip
    return view


def _fall_back(
    runtime: Runtime, items: list[dict[str, Any]], why: str, children: Children, reporter: Reporter
) -> list[int]:
    """Queued items → direct, each post's child job enqueued: a direct call rewrites it."""
    moved = []
    for item in items:
        if set_items(runtime.store, [item["id"]], "direct", error=why, only="queued"):
            children.enqueue(item["post_id"], item["id"])
            moved.append(item["post_id"])
    if moved:
        reporter.log("batch_fallback", f"{len(moved)} posts rewritten by direct calls: {why}", level="warning",
                     posts=moved)  # fmt: skip
    return moved


def follow(
    runtime: Runtime, batch_id: int, client: BatchClient, reporter: Reporter, children: Children
) -> dict[str, Any]:
    """One look at a submitted batch: while it runs, the posts whose deadline came fall back to direct calls
    (all of them: the batch is cancelled) and a Reschedule says when to look again; once it is over, its lines
    are stored and each post gets its child job."""
    store = runtime.store
    batch = get_batch(store, batch_id)
    try:
        view = client.retrieve(batch["provider_id"])
    except BatchUnavailableError as exc:
        raise Reschedule(runtime.settings.openai_batch_poll, f"batch {batch_id}: {exc}") from None
    if view.status != batch["status"]:
        update_batch(store, batch_id, status=view.status, error="; ".join(view.errors)[:500] or None)
        reporter.log("batch_status", f"batch {batch_id} ({view.id}): {view.describe()}")
    queued = items_of(store, batch_id, "queued")
    if not view.ended:
        current = now()
        due = [i for i in queued if i["deadline"] and parse(i["deadline"]) <= current]
        if due:
            _fall_back(runtime, due, f"batch {batch_id} is {view.status} and their slot is near", children, reporter)
            queued = items_of(store, batch_id, "queued")
        if not queued:
            if view.status != "cancelling":
                try:
                    view = client.cancel(view.id)
                except (BatchUnavailableError, BatchRefusedError) as exc:  # it ended meanwhile, or no answer
                    reporter.log("batch_not_cancelled", f"batch {batch_id}: {exc}", level="warning")
                else:
                    update_batch(store, batch_id, status=view.status)
                    reporter.log("batch_cancelled", f"batch {batch_id}: every post went direct; cancelling {view.id}")
            return {"batch_id": batch_id, "status": view.status, "direct": len(due)}
        deadlines = [parse(i["deadline"]) for i in queued if i["deadline"]]
        wait = runtime.settings.openai_batch_poll
        if deadlines:
            wait = min(wait, max(1.0, (min(deadlines) - current).total_seconds()))
        raise Reschedule(wait, f"batch {batch_id} is {view.describe()}")
    return _collect(runtime, batch_id, view, client, reporter, children)


def _line_error(line: dict[str, Any]) -> str | None:
    """None for a line that answered (HTTP 200), else what went wrong."""
    error = line.get("error")
    if isinstance(error, dict):
        return f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip()
    response = line.get("response")
    if not isinstance(response, dict):
        return "the line has neither a response nor an error"
    if response.get("status_code") != 200:
        body = response.get("body")
        detail = body.get("error") if isinstance(body, dict) else None
        detail = detail if isinstance(detail, dict) else {}
        return f"HTTP {response.get('status_code')}: {detail.get('message') or detail.get('code') or 'no message'}"
    if not isinstance(response.get("body"), dict):
        return "the line's response has no body"
    return None


def _collect(
    runtime: Runtime, batch_id: int, view: BatchView, client: BatchClient, reporter: Reporter, children: Children
) -> dict[str, Any]:
    store = runtime.store
    settled: set[str] = set()
    answered = failed = 0
    for file_id in (view.output_file_id, view.error_file_id):
        if not file_id:
            continue
        for raw in client.download(file_id).splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                custom = str(line["custom_id"])
            except (ValueError, KeyError, TypeError):
                reporter.log("batch_bad_line", f"batch {batch_id}: a line of {file_id} is not JSON with a custom_id",
                             level="warning", line=raw[:500])  # fmt: skip
                continue
            error = _line_error(line)
            if error is None:
                answer = json.dumps(line["response"]["body"], ensure_ascii=False)
                if settle_item(store, batch_id, custom, "answered", answer=answer):
                    settled.add(custom)
                    answered += 1
            elif settle_item(store, batch_id, custom, "failed", error=error):
                settled.add(custom)
                failed += 1
    for item in items_of(store, batch_id, "answered", "failed"):
        if item["custom_id"] in settled:
            children.enqueue(item["post_id"], item["id"])
    left = items_of(store, batch_id, "queued")
    why = (
        f"batch {batch_id} {view.status}" + (f": {'; '.join(view.errors)}" if view.errors else "")
        if view.status != "completed"
        else f"batch {batch_id} completed without their lines"
    )
    direct = _fall_back(runtime, left, why, children, reporter)
    reporter.log(
        "batch_done",
        f"batch {batch_id} {view.status}: {answered} answered, {failed} failed lines (retried directly), "
        f"{len(direct)} without an answer (rewritten directly)",
        level="info" if view.status == "completed" else "warning",
    )
    if view.status != "completed":
        runtime.notifier.notify(
            f"batch-{view.status}:{batch_id}",
            f"rewrite batch {batch_id} {view.status}; its {len(direct)} posts without an answer are rewritten by "
            "direct calls",
            level="warning",
        )
    return {"batch_id": batch_id, "status": view.status, "answered": answered, "failed": failed,
            "direct": len(direct)}  # fmt: skip


def fall_back_all(runtime: Runtime, batch_id: int, why: str, children: Children, reporter: Reporter) -> list[int]:
    """Every queued post of the batch to a direct call (the batch's job failed for good); a batch that never
    reached the provider is marked failed."""
    if not get_batch(runtime.store, batch_id)["provider_id"]:
        update_batch(runtime.store, batch_id, status="failed", error=why[:500])
    return _fall_back(runtime, items_of(runtime.store, batch_id, "queued"), why, children, reporter)


# -- the child: a post's answer --------------------------------------------------------------------------


@dataclass
class Answer:
    """What the child rewrite job of a batched post starts from: the line's answer and the messages it answered
    (None: a direct call, for `why`)."""

    completion: Completion | None
    messages: list[dict[str, object]]
    why: str


def answer_of(rewriter: LLMRewriter, item: dict[str, Any], post: dict[str, Any]) -> Answer:
    messages: list[dict[str, object]] = json.loads(item["body"]).get("messages") or []
    if item["source_hash"] != source_hash(post.get("text_html")):
        return Answer(None, [], "the donor edited the post after it went into the batch")
    if item["status"] != "answered":
        return Answer(None, [], item["error"] or f"its batch line is {item['status']}")
    try:
        response = check_completion(ChatCompletion.model_validate(json.loads(item["answer"])))
    except (ValueError, ValidationError, MalformedResponseError) as exc:
        return Answer(None, [], f"the batch line's answer is no chat completion ({exc})")
    return Answer(rewriter.client.completion_of(response, messages), messages, "")
