"""Storing what was collected or imported: exact dedup, content and near dedup, route filters, one post each.

Collect (one transaction per post, the cursor moving with it) and export import (one transaction for the
whole file) both go through `Ingestor.ingest`, inside a transaction the caller holds.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from contentq import lifecycle
from contentq.clock import iso
from contentq.content.ads import link_places
from contentq.content.filters import PostFacts, RouteFilter, timeout_warning
from contentq.content.footer import Footer, Patterns, strip
from contentq.content.html import find_urls, parse_html
from contentq.routes import Route
from contentq.runtime.context import Runtime

if TYPE_CHECKING:  # dedup imports numpy: loaded when posts are ingested, not on import
    from contentq.content.dedup import DedupIndex, Match

_DOT_LETTER = re.compile(r"\.[^\W\d_]")


def _may_link(text: str) -> bool:
    """Whether a text can hold a link at all (find_urls needs '://' or a dot before a letter): a cheap test
    first, since most posts have none."""
    return "://" in text or _DOT_LETTER.search(text) is not None


FOOTER_ONLY = "empty after cleaning: the post is nothing but the donor's footer"
"""The reason of a text post whose footer is all there is: nothing to publish."""


def text_and_links(html: str) -> tuple[str, list[str]]:
    """A post's visible text and its links (<a> targets and bare URLs outside code), parsed once."""
    if "<" not in html and "&" not in html:
        return html, [url for _, _, url in find_urls(html)] if _may_link(html) else []
    parsed = parse_html(html)
    links: list[str] = []
    for run in parsed.runs:
        links += [tag.attr("href") or "" for tag in run.tags if tag.name == "a"]
        if not run.has("code", "pre", "a") and _may_link(run.text):
            links += [url for _, _, url in find_urls(run.text)]
    return parsed.text, links


OutcomeState = Literal["collected", "duplicate", "filtered", "exact", "attached"]

ATTACHABLE_STATES = ("collected", "duplicate", "filtered")
"""A late album item joins its stored post in these states; once a rewrite started it is stored as a duplicate."""


@dataclass
class CandidateMedia:
    kind: str  # photo | video | video_note | animation | document | audio | voice | sticker
    mime: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    relpath: str | None = None  # relative to the media dir; None when the file is not available
    origin: str | None = None  # '<source>:<message id>' it came from
    duration: float | None = None  # seconds
    spoiler: bool = False
    title: str | None = None  # an audio file's title and performer
    performer: str | None = None
    file_name: str | None = None
    emoji: str | None = None  # a sticker's emoji

    def dedup_key(self) -> str:
        """The media's part of the content hash: its bytes' hash, or, for a missing file, where it came from.

        Never kind/size/dimensions alone: same-size photos without their files (an export's "File not
        included") would all hash alike and text-less ones become false duplicates of each other."""
        if self.sha256:
            return self.sha256
        if self.origin:
            return f"missing:{self.origin}"
        return f"missing:{self.kind}:{self.size or ''}:{self.width or ''}x{self.height or ''}"


@dataclass
class Candidate:
    """One post to be: a message, or every message of an album."""

    source: str
    msg_ids: list[int]
    html: str = ""
    posted_at: datetime | None = None
    grouped_id: int | None = None
    is_forward: bool = False
    forward_name: str | None = None  # the origin of a forward, for a route's forward_credit
    forward_link: str | None = None
    media: list[CandidateMedia] = field(default_factory=list)
    skip_reason: str | None = None  # content that cannot be reposted (paid media): stored as filtered with this

    @property
    def kind(self) -> str:
        if not self.media:
            return "text"
        return "album" if len(self.media) > 1 else self.media[0].kind

    @property
    def empty(self) -> bool:
        return not self.html.strip() and not self.media


@dataclass(frozen=True)
class Outcome:
    state: OutcomeState  # 'exact': this message was stored before, nothing written; 'attached': added to
    # the stored post of its album (post_id)
    post_id: int | None
    reason: str | None = None
    footer_stripped: bool = False
    duplicate_of: int | None = None
    similarity: float | None = None  # of a near duplicate to `duplicate_of`


