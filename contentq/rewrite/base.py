"""What every rewriter takes and gives back, and the Protocol they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from contentq.routes import Route


class Reporter(Protocol):
    """Where a rewriter reports progress: the job's event log and the admin (a JobContext is one)."""

    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None: ...

    def notify(self, key: str, message: str, level: str = "warning") -> bool: ...


@dataclass
class RewriteTask:
    post_id: int
    route: Route
    donor_html: str
    limit: int
    """Visible length allowed, in UTF-16 units: the text limit, or the caption limit when there is media."""
    has_media: bool = False
    style_examples: list[str] = field(default_factory=list)
    """The target channel's last published posts (Telegram HTML), newest first."""
    donor_recent: list[str] = field(default_factory=list)
    """The same donor's recent other posts (Telegram HTML), for footer detection."""
    job_id: str | None = None
    deadline: float | None = None
    """`time.monotonic()` instant by which model calls must be over (the job's timeout less a margin)."""

    @property
    def cut_limit(self) -> int | None:
        """Where a rewriter cuts the text: `limit` under `long_text = "truncate"`, else nowhere (None): a long
        text is split into several messages at publish time and a long caption goes as its own message."""
        return self.limit if self.route.long_text == "truncate" else None


@dataclass
class RewriteResult:
    rewriter: str
    html: str = ""
    title: str | None = None
    image_prompt: str | None = None
    truncated: bool = False
    skip_reason: str | None = None
    """Set when the post must not be published (the model judged it an ad or off-topic)."""
    notes: list[str] = field(default_factory=list)
    attempts: int = 1
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    cost: float = 0.0
    instead: str | None = None
    """Why another rewriter than the route's wrote it (its budget is spent: the clean rewriter), else None."""

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


class Rewriter(Protocol):
    name: str

    def rewrite(self, task: RewriteTask, reporter: Reporter) -> RewriteResult: ...
