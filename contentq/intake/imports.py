"""Importing a Telegram Desktop channel export as posts, through the same dedup and filters as collect.

The export is read and checked whole first (`contentq.integrations.export`), its media files are copied
into the content-addressed media store, then every post is stored in ONE short transaction: the database
gets an import completely or not at all. Accepted posts get their rewrite job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contentq.content.media_types import clean_media_type
from contentq.content.refs import normalize_channel_ref
from contentq.errors import ContentqError
from contentq.flow import pipeline
from contentq.flow.channels import advance, ensure_channel
from contentq.intake.collect import CollectContext
from contentq.intake.ingest import (
    Candidate,
    CandidateMedia,
    Counts,
    Ingestor,
    dedup_index,
    forget_dedup_index,
    paid_reason,
    plural,
)
from contentq.integrations.export import ExportMessage, export_groups, read_export
from contentq.media import store_file
from contentq.routes import Route, load_routes
from contentq.store.footers import refresh_footer

Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    source: str
    route: str
    messages: int
    posts: int
    service_skipped: int
    missing_files: int
    counts: Counts = field(default_factory=Counts)
    skipped: dict[str, int] = field(default_factory=dict)  # messages not imported, by kind: poll, service message …
    footer: list[str] = field(default_factory=list)  # the donor's learned footer/header lines

    def lines(self) -> list[str]:
        """The summary: what was stored, and one line per reason something was not."""
        out = self.counts.lines()
        if self.skipped:
            out.append("skipped " + ", ".join(plural(n, kind) for kind, n in self.skipped.items()))
        if self.missing_files:
            out.append(f"{plural(self.missing_files, 'media file')} missing from the export (stored without the file)")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "route": self.route, "messages": self.messages, "posts": self.posts,
            "service_skipped": self.service_skipped, "missing_files": self.missing_files, **self.counts.as_dict(),
            "skipped": self.skipped, "footer": self.footer, "summary": self.lines(),
        }  # fmt: skip


def _route(ctx: CollectContext, ref: str, route_name: str | None) -> Route:
    routes = load_routes(ctx.runtime.settings.config_path)
    if route_name:
        return routes.get(route_name)
    route = routes.route_for_source(ref)
    if route is None:
        raise ContentqError(
            f"{ref} is not a source of any route in {ctx.runtime.settings.config_path}; "
            "add it to a route's sources or pass --route"
        )
    return route


def _candidate(ref: str, group: list[ExportMessage], media_dir: Path) -> Candidate:
    media = []
    for message in group:
        item = message.media
        if item is None:
            continue
        mime = clean_media_type(item.mime, f"{ref}:{message.id}")
        entry = CandidateMedia(
            item.kind, mime, item.size, item.width, item.height, origin=f"{ref}:{message.id}",
            duration=item.duration, spoiler=item.spoiler, title=item.title, performer=item.performer,
            file_name=item.file_name, emoji=item.emoji,
        )  # fmt: skip
        if item.path is not None:
            stored = store_file(media_dir, item.path, mime=mime)
            entry.sha256, entry.relpath, entry.size = stored.sha256, stored.relpath, stored.size
        media.append(entry)
    return Candidate(
        source=ref,
        msg_ids=[m.id for m in group],
        html=next((m.html for m in group if m.html.strip()), ""),
        posted_at=group[0].date,
        grouped_id=None,
        is_forward=any(m.is_forward for m in group),
        forward_name=next((m.forward_name for m in group if m.forward_name), None),
        media=media,
        skip_reason=next((paid_reason(m.paid_stars) for m in group if m.paid_stars is not None), None),
    )


def import_export(
    ctx: CollectContext, path: Path, source: str, *, route_name: str | None = None, progress: Progress | None = None
) -> ImportReport:
    """Import an export as posts of `source`; all or nothing. Accepted posts get their rewrite job."""
    runtime = ctx.runtime
    ref = normalize_channel_ref(source)
    route = _route(ctx, ref, route_name)
    export = read_export(path)
    kept = [m for m in export.messages if m.html.strip() or m.media is not None or m.paid_stars is not None]
    groups = export_groups(kept)
    report = ImportReport(ref, route.name, len(export.messages), len(groups), export.service_skipped,
                          export.missing_files)  # fmt: skip
    for message in export.messages:
        if not message.html.strip() and message.media is None and message.paid_stars is None:
            kind = message.unsupported or "empty message"
            report.skipped[kind] = report.skipped.get(kind, 0) + 1
    report.skipped.update(export.skipped)  # service messages; "unsupported" ones: media Telegram Desktop did not know
    store = runtime.store
    ingestor = Ingestor(route, dedup_index(runtime))
    ingestor.index.refresh(store.conn)  # the first load is long: do it before taking the write lock
    accepted: list[int] = []
    # Copy the files first, without holding the write lock (collect jobs go on meanwhile): the media store is
    # content-addressed, so files of an import that then fails are harmless and reused by the next try.
    candidates = []
    for done, group in enumerate(groups, start=1):
        candidates.append(_candidate(ref, group, runtime.settings.media_dir))
        if progress is not None:
            progress(done, len(groups))
    try:
        with store.transaction() as conn:  # then every row in one short transaction: all or nothing
            ensure_channel(conn, ref)
            # The footer is learned from the export's own posts (newest first) before any is stored.
            footer = refresh_footer(conn, ref, [m.html for m in reversed(export.messages)])
            ingestor.use_footer(ref, footer)
            report.footer = list(footer.lines) if footer else []
            ingestor.index.refresh(conn)
            for candidate in candidates:
                outcome = ingestor.ingest(conn, candidate)
                report.counts.add(outcome)
                if outcome.state == "collected" and outcome.post_id is not None:
                    accepted.append(outcome.post_id)
            last_id = max((m.id for m in export.messages), default=0)
            advance(conn, ref, last_id, report.counts)
    except BaseException:
        forget_dedup_index(runtime)
        raise
    ctx.log("imported", f"{export.path}: " + "; ".join(report.lines()), **report.as_dict())
    for post_id in accepted:
        pipeline.follow_up(ctx.runtime, post_id, "collected")  # the rewrite job (lifecycle.MOVES)
    return report
