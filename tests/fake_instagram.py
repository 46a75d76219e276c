"""A fake Instagram Graph API (content publishing) for one professional account, over real HTTP, its state in a
SQLite file (see tests/fake_http.py).

As Meta documents it: a bearer access token on every request (code 190 otherwise); `POST /{ig-user-id}/media`
makes a container from an `image_url` it really downloads (JPEG only, like the API; an unreachable URL is
refused with code 9004 / subcode 2207052), a carousel item (`is_carousel_item=true`) or a carousel
(`media_type=CAROUSEL`, 2 to 10 `children`); the caption at most 2,200 characters and 30 hashtags;
`GET /{container-id}?fields=status_code` (IN_PROGRESS for the first look, then FINISHED, PUBLISHED once
published); `POST /{ig-user-id}/media_publish` (a container not FINISHED: code 9007 / 2207027; the rolling
24 h limit: code 9 / 2207042); `GET /{ig-user-id}/content_publishing_limit`; `GET /{ig-user-id}?fields=username`;
`GET /{ig-user-id}/media` (newest first); `GET /{media-id}?fields=permalink`; the multiple-ID read
`GET /?ids=…&fields=like_count,comments_count,insights.metric(views,shares)` (at most 50 ids, code 100 above;
an id that does not exist fails the whole request with code 803, naming it; insights not available yet are
left out). Hangs and scripted errors as in fake_http.
"""

from __future__ import annotations

