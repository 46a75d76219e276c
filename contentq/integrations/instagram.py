"""Instagram Graph API content publishing for one professional account (httpx + tenacity, like `x`).

The steps Meta documents: create a media container from a public image URL (`POST /{ig-user-id}/media`; a
carousel: one container per item with `is_carousel_item=true`, then one with `media_type=CAROUSEL` and the
`children`), wait until its `status_code` is FINISHED, then `POST /{ig-user-id}/media_publish`. The rolling 24 h
limit is read from `GET /{ig-user-id}/content_publishing_limit`.

The access token goes in the Authorization header, never in a URL (URLs end up in logs). Reads and container
creations (an unused container expires by itself) are tried again inside a call; `media_publish` never is.
Errors (`{"error": {"message", "type", "code", "error_subcode", "is_transient"}}`) become job outcomes: a bad
or expired token → `InstagramAuthFailed`; the publishing limit (code 9, subcode 2207042) → `InstagramQuota`;
Meta's request limits (codes 4, 17, 32, 613) → `InstagramRateLimited` (a wait); transient errors, 5xx and the
network → `InstagramUnavailable`; any other refusal → `InstagramRefused`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from contentq.errors import FatalJobError, Reschedule, RetryableError

DEFAULT_API_BASE = "https://graph.facebook.com/v21.0"
QUOTA_SUBCODE = 2207042
AUTH_CODES = (190, 102, 10, 200)
RATE_CODES = (4, 17, 32, 613)
RATE_WAIT_SECONDS = 600.0
"""How long a request limit is waited out when Meta does not say (X-Business-Use-Case-Usage)."""


MULTI_ID_BATCH = 50
"""Ids per Graph API multiple-ID read."""

MISSING_IDS_CODE = 803
"""A multiple-ID read naming an object that does not exist (a deleted medium): "Some of the aliases you requested
do not exist: …"."""


class InstagramError(Exception):
    """Mixed into each outcome: the Graph API error's code and subcode."""

    code: int | None = None
    subcode: int | None = None


class InstagramAuthFailed(FatalJobError, InstagramError):
    pass


class InstagramRefused(FatalJobError, InstagramError):
    pass


class InstagramQuota(Reschedule, InstagramError):
    """The account's 24 h publishing limit is used up (a refusal: normally found before, by the quota read)."""


class InstagramRateLimited(Reschedule, InstagramError):
    pass


class InstagramUnavailable(RetryableError, InstagramError):
    pass


@dataclass(frozen=True)
class Media:
    id: str
    caption: str
    timestamp: datetime
    permalink: str | None
    media_type: str | None


@dataclass(frozen=True)
class Quota:
    usage: int
    total: int
    duration: int


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text[:300]}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {"message": response.text[:300]}


def _usage_wait(response: httpx.Response) -> float:
    """Minutes to regain access, from Meta's usage header, as seconds (or the default)."""
    raw = response.headers.get("x-business-use-case-usage") or ""
    try:
        usage = json.loads(raw) if raw else {}
        minutes = max(int(item.get("estimated_time_to_regain_access") or 0) for v in usage.values() for item in v)
    except (ValueError, TypeError, AttributeError):
        minutes = 0
    return minutes * 60.0 if minutes else RATE_WAIT_SECONDS


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, InstagramUnavailable)


