"""X (Twitter) API v2 for one account: post a tweet (a reply, with images), upload an image, read the account.

httpx + tenacity rather than tweepy: tweepy 4.16's Client hard-codes https://api.twitter.com (no test server, no
proxy) and uploads media only through v1.1's upload.twitter.com, while X's current endpoint is `POST
/2/media/upload`. Authentication is OAuth 1.0a user context (`contentq.integrations.oauth1`): four secrets that
do not expire.

Only reads and uploads are tried again inside a call (tenacity: network errors and 5xx): an orphan upload is
harmless, a tweet sent twice is not, so `create_tweet` is never repeated here. Errors are contentq's job
outcomes: a 429 is a wait until `x-rate-limit-reset` (`XRateLimited`, a `Reschedule`), a 403 for duplicate
content and any other refusal are final (`XRefused`), bad credentials too (`XAuthFailed`), a 5xx or a network
error worth another try (`XUnavailable`).
"""

from __future__ import annotations

import mimetypes
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from contentq.errors import FatalJobError, Reschedule, RetryableError
from contentq.integrations.oauth1 import OAuth1Credentials, authorization

DEFAULT_API_BASE = "https://api.x.com"

LOOKUP_BATCH = 100
"""Tweet ids per GET /2/tweets (X's limit)."""


class XRateLimited(Reschedule):
    """429: the account's (or the app's) window is used up until `x-rate-limit-reset`."""


class XRefused(FatalJobError):
    """X refused the request itself (duplicate content, too long, bad media): sending it again cannot help."""

    def __init__(self, message: str, *, status: int, duplicate: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.duplicate = duplicate


class XAuthFailed(FatalJobError):
    """401: the account's keys or tokens are wrong or revoked."""


class XUnavailable(RetryableError):
    """A 5xx or a network error: the request may be tried again (never a tweet blindly: see the module doc)."""


@dataclass(frozen=True)
class Tweet:
    id: str
    text: str
    created_at: datetime
    replied_to: str | None
    media_keys: tuple[str, ...] = ()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        if body.get("detail"):
            return str(body["detail"])
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or errors[0].get("detail") or errors[0])
        if body.get("title"):
            return str(body["title"])
    return response.text[:300]


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, XUnavailable)


