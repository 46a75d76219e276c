"""The audit trail as `contentq audit` and the panel's Audit page show it (contentq/store/audit.py reads it)."""

from __future__ import annotations

from typing import Any

from contentq.clock import iso, now, parse_duration
from contentq.errors import ContentqError
from contentq.runtime.context import Runtime
from contentq.store.audit import KINDS, list_audit

LIMIT_MAX = 10_000


def audit_trail(
    runtime: Runtime, *, actor: str | None = None, since: str | None = None, kind: str | None = None,
    limit: int = 100, before: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """What people did, newest first. `since` is a window (90s, 15m, 24h, 7d, 2w); `kind` one of KINDS;
    `actor` an actor (`web:alice`, `cli:root`) or a kind of actor (`web`, `cli`, `bot`)."""
    if kind and kind not in KINDS:
        raise ContentqError(f"no audit kind {kind!r}: {', '.join(KINDS)}")
    if not 1 <= limit <= LIMIT_MAX:
        raise ContentqError(f"--limit must be 1 to {LIMIT_MAX}")
    start = None
    if since:
        try:
            start = iso(now() - parse_duration(since))
        except (ValueError, ContentqError):
            raise ContentqError(f"--since {since!r} is not a window: 90s, 15m, 24h, 7d, 2w") from None
    return list_audit(
        runtime.store, actor=(actor or "").strip() or None, since=start, kind=kind or None, limit=limit, before=before
    )