@dataclass
class Counts:
    """What one collect or import did; logged with the job and added to the channel's counters."""

    collected: int = 0
    duplicate: int = 0  # of them already_stored: the very message was stored before
    filtered: int = 0
    reconnects: int = 0
    flood_waits: int = 0
    already_stored: int = 0
    footer_stripped: int = 0
    filtered_reasons: dict[str, int] = field(default_factory=dict)  # reason → posts
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)  # {post_id, duplicate_of, similarity}

    def add(self, outcome: Outcome) -> None:
        if outcome.state == "attached":
            return  # more media of a post already counted
        self.footer_stripped += outcome.footer_stripped
        if outcome.state == "collected":
            self.collected += 1
        elif outcome.state in ("duplicate", "exact"):
            self.duplicate += 1
            self.already_stored += outcome.state == "exact"
            if outcome.similarity is not None and outcome.similarity < 1.0:
                self.near_duplicates.append(
                    {"post_id": outcome.post_id, "duplicate_of": outcome.duplicate_of,
                     "similarity": round(outcome.similarity, 2)}
                )  # fmt: skip
        else:
            self.filtered += 1
            reason = outcome.reason or "?"
            self.filtered_reasons[reason] = self.filtered_reasons.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """One line per outcome and per reason a post was not taken, for people."""
        out = [f"collected {self.collected}"]
        if self.duplicate:
            copies = self.duplicate - self.already_stored
            parts = [f"{copies} of other posts"] if copies else []
            parts += [f"{self.already_stored} already stored"] if self.already_stored else []
            out.append(f"duplicate {self.duplicate}: {', '.join(parts)}")
        out += [
            f"near duplicate: post {d['post_id']} of post {d['duplicate_of']} (similarity {d['similarity']:.2f})"
            for d in self.near_duplicates
        ]
        out += [f"filtered {n}: {reason}" for reason, n in sorted(self.filtered_reasons.items(), key=_by_count)]
        if self.footer_stripped:
            out.append(f"footer stripped from {self.footer_stripped}")
        return out

    def summary(self) -> str:
        return (
            f"{self.collected} collected, {self.duplicate} duplicate, {self.filtered} filtered, "
            f"{self.reconnects} reconnects, {self.flood_waits} flood waits"
        )


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def paid_reason(stars: int | None) -> str:
    """The reason a paid-media post is stored as filtered (collect and import)."""
    price = f" ({stars} stars)" if stars else ""
    return f"paid media{price}: its content is sold by the donor and cannot be reposted"


def plural(count: int, noun: str) -> str:
    """'1 poll', '2 service messages'."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun[:-1] + 'ies' if noun.endswith('y') else noun + ('es' if noun.endswith('s') else 's')}"


def dedup_index(runtime: Runtime) -> DedupIndex:
    """The process's dedup index: settings only, its data is in SQLite (content/dedup.py)."""

    def build(rt: Runtime) -> DedupIndex:
        from contentq.content.dedup import DedupIndex

        return DedupIndex(rt.settings.near_duplicate_threshold, rt.settings.dedup_window_days)

    index: DedupIndex = runtime.service("dedup", build)
    return index


def forget_dedup_index(runtime: Runtime) -> None:
    """After a rolled-back transaction a band rebuild done in it is gone too: check the layout again next time."""
    runtime.services.pop("dedup", None)