import io
import re
import sqlite3
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from tests.destination_helpers import IG_TOKEN, IG_USER
from tests.fake_http import FakePlatform, Reply, Request

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, image_url TEXT, caption TEXT, children TEXT,
    carousel_item INTEGER NOT NULL DEFAULT 0, looks INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL,
    media_id TEXT, image_sha TEXT, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS media (
    id INTEGER PRIMARY KEY, caption TEXT, media_type TEXT, children INTEGER, container INTEGER, timestamp REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS media_metrics (
    media_id INTEGER PRIMARY KEY, like_count INTEGER NOT NULL DEFAULT 0, comments_count INTEGER NOT NULL DEFAULT 0,
    views INTEGER, shares INTEGER
);
"""

MULTI_ID_MAX = 50

_HASHTAG = re.compile(r"(?<![\w&/])#\w+")


def error(message: str, code: int, subcode: int | None = None, *, status: int = 400, **extra: Any) -> Reply:
    body: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123"}
    if subcode is not None:
        body["error_subcode"] = subcode
    body.update(extra)
    return Reply(status, {"error": body})


def ts(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class FakeInstagram(FakePlatform):
    SCHEMA = SCHEMA

    def __init__(self, path: Path, *, quota_total: int = 100, latency: float = 0.0) -> None:
        super().__init__(path, latency=latency)
        conn = self.connect()
        conn.execute("INSERT OR IGNORE INTO config (key, value) VALUES ('quota_total', ?)", (str(quota_total),))
        conn.close()

    def endpoint(self, request: Request) -> str:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return "ids"
        if len(parts) == 2 and parts[0] == IG_USER:
            return parts[1]  # media, media_publish, content_publishing_limit
        if len(parts) == 1 and parts[0] == IG_USER:
            return "user"
        return "node"

    def route(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        if request.headers.get("Authorization") != f"Bearer {IG_TOKEN}":
            raise error("Invalid OAuth access token - Cannot parse access token", 190)
        endpoint = self.endpoint(request)
        if endpoint == "user":
            return 200, {"username": "brand_account", "id": IG_USER}, {}
        if endpoint == "media" and request.method == "POST":
            return self._create(request, conn)
        if endpoint == "media":
            return self._list(request, conn)
        if endpoint == "media_publish":
            return self._publish(request, conn)
        if endpoint == "ids":
            return self._multi_read(request, conn)
        if endpoint == "content_publishing_limit":
            used, total = self._usage(conn), self._quota_total(conn)
            return 200, {"data": [{"quota_usage": used, "config": {"quota_total": total, "quota_duration": 86400}}]}, {}
        return self._node(request, conn)

    # Containers -----------------------------------------------------------------------------------------

    def _fetch_jpeg(self, url: str) -> str:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the test's own server
                data = response.read()
        except OSError:
            message = "Media download has failed. The media URI doesn't meet our requirements."
            raise error(message, 9004, 2207052) from None
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format != "JPEG":
                    raise error("Only photo or video can be accepted as media type.", 9004, 2207026)
        except OSError:
            raise error("Only photo or video can be accepted as media type.", 9004, 2207026) from None
        import hashlib

        return hashlib.sha256(data).hexdigest()

    def _create(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        caption = request.param("caption")
        if caption is not None and len(caption) > 2200:
            raise error("The caption is too long: at most 2200 characters.", 100, 2207008)
        if caption is not None and len(_HASHTAG.findall(caption)) > 30:
            raise error("The caption has more than 30 hashtags.", 100, 2207008)
        now = time.time()
        if request.param("media_type") == "CAROUSEL":
            children = [c for c in (request.param("children") or "").split(",") if c]
            if not 2 <= len(children) <= 10:
                raise error("A carousel needs 2 to 10 children.", 100, 2207008)
            for child in children:
                row = self._container(conn, child)
                if row is None or not row["carousel_item"]:
                    raise error(f"Child {child} is not a carousel item container.", 100, 2207008)
            cursor = conn.execute(
                "INSERT INTO containers (kind, caption, children, status, created_at)"
                " VALUES ('CAROUSEL', ?, ?, 'IN_PROGRESS', ?)",
                (caption or "", ",".join(children), now),
            )
        else:
            url = request.param("image_url")
            if not url:
                raise error("The parameter image_url is required.", 100)
            sha = self._fetch_jpeg(url)
            cursor = conn.execute(
                "INSERT INTO containers (kind, image_url, caption, carousel_item, status, image_sha, created_at)"
                " VALUES ('IMAGE', ?, ?, ?, 'IN_PROGRESS', ?, ?)",
                (url, caption or "", int(request.param("is_carousel_item") == "true"), sha, now),
            )
        return 200, {"id": str(17_900_000_000_000_000 + int(cursor.lastrowid or 0))}, {}

    def _container(self, conn: sqlite3.Connection, container_id: str) -> sqlite3.Row | None:
        try:
            key = int(container_id) - 17_900_000_000_000_000
        except ValueError:
            return None
        return conn.execute("SELECT * FROM containers WHERE id = ?", (key,)).fetchone()

    def _node(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        node = request.path.strip("/")
        container = self._container(conn, node)
        if container is not None:
            status = container["status"]
            if status == "IN_PROGRESS":
                conn.execute("UPDATE containers SET looks = looks + 1 WHERE id = ?", (container["id"],))
                if container["looks"] >= 1:  # ready on the second look
                    conn.execute("UPDATE containers SET status = 'FINISHED' WHERE id = ?", (container["id"],))
            return 200, {"status_code": status, "id": node}, {}
        media = conn.execute("SELECT * FROM media WHERE id = ?", (int(node) if node.isdigit() else -1,)).fetchone()
        if media is not None:
            return 200, {"permalink": f"https://www.instagram.com/p/FAKE{media['id']}/", "id": node}, {}
        raise error(f"Unsupported get request. Object with ID '{node}' does not exist.", 100, 33)

    def _multi_read(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        ids = [i for i in (request.param("ids") or "").split(",") if i]
        if not ids:
            raise error("(#100) The parameter ids is required", 100)
        if len(ids) > MULTI_ID_MAX:
            raise error(f"(#100) Too many IDs. Maximum: {MULTI_ID_MAX}", 100)
        missing = [i for i in ids if not i.isdigit()
                   or not conn.execute("SELECT 1 FROM media WHERE id = ?", (int(i),)).fetchone()]  # fmt: skip
        if missing:
            raise error(f"(#803) Some of the aliases you requested do not exist: {','.join(missing)}", 803)
        fields = request.param("fields") or "id"
        out: dict[str, Any] = {}
        for media_id in ids:
            row = conn.execute("SELECT * FROM media_metrics WHERE media_id = ?", (int(media_id),)).fetchone()
            item: dict[str, Any] = {"id": media_id}
            for name in ("like_count", "comments_count"):
                if name in fields:
                    item[name] = int(row[name]) if row else 0
            wanted = re.search(r"insights\.metric\(([^)]*)\)", fields)
            if wanted:
                data = [
                    {"name": m, "period": "lifetime", "values": [{"value": int(row[m])}],
                     "title": m.title(), "id": f"{media_id}/insights/{m}/lifetime"}
                    for m in wanted.group(1).split(",") if row is not None and m in ("views", "shares")
                    and row[m] is not None
                ]  # fmt: skip
                item["insights"] = {"data": data}
            out[media_id] = item
        return 200, out, {}

    def set_metrics(self, media_id: str, *, likes: int = 0, comments: int = 0, views: int | None = None,
                    shares: int | None = None) -> None:  # fmt: skip
        """A medium's counters as Meta will report them (views, shares: None until insights are available)."""
        conn = self.connect()
        try:
            conn.execute(
                "INSERT OR REPLACE INTO media_metrics (media_id, like_count, comments_count, views, shares)"
                " VALUES (?, ?, ?, ?, ?)",
                (int(media_id), likes, comments, views, shares),
            )
        finally:
            conn.close()

    def add_media(self, caption: str = "a post") -> str:
        """A published medium of the account (insights tests); its id."""
        conn = self.connect()
        try:
            cursor = conn.execute(
                "INSERT INTO media (caption, media_type, timestamp) VALUES (?, 'IMAGE', ?)", (caption, time.time())
            )
            return str(cursor.lastrowid)
        finally:
            conn.close()

    def delete_media(self, media_id: str) -> None:
        conn = self.connect()
        try:
            conn.execute("DELETE FROM media WHERE id = ?", (int(media_id),))
        finally:
            conn.close()

    # Publishing -----------------------------------------------------------------------------------------

    def _usage(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM media WHERE timestamp > ?", (time.time() - 86400,)).fetchone()[0])

    def _quota_total(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM config WHERE key = 'quota_total'").fetchone()[0])

    def _publish(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        container = self._container(conn, request.param("creation_id") or "")
        if container is None:
            raise error("The media container does not exist.", 100, 33)
        conn.execute("BEGIN IMMEDIATE")
        try:
            container = self._container(conn, request.param("creation_id") or "")
            assert container is not None
            if container["status"] == "PUBLISHED":
                raise error("This media has already been published.", 9007, 2207027)
            if container["status"] != "FINISHED":
                raise error("Media ID is not available", 9007, 2207027, is_transient=False)
            if self._usage(conn) >= self._quota_total(conn):
                raise error("Application request limit reached", 9, 2207042,
                            error_user_msg="You reached maximum number of posts that is allowed to be published by "
                            "Content Publishing API.")  # fmt: skip
            kind = "CAROUSEL_ALBUM" if container["kind"] == "CAROUSEL" else "IMAGE"
            children = len((container["children"] or "").split(",")) if container["children"] else 0
            stamp = max(time.time(), (conn.execute("SELECT MAX(timestamp) FROM media").fetchone()[0] or 0) + 0.001)
            cursor = conn.execute(
                "INSERT INTO media (caption, media_type, children, container, timestamp) VALUES (?, ?, ?, ?, ?)",
                (container["caption"], kind, children, container["id"], stamp),
            )
            media_id = str(cursor.lastrowid)
            conn.execute("UPDATE containers SET status = 'PUBLISHED', media_id = ? WHERE id = ?",
                         (media_id, container["id"]))  # fmt: skip
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return 200, {"id": media_id}, {}

    def _list(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        limit = int(request.query.get("limit") or 25)
        rows = conn.execute("SELECT * FROM media ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        data = [
            {
                "id": str(r["id"]), "caption": r["caption"], "media_type": r["media_type"],
                "timestamp": ts(r["timestamp"]), "permalink": f"https://www.instagram.com/p/FAKE{r['id']}/",
            }
            for r in rows
        ]  # fmt: skip
        return 200, {"data": data, "paging": {"cursors": {"before": "b", "after": "a"}}}, {}

    # Reading and scripting (tests, the chaos bench) -------------------------------------------------------

    def media(self) -> list[dict[str, Any]]:
        conn = self.connect()
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM media ORDER BY id").fetchall()]
        finally:
            conn.close()

    def containers(self) -> list[dict[str, Any]]:
        conn = self.connect()
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM containers ORDER BY id").fetchall()]
        finally:
            conn.close()

    def published_before(self, *ages_seconds: float, caption: str = "earlier post") -> None:
        """Media published this many seconds ago (by the operator's phone, another tool): they count in the quota."""
        conn = self.connect()
        try:
            for age in ages_seconds:
                conn.execute(
                    "INSERT INTO media (caption, media_type, children, container, timestamp) VALUES (?, 'IMAGE', 0,"
                    " NULL, ?)",
                    (caption, time.time() - age),
                )
        finally:
            conn.close()

    def set_quota(self, total: int) -> None:
        conn = self.connect()
        try:
            conn.execute("UPDATE config SET value = ? WHERE key = 'quota_total'", (str(total),))
        finally:
            conn.close()
