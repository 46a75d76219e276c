"""Publishing one post: render it into parts, send each part exactly once, record what Telegram returned.

Rendering: a text post is one message; media go as one media message or one album (2–10 items, a single
send); a caption longer than the limit (CONTENTQ_CAPTION_LIMIT, 2048 for a Premium account) makes the
media go first without caption and the text follow as its own message — one batch.

Exactly once: each part is recorded in `sends` (status `attempting`, with its random ids) before it is
sent. The random ids are derived from (post, target, round, part, item), so sending a part again after
a crash repeats the same ids and Telegram refuses it (RandomIdDuplicateError) instead of posting twice.
An `attempting` row found by a later run, or that refusal, is an uncertain outcome: it is settled by
looking at the target's recent messages, never by a blind resend. A part failing critically cancels
the batch (the parts already sent are deleted; the next round uses fresh random ids), the post fails
with the reason and the admin is told.

Waits never block the worker: the per-target interval and the account budget, FLOOD_WAIT and an
unreachable Telegram all raise `Reschedule`.

The package, one module per concern:

- `render`: the parts a post is sent as (caption, album, split or cut text).
- `ledger`: the `sends` table, each part recorded before it is sent, and the random ids it goes with.
- `settle`: telling an uncertain send apart among the target's recent messages.
- `ratelimit`: the per-target interval and the account budget (a Lua script in Redis).
- `publication`: one run of publishing a post: the state machine and its outcomes (fail, cancel, waits).
- `drivers`: the two publishers, Telegram and the outbox folder (`outbox` writes the folder).
- `core`: what the CLI, the jobs and the web call: publish a post, publish it now, a dry run.
- `settle_failed`: settling a post whose publish job ended failed.
"""

from __future__ import annotations

from contentq.errors import FatalJobError


class PublishError(FatalJobError):
    """The post cannot be published as it is (retrying does not help)."""