class Ingestor:
    def __init__(self, route: Route, index: DedupIndex) -> None:
        self.route = route
        self.index = index
        self.filter = RouteFilter.for_route(route.filters, own=[route.target])
        self.footers: dict[str, Footer] = {}  # source → its learned footer (store/footers.py)
        self.patterns = Patterns.parse(route.footer_patterns)

    def use_footer(self, source: str, footer: Footer | None) -> None:
        if footer is not None:
            self.footers[source] = footer

    def body(self, candidate: Candidate) -> tuple[str, list[str]]:
        """The post without the donor's footer (what filters, dedup and the rewriter see), and the lines
        removed. A text post that is nothing but its footer has an empty body (it is filtered: FOOTER_ONLY)."""
        footer = self.footers.get(candidate.source) if self.route.strip_footer else None
        stripped = strip(candidate.html, footer, self.patterns)
        if stripped.removed:
            return stripped.html, stripped.removed
        return candidate.html, []

    def stored_as(self, conn: sqlite3.Connection, source: str, msg_ids: list[int]) -> int | None:
        """The post already holding one of these messages of `source` (exact duplicate), if any."""
        marks = ",".join("?" for _ in msg_ids)
        row = conn.execute(
            f"SELECT id FROM posts WHERE source = ? AND source_msg_id IN ({marks}) LIMIT 1", [source, *msg_ids]
        ).fetchone()
        return row[0] if row else None

    def ingest(self, conn: sqlite3.Connection, candidate: Candidate) -> Outcome:
        """Store one candidate as collected, duplicate or filtered (inside the caller's transaction)."""
        existing = self.stored_as(conn, candidate.source, candidate.msg_ids)
        if existing is not None:
            return Outcome("exact", existing, "already stored")
        album = self._album_post(conn, candidate)
        if album is not None:
            late = self._late_album_items(conn, candidate, album)
            if late is not None:
                return late
        from contentq.content.dedup import content_links, normalize_text

        html, removed = self.body(candidate)
        original = candidate.html if removed else None
        text, links = text_and_links(html)
        fp = self.index.fingerprint(normalize_text(text), [m.dedup_key() for m in candidate.media], text=text,
                                    links=content_links(links))  # fmt: skip
        match: Match | None = self.index.match(conn, fp, candidate.source)
        reason: str | None
        state: OutcomeState
        if match is not None:
            state, reason = "duplicate", match.reason()
        elif removed and not html.strip() and not candidate.media:
            state, reason = "filtered", FOOTER_ONLY
        else:
            reason = candidate.skip_reason or self.filter.check(self._facts(candidate, html, text))
            state = "filtered" if reason else "collected"
            if reason is None and self.filter.timed_out:  # kept, with the warning on the post
                reason = timeout_warning(self.filter.timed_out)
        post_id = _insert_post(conn, self.route.name, candidate, state, reason, match, fp.content_hash,
                               fp.minhash_blob(), html=html, original_html=original,
                               numbers=" ".join(fp.numbers) or None)  # fmt: skip
        self.index.add(conn, post_id, fp, original=match.post_id if match else None)
        return Outcome(state, post_id, reason, bool(removed), match.post_id if match else None,
                       match.similarity if match else None)  # fmt: skip

    def _facts(self, candidate: Candidate, html: str, text: str) -> PostFacts:
        # Only Telegram links and erid in an address matter to the ad check; most posts have neither.
        wants_links = self.filter.filters.skip_ads and (".me/" in html or "erid" in html.lower())
        placed = tuple(link_places(html)) if wants_links else ()
        footer = self.footers.get(candidate.source)
        return PostFacts(text, candidate.kind, candidate.is_forward, tuple(dict.fromkeys(u for u, _ in placed)),
                         candidate.source, footer.refs if footer else frozenset(), placed)  # fmt: skip

    def _album_post(self, conn: sqlite3.Connection, candidate: Candidate) -> sqlite3.Row | None:
        """The stored post of the candidate's album (same source and grouped_id), the first if several."""
        if candidate.grouped_id is None:
            return None
        row: sqlite3.Row | None = conn.execute(
            "SELECT id, state, kind, text_html, source_msg_ids FROM posts WHERE source = ? AND grouped_id = ?"
            " ORDER BY id LIMIT 1",
            (candidate.source, candidate.grouped_id),
        ).fetchone()
        return row

    def _late_album_items(self, conn: sqlite3.Connection, candidate: Candidate, album: Any) -> Outcome | None:
        """Items of an album whose post is already stored (cut by a page edge, or uploaded late).

        While the post waits for its rewrite they join it as more media (and give it its caption if it had
        none); once the rewrite started they are stored as a duplicate of it with the reason, never lost.
        Returns None when they cannot be attached and are to be ingested like any post."""
        post_id, state = int(album[0]), str(album[1])
        known = set(json.loads(album[4] or "[]"))
        if known.issuperset(candidate.msg_ids):
            return Outcome("exact", post_id, "already stored")
        if state not in ATTACHABLE_STATES:
            reason = f"late items of the album of post {post_id}, which was already {state}"
            new_id = _insert_post(conn, self.route.name, candidate, "duplicate", reason, None, None, None,
                                  duplicate_of=post_id)  # fmt: skip
            return Outcome("duplicate", new_id, reason)
        ids = sorted(known | set(candidate.msg_ids))
        start = conn.execute(
            "SELECT COALESCE(MAX(position) + 1, 0), COUNT(*) FROM media WHERE post_id = ?", (post_id,)
        ).fetchone()
        _insert_media(conn, post_id, candidate.media, int(start[0]), iso())
        total = int(start[1]) + len(candidate.media)
        kind = "album" if total > 1 else (str(album[2]) if start[1] else candidate.kind)
        html = str(album[3] or "") or self.body(candidate)[0]
        conn.execute(
            "UPDATE posts SET source_msg_ids = ?, source_msg_id = ?, kind = ?, text_html = ?, updated_at = ?"
            " WHERE id = ?",
            (json.dumps(ids), ids[0], kind, html, iso(), post_id),
        )
        return Outcome("attached", post_id, f"{len(candidate.msg_ids)} late album item(s)")


