"""A fake X API v2 for one user, over real HTTP, its state in a SQLite file (see tests/fake_http.py).

Implemented as X documents them: OAuth 1.0a user context checked on every request (401 otherwise);
`GET /2/users/me`; `POST /2/media/upload` (multipart, media + media_category); `POST /2/tweets` (text, media
ids ≤ 4, reply), refusing a text over 280 weighted characters (400, its own simple count: URLs 23, CJK 2) and
a text the user already posted (403 with X's duplicate-content body); `GET /2/users/:id/tweets` (start_time,
max_results, newest first; URLs shown as t.co links, as X returns them); `GET /2/tweets?ids=…` (1 to 100 ids,
`tweet.fields=public_metrics`; a deleted tweet is a resource-not-found entry of `errors`, beside `data`).
Faults: a 429 with `x-rate-limit-reset`, hangs before or after a tweet is stored (fake_http.FakePlatform.script).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contentq.integrations.oauth1 import OAuth1Credentials, parse_authorization, signature
from tests.fake_http import FakePlatform, Reply, Request

CREDENTIALS = OAuth1Credentials("ck-main-0001", "cs-main-secret-0001", "at-main-0001", "ats-main-secret-0001")
USER = {"id": "1001", "name": "Main account", "username": "main_acct"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS tweets (
    id INTEGER PRIMARY KEY, author TEXT NOT NULL, text TEXT NOT NULL, sent_text TEXT NOT NULL,
    reply_to TEXT, media TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS media (id INTEGER PRIMARY KEY, size INTEGER, sha256 TEXT, category TEXT, at REAL);
CREATE TABLE IF NOT EXISTS metrics (
    tweet_id INTEGER PRIMARY KEY, impression_count INTEGER NOT NULL DEFAULT 0, retweet_count INTEGER NOT NULL DEFAULT 0,
    quote_count INTEGER NOT NULL DEFAULT 0, reply_count INTEGER NOT NULL DEFAULT 0,
    like_count INTEGER NOT NULL DEFAULT 0, bookmark_count INTEGER NOT NULL DEFAULT 0
);
"""
PUBLIC_METRICS = ("retweet_count", "reply_count", "like_count", "quote_count", "bookmark_count", "impression_count")

DUPLICATE = {
    "detail": "You are not allowed to create a Tweet with duplicate content.",
    "type": "about:blank",
    "title": "Forbidden",
    "status": 403,
}
TOO_MANY = {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}

_URL = re.compile(r"https?://\S+")
_WIDE = re.compile(r"[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]")


def weight(text: str) -> int:
    """The fake's own count, simpler than twitter-text: URLs 23, East Asian wide characters 2, others 1."""
    text = unicodedata.normalize("NFC", text)
    urls = _URL.findall(text)
    rest = _URL.sub("", text)
    return 23 * len(urls) + sum(2 if _WIDE.match(ch) else 1 for ch in rest)


def tco(url: str) -> str:
    return "https://t.co/" + hashlib.sha1(url.encode()).hexdigest()[:10]