class InstagramClient:
    def __init__(
        self, user_id: str, token: str, *, account: str = "", api_base: str = DEFAULT_API_BASE, timeout: float = 30.0
    ) -> None:
        self.user_id = user_id
        self.token = token
        self.account = account
        self.api_base = api_base.rstrip("/")
        self.http = httpx.Client(
            timeout=timeout, headers={"Authorization": f"Bearer {token}", "User-Agent": "contentq"}
        )

    def close(self) -> None:
        self.http.close()

    def _send(
        self, method: str, path: str, *, params: dict[str, str] | None = None, data: dict[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            response = self.http.request(method, self.api_base + path, params=params, data=data)
        except httpx.TransportError as exc:
            raise InstagramUnavailable(f"Instagram could not be reached ({type(exc).__name__}: {exc})") from None
        if response.status_code < 400:
            body = response.json()
            return body if isinstance(body, dict) else {}
        self._raise(response)
        raise AssertionError("unreachable")

    def _raise(self, response: httpx.Response) -> None:
        error = _error(response)
        code, subcode = error.get("code"), error.get("error_subcode")
        message = str(error.get("error_user_msg") or error.get("message") or f"HTTP {response.status_code}")
        where = f"Instagram account {self.account!r}" if self.account else "Instagram"
        detail = f"{message} (code {code}" + (f", subcode {subcode})" if subcode else ")")
        exc: InstagramError
        if code in AUTH_CODES or response.status_code == 401:
            exc = InstagramAuthFailed(
                f"{where} refused the access token: {detail}; renew CONTENTQ_INSTAGRAM_{self.account.upper()}_"
                "ACCESS_TOKEN in .env (docs/destinations.md)"
            )
        elif subcode == QUOTA_SUBCODE:
            exc = InstagramQuota(3600.0, f"{where} reached its 24 h publishing limit: {detail}")
        elif code in RATE_CODES or response.status_code == 429:
            exc = InstagramRateLimited(_usage_wait(response), f"{where} is over Meta's request limit: {detail}")
        elif error.get("is_transient") or response.status_code >= 500 or code in (1, 2, -1, -2):
            exc = InstagramUnavailable(f"{where}: {detail}, worth another try")
        else:
            exc = InstagramRefused(f"{where} refused the request: {detail}")
        exc.code, exc.subcode = code, subcode
        raise exc

    @retry(retry=retry_if_exception(_retryable), stop=stop_after_attempt(3), wait=wait_exponential(0.5, max=4),
           reraise=True)  # fmt: skip
    def _safe(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        return self._send(method, path, **kw)

    # Reads ---------------------------------------------------------------------------------------------

    def username(self) -> str:
        return str(self._safe("GET", f"/{self.user_id}", params={"fields": "username"}).get("username") or "")

    def container_status(self, container_id: str) -> str:
        """IN_PROGRESS, FINISHED, PUBLISHED, ERROR or EXPIRED."""
        body = self._safe("GET", f"/{container_id}", params={"fields": "status_code"})
        return str(body.get("status_code") or "")

    def publishing_limit(self) -> Quota:
        body = self._safe("GET", f"/{self.user_id}/content_publishing_limit", params={"fields": "quota_usage,config"})
        item = (body.get("data") or [{}])[0]
        config = item.get("config") or {}
        return Quota(
            int(item.get("quota_usage") or 0), int(config.get("quota_total") or 100),
            int(config.get("quota_duration") or 86400),
        )  # fmt: skip

    def recent_media(self, limit: int = 25) -> list[Media]:
        """The account's media, newest first."""
        body = self._safe(
            "GET", f"/{self.user_id}/media",
            params={"fields": "id,caption,timestamp,permalink,media_type", "limit": str(limit)},
        )  # fmt: skip
        out = []
        for item in body.get("data") or []:
            stamp = datetime.fromisoformat(str(item["timestamp"]).replace("Z", "+00:00").replace("+0000", "+00:00"))
            out.append(Media(str(item["id"]), str(item.get("caption") or ""), stamp, item.get("permalink"),
                             item.get("media_type")))  # fmt: skip
        return out

    def permalink(self, media_id: str) -> str | None:
        link = self._safe("GET", f"/{media_id}", params={"fields": "permalink"}).get("permalink")
        return str(link) if link else None

    # Metrics (insights) -------------------------------------------------------------------------------

    def media_metrics(self, media_ids: list[str]) -> dict[str, dict[str, int]]:
        """Up to MULTI_ID_BATCH media in one Graph API multiple-ID read (`GET /?ids=…&fields=…`): like_count,
        comments_count and, by field expansion of the media's insights, its lifetime `views` and `shares`.
        A medium whose insights are not available yet (Meta delays them up to 48 h) has no views."""
        if not 0 < len(media_ids) <= MULTI_ID_BATCH:
            raise ValueError(f"media_metrics takes 1 to {MULTI_ID_BATCH} ids, not {len(media_ids)}")
        fields = "like_count,comments_count,insights.metric(views,shares)"
        try:
            body = self._safe("GET", "/", params={"ids": ",".join(media_ids), "fields": fields})
        except InstagramRefused as exc:
            # One deleted medium fails the whole read (#803, naming the ids): read the others again without it.
            gone = set(re.findall(r"\d+", str(exc).partition("do not exist:")[2].partition("(code")[0]))
            rest = [m for m in media_ids if m not in gone]
            if getattr(exc, "code", None) != MISSING_IDS_CODE or not gone or len(rest) == len(media_ids):
                raise
            if not rest:
                return {}
            body = self._safe("GET", "/", params={"ids": ",".join(rest), "fields": fields})
        out: dict[str, dict[str, int]] = {}
        for media_id, item in body.items():
            if not isinstance(item, dict):
                continue
            figures = {k: int(item[k]) for k in ("like_count", "comments_count") if isinstance(item.get(k), int)}
            for metric in (item.get("insights") or {}).get("data") or []:
                values = metric.get("values") or [{}]
                if isinstance(values[0].get("value"), int):
                    figures[str(metric.get("name"))] = int(values[0]["value"])
            out[str(media_id)] = figures
        return out

    # Publishing ------------------------------------------------------------------------------------------

    def create_image(self, image_url: str, *, caption: str | None = None, carousel_item: bool = False) -> str:
        data = {"image_url": image_url}
        if carousel_item:
            data["is_carousel_item"] = "true"
        elif caption:
            data["caption"] = caption
        return str(self._safe("POST", f"/{self.user_id}/media", data=data)["id"])

    def create_carousel(self, children: list[str], caption: str) -> str:
        data = {"media_type": "CAROUSEL", "children": ",".join(children), "caption": caption}
        return str(self._safe("POST", f"/{self.user_id}/media", data=data)["id"])

    def publish(self, container_id: str) -> str:
        """POST media_publish, once (never repeated here); the published media's id."""
        return str(self._send("POST", f"/{self.user_id}/media_publish", data={"creation_id": container_id})["id"])
