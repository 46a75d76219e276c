"""The bot's answers to /status, /pending, /failed and /help: short lines that fit a phone screen (no tables),
from the same cores as `contentq queue status`, `posts list` and `jobs list`."""

from __future__ import annotations

from contentq.bot import cards
from contentq.bot.cards import escape
from contentq.bot.signing import Signer
from contentq.integrations.telegram.bot_gateway import Keyboard
from contentq.review import posts
from contentq.runtime import queues
from contentq.runtime.context import Runtime
from contentq.store import bot as records
from contentq.store.jobs import get_job, list_jobs

LIST_MAX = 10
"""Rows an answer lists: more would not fit a phone screen; the answer says how to see the rest."""

HELP = """<b>contentq bot</b>
/status — queues and workers
/pending — posts awaiting approval
/failed — recent failed jobs, with Retry
/pause QUEUE · /resume QUEUE
/post ID — a post (its card if it awaits approval)
/help — this list

<b>Card buttons</b>
✅ Approve — the route's next free slot
🚀 Publish now
🕒 Reschedule — +1 h, tomorrow's first slot, pick a slot
✖️ Reject — asks for a reason
✏️ Edit — your reply replaces the text
🔁 Rewrite again — a new rewrite, then a new card"""


def status(runtime: Runtime) -> str:
    """`queue status` for a phone: per queue its name (⏸ when paused), then its counts on a line of their own."""
    lines = ["<b>Queues</b>"]
    for row in queues.queue_status(runtime):
        workers = f"{row['workers']} worker{'s' if row['workers'] != 1 else ''}"
        lines.append(f"<b>{escape(row['queue'])}</b>{' ⏸ paused' if row['paused'] else ''}")
        lines.append(f"  {row['queued']} queued · {row['in_progress']} running · {row['failed']} failed · {workers}")
    waiting = runtime.store.scalar("SELECT COUNT(*) FROM posts WHERE state = 'awaiting_approval'")
    lines.append(f"awaiting approval: {waiting} (/pending)")
    return "\n".join(lines)


def pending(runtime: Runtime, signer: Signer) -> tuple[str, Keyboard]:
    """Posts awaiting approval, each with a button that shows its card (again)."""
    rows = posts.list_posts(runtime, state="awaiting_approval", limit=LIST_MAX + 1)
    if not rows:
        return "Nothing awaits approval.", []
    lines = [f"<b>Awaiting approval</b> ({len(rows) if len(rows) <= LIST_MAX else f'{LIST_MAX}+'})"]
    buttons: Keyboard = []
    for row in rows[:LIST_MAX]:
        title = escape(str(row.get("title") or "")[:40])
        lines.append(f"{row['id']} · {escape(str(row['route']))}{' · ' + title if title else ''}")
        version = records.post_version(runtime.store, row["id"])
        buttons.append([cards.button(signer, f"📄 Card of post {row['id']}", "sc", row["id"], version)])
    if len(rows) > LIST_MAX:
        lines.append("more: `contentq posts list --state awaiting_approval`")
    return "\n".join(lines), buttons


def failed(runtime: Runtime, signer: Signer) -> tuple[str, Keyboard]:
    """The latest failed jobs, each with Retry and Show error."""
    rows = list_jobs(runtime.store, status="failed", limit=LIST_MAX)
    if not rows:
        return "No failed jobs.", []
    lines = ["<b>Failed jobs</b> (newest first)"]
    buttons: Keyboard = []
    for row in rows:
        error = str(row.get("error") or "").strip().splitlines()
        last = escape(error[-1][:60]) if error else "no error recorded"
        post = f" · post {row['post_id']}" if row.get("post_id") else ""
        lines.append(f"<code>{escape(row['id'])}</code>{post}: {last}")
        generation = int(row["generation"] or 0)
        try:
            buttons.append([cards.button(signer, f"🔁 {row['id']}"[:40], "jr", row["id"], generation),
                            cards.button(signer, "🔎 error", "je", row["id"])])  # fmt: skip
        except ValueError:  # an id too long for Telegram's 64 bytes of callback data: `contentq jobs retry`
            continue
    return "\n".join(lines), buttons


def job_error(runtime: Runtime, job_id: str) -> str:
    """A job's error, its end: what a phone shows of a traceback."""
    job = get_job(runtime.store, job_id)
    error = str(job.get("error") or "no error recorded")
    shown = error if len(error) <= 1500 else "…" + error[-1500:]
    return (
        f"<b>Job {escape(job_id)}</b> · {escape(str(job['status']))} · run {job['generation']}\n"
        f"<pre>{escape(shown)}</pre>"
    )