class FakeX(FakePlatform):
    SCHEMA = SCHEMA

    def __init__(self, path: Path, credentials: OAuth1Credentials = CREDENTIALS, *, latency: float = 0.0) -> None:
        super().__init__(path, latency=latency)
        self.credentials = credentials

    def endpoint(self, request: Request) -> str:
        if request.path == "/2/tweets" and request.method == "GET":
            return "lookup"
        if request.path.startswith("/2/users/") and request.path.endswith("/tweets"):
            return "user_tweets"
        return {"/2/users/me": "me", "/2/media/upload": "upload", "/2/tweets": "tweets"}.get(request.path, request.path)

    def _check_auth(self, request: Request) -> None:
        oauth = parse_authorization(request.headers.get("Authorization") or "")
        given = oauth.pop("oauth_signature", "")
        creds = self.credentials
        signed = [*oauth.items(), *request.query.items()]
        if request.form and not request.files:
            signed += list(request.form.items())
        expected = signature(request.method, request.url, signed, creds.consumer_secret, creds.token_secret)
        if (
            oauth.get("oauth_consumer_key") != creds.consumer_key
            or oauth.get("oauth_token") != creds.token
            or (given != expected)
        ):
            raise Reply(401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})

    def route(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        self._check_auth(request)
        endpoint = self.endpoint(request)
        if endpoint == "me":
            return 200, {"data": USER}, {}
        if endpoint == "upload" and request.method == "POST":
            return self._upload(request, conn)
        if endpoint == "tweets" and request.method == "POST":
            return self._tweet(request, conn)
        if endpoint == "user_tweets":
            return self._timeline(request, conn)
        if endpoint == "lookup":
            return self._lookup(request, conn)
        raise Reply(404, {"title": "Not Found Error", "status": 404, "detail": f"no route {request.path}"})

    def _upload(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        data = request.files.get("media")
        if not data:
            raise Reply(400, {"errors": [{"message": "media is required"}], "title": "Invalid Request"})
        cursor = conn.execute(
            "INSERT INTO media (size, sha256, category, at) VALUES (?, ?, ?, ?)",
            (len(data), hashlib.sha256(data).hexdigest(), request.form.get("media_category"), time.time()),
        )
        media_id = str(1_900_000_000_000 + int(cursor.lastrowid or 0))
        return 200, {"data": {"id": media_id, "media_key": f"3_{media_id}", "size": len(data),
                              "expires_after_secs": 86400}}, {}  # fmt: skip

    def _tweet(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        body = request.json or {}
        text = str(body.get("text") or "")
        media_ids = [str(m) for m in (body.get("media") or {}).get("media_ids") or []]
        reply_to = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        invalid = {"title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
                   "type": "https://api.twitter.com/2/problems/invalid-request"}  # fmt: skip
        if not text and not media_ids:
            raise Reply(400, {**invalid, "errors": [{"message": "text or media is required"}]})
        if weight(text) > 280:
            raise Reply(400, {**invalid, "errors": [{"message": "Your Tweet text is too long."}]})
        if len(media_ids) > 4:
            raise Reply(400, {**invalid, "errors": [{"message": "Your media IDs are invalid: at most 4"}]})
        for media_id in media_ids:
            if not conn.execute("SELECT 1 FROM media WHERE id = ?", (int(media_id) - 1_900_000_000_000,)).fetchone():
                raise Reply(400, {**invalid, "errors": [{"message": f"Your media IDs are invalid: {media_id}"}]})
        if reply_to and not conn.execute("SELECT 1 FROM tweets WHERE id = ?", (int(reply_to),)).fetchone():
            raise Reply(400, {**invalid, "errors": [{"message": "reply: the tweet does not exist"}]})
        conn.execute("BEGIN IMMEDIATE")
        try:
            if (
                text
                and conn.execute(
                    "SELECT 1 FROM tweets WHERE author = ? AND sent_text = ?", (USER["id"], text)
                ).fetchone()
            ):
                raise Reply(403, DUPLICATE)
            created = max(time.time(), (conn.execute("SELECT MAX(created_at) FROM tweets").fetchone()[0] or 0) + 0.001)
            next_id = (conn.execute("SELECT MAX(id) FROM tweets").fetchone()[0] or 1_790_000_000_000_000_000) + 1
            conn.execute(
                "INSERT INTO tweets (id, author, text, sent_text, reply_to, media, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (next_id, USER["id"], _URL.sub(lambda m: tco(m.group(0)), text), text, reply_to,
                 ",".join(media_ids), created),
            )  # fmt: skip
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return 201, {"data": {"id": str(next_id), "text": text, "edit_history_tweet_ids": [str(next_id)]}}, {}

    def _timeline(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        user = request.path.split("/")[3]
        start = request.query.get("start_time")
        since = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() if start else 0
        limit = int(request.query.get("max_results") or 10)
        if not 5 <= limit <= 100:
            raise Reply(400, {"title": "Invalid Request", "errors": [{"message": "max_results: 5 to 100"}]})
        rows = conn.execute(
            "SELECT * FROM tweets WHERE author = ? AND created_at >= ? ORDER BY id DESC LIMIT ?", (user, since, limit)
        ).fetchall()
        if not rows:
            return 200, {"meta": {"result_count": 0}}, {}
        data = []
        for r in rows:
            item: dict[str, Any] = {
                "id": str(r["id"]), "text": r["text"], "edit_history_tweet_ids": [str(r["id"])],
                "created_at": datetime.fromtimestamp(r["created_at"], UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            }  # fmt: skip
            if r["reply_to"]:
                item["referenced_tweets"] = [{"type": "replied_to", "id": str(r["reply_to"])}]
            if r["media"]:
                item["attachments"] = {"media_keys": [f"3_{m}" for m in r["media"].split(",")]}
            data.append(item)
        meta = {"result_count": len(data), "newest_id": data[0]["id"], "oldest_id": data[-1]["id"]}
        return 200, {"data": data, "meta": meta}, {}

    def _lookup(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        ids = [i for i in (request.query.get("ids") or "").split(",") if i]
        if not 1 <= len(ids) <= 100 or not all(i.isdigit() for i in ids):
            message = "The `ids` query parameter value must be 1 to 100 tweet ids"
            raise Reply(
                400,
                {
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "errors": [{"parameters": {"ids": [",".join(ids)]}, "message": message}],
                },
            )
        fields = set((request.query.get("tweet.fields") or "").split(","))
        data, errors = [], []
        for tweet_id in ids:
            row = conn.execute("SELECT id, text FROM tweets WHERE id = ?", (int(tweet_id),)).fetchone()
            if row is None:
                errors.append({
                    "value": tweet_id, "detail": f"Could not find tweet with ids: [{tweet_id}].",
                    "title": "Not Found Error", "resource_type": "tweet", "parameter": "ids", "resource_id": tweet_id,
                    "type": "https://api.twitter.com/2/problems/resource-not-found",
                })  # fmt: skip
                continue
            item: dict[str, Any] = {
                "id": str(row["id"]),
                "text": row["text"],
                "edit_history_tweet_ids": [str(row["id"])],
            }
            if "public_metrics" in fields:
                metrics = conn.execute("SELECT * FROM metrics WHERE tweet_id = ?", (row["id"],)).fetchone()
                item["public_metrics"] = {k: int(metrics[k]) if metrics else 0 for k in PUBLIC_METRICS}
            data.append(item)
        body: dict[str, Any] = {}
        if data:
            body["data"] = data
        if errors:
            body["errors"] = errors
        return 200, body, {}

    # Reading what X saw (tests, the chaos bench) ------------------------------------------------------------

    def tweets(self) -> list[dict[str, Any]]:
        conn = self.connect()
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM tweets ORDER BY id").fetchall()]
        finally:
            conn.close()

    def add_tweet(self, text: str) -> str:
        """A tweet of the account, stored as if posted (insights tests); its id."""
        conn = self.connect()
        try:
            next_id = (conn.execute("SELECT MAX(id) FROM tweets").fetchone()[0] or 1_790_000_000_000_000_000) + 1
            conn.execute(
                "INSERT INTO tweets (id, author, text, sent_text, created_at) VALUES (?, ?, ?, ?, ?)",
                (next_id, USER["id"], text, text, time.time()),
            )
            conn.commit()
            return str(next_id)
        finally:
            conn.close()

    def set_metrics(self, tweet_id: str, **counts: int) -> None:
        """A tweet's public metrics as X will report them (impression_count, like_count …; the others 0)."""
        unknown = set(counts) - set(PUBLIC_METRICS)
        if unknown:
            raise ValueError(f"not public metrics: {sorted(unknown)}")
        conn = self.connect()
        try:
            conn.execute("INSERT OR REPLACE INTO metrics (tweet_id, " + ", ".join(PUBLIC_METRICS) + ") VALUES (?"
                         + ", ?" * len(PUBLIC_METRICS) + ")",
                         (int(tweet_id), *(counts.get(k, 0) for k in PUBLIC_METRICS)))  # fmt: skip
            conn.commit()
        finally:
            conn.close()

    def delete_tweet(self, tweet_id: str) -> None:
        conn = self.connect()
        try:
            conn.execute("DELETE FROM tweets WHERE id = ?", (int(tweet_id),))
            conn.commit()
        finally:
            conn.close()

    def rate_limit(self, *, reset_in: float, times: int = 1) -> None:
        """The next `times` POST /2/tweets answer 429 with x-rate-limit-reset `reset_in` seconds ahead."""
        self.script("tweets", "status", times=times, status=429, body=TOO_MANY, seconds=reset_in,
                    headers={"x-rate-limit-limit": "200", "x-rate-limit-remaining": "0"})  # fmt: skip