def _insert_media(
    conn: sqlite3.Connection, post_id: int, media_list: list[CandidateMedia], start: int, stamp: str
) -> None:
    for position, media in enumerate(media_list, start=start):
        conn.execute(
            "INSERT INTO media (post_id, position, origin, kind, sha256, path, mime, size, width, height, duration,"
            " spoiler, title, performer, file_name, emoji, created_at)"
            " VALUES (?, ?, 'donor', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (post_id, position, media.kind, media.sha256, media.relpath, media.mime, media.size, media.width,
             media.height, media.duration, int(media.spoiler), media.title, media.performer, media.file_name,
             media.emoji, stamp),
        )  # fmt: skip


def _insert_post(
    conn: sqlite3.Connection,
    route: str,
    candidate: Candidate,
    state: str,
    reason: str | None,
    match: Match | None,
    chash: str | None,
    minhash: bytes | None,
    *,
    duplicate_of: int | None = None,
    html: str | None = None,
    original_html: str | None = None,
    numbers: str | None = None,
) -> int:
    stamp = iso()
    row: dict[str, Any] = {
        "route": route,
        "source": candidate.source,
        "source_msg_id": candidate.msg_ids[0],
        "source_msg_ids": json.dumps(candidate.msg_ids),
        "grouped_id": candidate.grouped_id,
        "kind": candidate.kind,
        "text_html": candidate.html if html is None else html,
        "original_html": original_html,
        "is_forward": int(candidate.is_forward),
        "forward_name": candidate.forward_name,
        "forward_link": candidate.forward_link,
        "posted_at": iso(candidate.posted_at) if candidate.posted_at else None,
        "collected_at": stamp,
        "state": state,
        "state_reason": reason,
        "duplicate_of": match.post_id if match else duplicate_of,
        "similarity": round(match.similarity, 4) if match else None,
        "content_hash": chash,
        "minhash": minhash,
        "numbers": numbers,
        "updated_at": stamp,
    }
    cursor = conn.execute(
        f"INSERT INTO posts ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values())
    )
    post_id = int(cursor.lastrowid or 0)
    # Its event is named after the state it enters; collect and import run the follow-ups of `collected` (its
    # rewrite job) once their transaction is committed.
    lifecycle.enter_in(conn, post_id, state, reason, then=True)
    _insert_media(conn, post_id, candidate.media, 0, stamp)
    return post_id