class XClient:
    def __init__(
        self,
        credentials: OAuth1Credentials,
        *,
        account: str = "",
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 30.0,
    ) -> None:
        self.credentials = credentials
        self.account = account
        self.api_base = api_base.rstrip("/")
        self.http = httpx.Client(timeout=timeout, headers={"User-Agent": "contentq"})
        self._user_id: str | None = None

    def close(self) -> None:
        self.http.close()

    # Requests ------------------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = self.api_base + path
        request = self.http.build_request(method, url, params=params, json=json, files=files, data=data)
        # The query is signed from the URL; a form body too, a JSON or multipart body is not.
        signed = list(data.items()) if data and not files else []
        request.headers["Authorization"] = authorization(self.credentials, method, str(request.url), signed)
        try:
            response = self.http.send(request)
        except httpx.TransportError as exc:
            raise XUnavailable(f"X could not be reached ({type(exc).__name__}: {exc})") from None
        self._raise_for(response)
        return response

    def _raise_for(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _detail(response)
        name = f"X account {self.account!r}" if self.account else "X"
        if status == 429:
            reset = response.headers.get("x-rate-limit-reset")
            delay = max(1.0, float(reset) - time.time() + 1) if reset and reset.isdigit() else 60.0
            until = datetime.fromtimestamp(time.time() + delay, UTC).strftime("%H:%M:%S UTC")
            raise XRateLimited(delay, f"X rate limit (429) for {name}: it resets at {until}")
        if status == 401:
            raise XAuthFailed(
                f"X refused the credentials of {name} (401 {detail}): check CONTENTQ_X_{self.account.upper()}_"
                "CONSUMER_KEY, _CONSUMER_SECRET, _ACCESS_TOKEN and _ACCESS_TOKEN_SECRET in .env"
            )
        if status >= 500:
            raise XUnavailable(f"X answered {status} ({detail})")
        duplicate = status == 403 and "duplicate" in detail.lower()
        if duplicate:
            raise XRefused(
                f"X refused the post as duplicate content (403: {detail}): this account posted the same text "
                "recently; edit the post's text to publish it there",
                status=status,
                duplicate=True,
            )
        raise XRefused(f"X refused the request ({status}: {detail})", status=status)

    @retry(retry=retry_if_exception(_retryable), stop=stop_after_attempt(3), wait=wait_exponential(0.5, max=4),
           reraise=True)  # fmt: skip
    def _safe(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request that may be sent again (a read, an upload)."""
        return self._send(method, path, **kw)

    # The account ---------------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """GET /2/users/me: the account these credentials post as ({id, name, username})."""
        data = self._safe("GET", "/2/users/me").json().get("data") or {}
        self._user_id = str(data.get("id") or "") or None
        return dict(data)

    def user_id(self) -> str:
        if self._user_id is None:
            self.me()
        if not self._user_id:
            raise XUnavailable("X did not say which user these credentials belong to (GET /2/users/me)")
        return self._user_id

    def recent_tweets(self, since: datetime, limit: int = 100) -> list[Tweet]:
        """The account's own tweets (replies included, retweets not) posted at or after `since`, newest first."""
        params = {
            "max_results": str(max(5, min(100, limit))),
            "start_time": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tweet.fields": "created_at,referenced_tweets,attachments",
            "exclude": "retweets",
        }
        body = self._safe("GET", f"/2/users/{self.user_id()}/tweets", params=params).json()
        out = []
        for item in body.get("data") or []:
            replied = next(
                (str(r["id"]) for r in item.get("referenced_tweets") or [] if r.get("type") == "replied_to"), None
            )
            created = datetime.fromisoformat(str(item["created_at"]).replace("Z", "+00:00"))
            keys = tuple((item.get("attachments") or {}).get("media_keys") or ())
            out.append(Tweet(str(item["id"]), str(item.get("text") or ""), created, replied, keys))
        return out

    # Metrics (insights) -------------------------------------------------------------------------------

    def tweet_metrics(self, tweet_ids: list[str]) -> dict[str, dict[str, int]]:
        """GET /2/tweets?ids=…&tweet.fields=public_metrics for up to LOOKUP_BATCH tweets in one request: each
        found tweet's public metrics (impression_count, retweet_count, quote_count, reply_count, like_count,
        bookmark_count); a deleted tweet comes back among the response's errors and is left out."""
        if not 0 < len(tweet_ids) <= LOOKUP_BATCH:
            raise ValueError(f"tweet_metrics takes 1 to {LOOKUP_BATCH} ids, not {len(tweet_ids)}")
        params = {"ids": ",".join(tweet_ids), "tweet.fields": "public_metrics"}
        body = self._safe("GET", "/2/tweets", params=params).json()
        out: dict[str, dict[str, int]] = {}
        for item in body.get("data") or []:
            metrics = item.get("public_metrics") or {}
            out[str(item["id"])] = {str(k): int(v) for k, v in metrics.items() if isinstance(v, int)}
        return out

    # Posting -------------------------------------------------------------------------------------------

    def upload_image(self, path: Path) -> str:
        """POST /2/media/upload (one request: an image up to 5 MB); the media id to attach to a tweet."""
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as fh:
            content = fh.read()
        response = self._safe(
            "POST", "/2/media/upload", files={"media": (path.name, content, mime)},
            data={"media_category": "tweet_image"},
        )  # fmt: skip
        data = response.json().get("data") or {}
        media_id = str(data.get("id") or "")
        if not media_id:
            raise XUnavailable(f"X's media upload answered without a media id: {response.text[:200]}")
        return media_id

    def create_tweet(self, text: str, *, media_ids: list[str] | None = None, reply_to: str | None = None) -> str:
        """POST /2/tweets, once (never repeated here); the new tweet's id."""
        body: dict[str, Any] = {"text": text}
        if media_ids:
            body["media"] = {"media_ids": media_ids}
        if reply_to:
            body["reply"] = {"in_reply_to_tweet_id": reply_to}
        response = self._send("POST", "/2/tweets", json=body)
        tweet_id = str((response.json().get("data") or {}).get("id") or "")
        if not tweet_id:
            raise XUnavailable(f"X accepted the tweet but returned no id: {response.text[:200]}")
        return tweet_id
