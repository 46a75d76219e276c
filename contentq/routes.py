"""Routes: donor channels → target channel, with prompt, filters and schedule, from contentq.toml."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contentq.clock import parse_duration
from contentq.content.refs import normalize_channel_ref
from contentq.errors import ConfigError, ContentqError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


ROUTES_FILE_MAX = 8 * 2**20
"""A larger routes file is refused before it is read."""

TEXT_MAX = 1_000_000
"""Upper bound of length filters: far beyond any Telegram post, small enough to mean something."""


def _check_tz(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')") from None
    return value


def _check_days(value: list[str]) -> list[str]:
    if not value:
        raise ValueError(f"give at least one day ({', '.join(DAYS)})")
    days = [d.lower()[:3] for d in value]
    bad = [d for d in days if d not in DAYS]
    if bad:
        raise ValueError(f"unknown day(s) {bad}: use {', '.join(DAYS)}")
    return days


def _check_times(value: list[str]) -> list[str]:
    for item in value:
        try:
            time.fromisoformat(item)
        except ValueError:
            raise ValueError(f"{item!r} is not a time of day such as '09:30'") from None
    return value


class Filters(_Strict):
    stop_words: list[str] = []
    regexes: list[str] = []
    min_length: Annotated[int, Field(ge=0, le=TEXT_MAX)] = 0
    max_length: Annotated[int | None, Field(ge=0, le=TEXT_MAX)] = None
    media_types: (
        list[Literal["text", "photo", "video", "video_note", "animation", "document", "album", "audio", "voice",
                     "sticker"]] | None
    ) = None  # fmt: skip
    skip_forwards: bool = False
    skip_ads: bool = False

    @field_validator("regexes")
    @classmethod
    def _compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regex {pattern!r}: {exc}") from None
        return value

    @field_validator("media_types")
    @classmethod
    def _video_kinds(cls, value: list[str] | None) -> list[str] | None:
        # Round videos and GIFs were "video" before they were told apart: a route that takes videos takes them too.
        if value is not None and "video" in value:
            value = [*value, *(k for k in ("video_note", "animation") if k not in value)]
        return value

    @model_validator(mode="after")
    def _lengths_overlap(self) -> Filters:
        if self.max_length is not None and self.max_length < self.min_length:
            raise ValueError(
                f"max_length {self.max_length} is below min_length {self.min_length}: every post would be filtered"
            )
        return self


class Schedule(_Strict):
    asap: bool = False
    slots: list[str] = []
    days: list[str] = list(DAYS)
    timezone: str = "UTC"
    max_per_day: Annotated[int | None, Field(ge=1, le=10_000)] = (
        None  # 0 would hold every post forever: leave it out instead
    )
    min_gap_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = 0
    min_age_minutes: Annotated[int, Field(ge=0, le=30 * 24 * 60)] = 0

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _check_tz(v)))
    _days = field_validator("days")(classmethod(lambda cls, v: _check_days(v)))
    _times = field_validator("slots")(classmethod(lambda cls, v: _check_times(v)))

    @model_validator(mode="after")
    def _slots_or_asap(self) -> Schedule:
        if not self.asap and not self.slots:
            raise ValueError("give publishing slots (slots = ['09:00', ...]) or set asap = true")
        return self


class Generate(_Strict):
    topic: str
    times: list[str] = Field(min_length=1)
    days: list[str] = list(DAYS)
    timezone: str = "UTC"

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _check_tz(v)))
    _days = field_validator("days")(classmethod(lambda cls, v: _check_days(v)))
    _times = field_validator("times")(classmethod(lambda cls, v: _check_times(v)))


class Clean(_Strict):
    """Options of the rule-based rewriter."""

    replacements: dict[str, str] = {}
    signature: str = ""
    footer_share: Annotated[float, Field(ge=0, le=1)] = 0.5
    footer_window: Annotated[int, Field(ge=0, le=1000)] = 20


class LLMChecks(_Strict):
    """What a model's answer must keep of the original to be accepted (contentq/rewrite/checks.py)."""

    max_entity_loss: Annotated[float, Field(ge=0, le=1)] = 0.5
    """The largest share of the original's formatting entities, links and custom emoji an answer may lose."""
    length_ratio: tuple[Annotated[float, Field(ge=0, le=100)], Annotated[float, Field(ge=0, le=100)]] = (0.25, 3.0)
    """The answer's visible length over the original's: [lowest, highest] (100 characters of slack either way)."""

    @field_validator("length_ratio")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not low <= 1 <= high:
            raise ValueError(f"[{low:g}, {high:g}] must hold 1 (an answer as long as the original): e.g. [0.25, 3.0]")
        return value


Dollars = Annotated[float, Field(gt=0, le=1_000_000)]


class Budget(_Strict):
    """What a route (in [routes.NAME.budget]) or all routes together ([budget]) may spend on paid APIs (LLM calls
    and images, at the price table's estimate) per day and per calendar month; docs/costs.md."""

    daily: Dollars | None = None
    monthly: Dollars | None = None
    on_budget: Literal["wait", "clean"] | None = None
    """Once spent: the route's posts wait for the next day or month (wait), or the clean rewriter rewrites them
    and images are cards (clean). Unset on a route: the [budget] table's, else wait."""

    @property
    def limits(self) -> dict[Literal["day", "month"], float]:
        """{"day": dollars, "month": dollars}, for the periods that have a budget."""
        limits: dict[Literal["day", "month"], float] = {}
        if self.daily is not None:
            limits["day"] = self.daily
        if self.monthly is not None:
            limits["month"] = self.monthly
        return limits


class OverallBudget(Budget):
    """The [budget] table: every route's spending together, and the defaults of the routes' budgets."""

    timezone: str = "UTC"
    """Where a budget's day and month begin (an IANA name)."""

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _check_tz(v)))


PLATFORMS = ("telegram", "x", "instagram")
"""Where a route can publish: a Telegram channel, an X account, an Instagram (professional) account."""

_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_]{1,40}$")

TELEGRAM_ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
"""A Telegram account's name (`contentq accounts add NAME`): what routes name in account, read_account …"""


def _check_telegram_account(value: str) -> str:
    if value and not TELEGRAM_ACCOUNT_NAME.match(value):
        raise ValueError(
            f"account {value!r}: a Telegram account name is lower-case letters, digits, '-' or '_' "
            "(see `contentq accounts list`)"
        )
    return value


@dataclass(frozen=True)
class Destination:
    """One place a post goes: `telegram:@channel`, `x:main`, `instagram:brand` (the account's configured name)."""

    platform: str
    account: str

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.account}"


def parse_destination(value: str) -> Destination:
    """`platform:account` as written on a route; raises ValueError saying what is wrong."""
    platform, sep, account = value.strip().partition(":")
    platform = platform.lower()
    if not sep or not account.strip():
        raise ValueError(
            f"destination {value!r}: write platform:account, e.g. 'telegram:@my_channel', 'x:main', 'instagram:brand'"
        )
    if platform not in PLATFORMS:
        raise ValueError(f"destination {value!r}: unknown platform {platform!r} (use {', '.join(PLATFORMS)})")
    account = account.strip()
    if platform == "telegram":
        ref = normalize_channel_ref(account)
        if not ref.lstrip("@"):
            raise ValueError(f"destination {value!r}: give the channel as @username or a numeric id")
        return Destination(platform, ref)
    if not _ACCOUNT_NAME.match(account):
        raise ValueError(
            f"destination {value!r}: an account name is letters, digits and '_' (it names the .env variables "
            f"CONTENTQ_{platform.upper()}_<NAME>_…)"
        )
    return Destination(platform, account.lower())


class XOptions(_Strict):
    """How a route's posts are adapted for X (docs/destinations.md)."""

    images: Literal["spread", "first4"] = "spread"
    """More than 4 images: spread over the thread's tweets (4 each), or the first 4 and the rest left out."""
    numbering: bool = True
    """A thread's tweets end with " 1/3", " 2/3" …"""
    mentions: Literal["link", "keep"] = "link"
    """A Telegram @channel is no X handle: written as t.me/channel (link), or left as it is (keep)."""


class InstagramOptions(_Strict):
    """How a route's posts are adapted for Instagram (docs/destinations.md)."""

    links: Literal["bio", "drop"] = "bio"
    """Captions have no clickable links: a link's text is kept and `link_text` added once (bio), or links go."""
    link_text: Annotated[str, Field(max_length=200)] = "Link in bio"
    public_media_url: str | None = None
    """The public https base that serves CONTENTQ_HOME/media: Instagram fetches the images from there."""
    mentions: Literal["link", "keep"] = "link"

    @field_validator("public_media_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s]+", value.strip()):
            raise ValueError("public_media_url must be an http(s) URL, e.g. https://media.example.com/contentq")
        return value.strip().rstrip("/")


class Route(_Strict):
    name: str = ""
    target: str = ""
    """The Telegram channel of a route without `destinations`; with them, the first Telegram destination's."""
    destinations: list[str] = []
    """Where each post goes, each as its own delivery: ["telegram:@chan", "x:main", "instagram:brand"]."""
    x: XOptions = Field(default_factory=XOptions)
    instagram: InstagramOptions = Field(default_factory=InstagramOptions)
    sources: list[str] = []
    rewriter: Literal["llm", "clean", "none"] = "llm"
    publisher: Literal["telegram", "outbox"] = "telegram"
    prompt: str = "Rewrite the post in your own words for our channel. Keep facts, names and numbers."
    description: str = ""
    style_examples: Annotated[int, Field(ge=0, le=50)] = 3
    allowed_links: list[str] = []
    images: Literal["none", "optional", "required"] = "none"
    image_backend: Literal["openai", "card"] = "card"
    approval: bool = False
    filters: Filters = Field(default_factory=Filters)
    schedule: Schedule = Field(default_factory=lambda: Schedule(asap=True))
    generate: Generate | None = None
    clean: Clean = Field(default_factory=Clean)
    llm: LLMChecks = Field(default_factory=LLMChecks)
    rewrite_mode: Literal["direct", "batch", "auto"] = "direct"
    """How the LLM rewrites the route's posts: a call each (direct); through the OpenAI Batch API at about half
    the price (batch), falling back to a direct call when the batch fails or the post's slot comes near; or batch
    only for a post whose slot is further away than the provider's batch window (auto)."""
    budget: Budget = Field(default_factory=Budget)
    llm_patience: str = "6h"
    """How long a post may wait for an LLM endpoint that does not answer (an open circuit breaker, long
    rate-limit waits) before it fails with the reason and the admin is told once: 90m, 6h, 2d."""
    long_text: Literal["split", "truncate"] = "split"
    """A text over Telegram's limit: several messages of one batch (split), or cut with an ellipsis (truncate)."""
    number_parts: bool = False
    """Under split: end each part of a post sent as several messages with "1/3", "2/3", …"""
    forward_credit: str = ""
    """Telegram HTML added to a forwarded post, with {name} and {link} of its origin; empty: no credit."""
    strip_footer: bool = True  # strip the donor's learned footer/header before filters and dedup
    footer_patterns: list[str] = []  # more lines to strip at a post's ends: a literal line, or "re:<regex>"
    on_donor_edit: Literal["rewrite", "ignore", "edit_published"] = "rewrite"
    """A donor edit seen by `contentq listen`: update the post and rewrite it again (rewrite), also edit our
    published message (edit_published), or keep the post as first collected (ignore)."""
    on_donor_delete: Literal["cancel", "delete_published"] = "cancel"
    """A donor deletion seen by `contentq listen`: cancel the post if not yet published (cancel), and also
    delete our published message (delete_published)."""
    account: str = ""
    """The Telegram account that reads the sources and posts to the Telegram target(s) (docs/accounts.md);
    empty: the only account there is (with several: `main`)."""
    read_account: str = ""
    """The account that reads the sources, when it is not `account`."""
    post_account: str = ""
    """The account that posts to the Telegram target(s), when it is not `account`."""
    source_accounts: dict[str, str] = {}
    """One source read by another account: {"@donor" = "reader2"}."""
    target_accounts: dict[str, str] = {}
    """One Telegram target posted to by another account: {"@my_channel" = "poster2"}."""
    fallback_accounts: list[str] = []
    """Accounts that collect a source, in this order, while its reader is logged out, banned or cannot read it."""

    @field_validator("account", "read_account", "post_account")
    @classmethod
    def _account_name(cls, value: str) -> str:
        return _check_telegram_account(value.strip())

    @field_validator("fallback_accounts")
    @classmethod
    def _fallback_names(cls, value: list[str]) -> list[str]:
        return [_check_telegram_account(v.strip()) for v in value if v.strip()]

    @field_validator("source_accounts", "target_accounts")
    @classmethod
    def _per_channel_accounts(cls, value: dict[str, str]) -> dict[str, str]:
        return {normalize_channel_ref(ref): _check_telegram_account(name.strip()) for ref, name in value.items()}

    @model_validator(mode="after")
    def _accounts_name_channels(self) -> Route:
        sources = {normalize_channel_ref(s) for s in self.sources}
        stray = sorted(set(self.source_accounts) - sources)
        if stray:
            raise ValueError(f"source_accounts: {stray[0]} is not one of the route's sources")
        targets = set(self.telegram_targets())
        stray = sorted(set(self.target_accounts) - targets)
        if stray:
            raise ValueError(f"target_accounts: {stray[0]} is not one of the route's Telegram targets")
        return self

    def telegram_targets(self) -> list[str]:
        """The Telegram channels this route posts to: its destinations' or its target."""
        if self.destinations:
            return [d.account for d in self.destination_list if d.platform == "telegram"]
        return [normalize_channel_ref(self.target)] if self.target.strip() else []

    def reader_named(self, source: str) -> str | None:
        """The account named to read `source`; None: the default account."""
        return self.source_accounts.get(normalize_channel_ref(source)) or self.read_account or self.account or None

    def poster_named(self, target: str) -> str | None:
        """The account named to post to `target`; None: the default account."""
        return self.target_accounts.get(normalize_channel_ref(target)) or self.post_account or self.account or None

    def accounts_named(self) -> set[str]:
        """Every Telegram account this route names (empty names: the default account)."""
        names = {self.account, self.read_account, self.post_account, *self.source_accounts.values(),
                 *self.target_accounts.values(), *self.fallback_accounts}  # fmt: skip
        return {n for n in names if n}

    @field_validator("llm_patience")
    @classmethod
    def _patience(cls, value: str) -> str:
        try:
            seconds = parse_duration(value).total_seconds()
        except ContentqError as exc:
            raise ValueError(str(exc)) from None
        if seconds <= 0:
            raise ValueError(f"{value!r}: give a duration above zero, such as 6h")
        return value

    @property
    def llm_patience_seconds(self) -> float:
        return parse_duration(self.llm_patience).total_seconds()

    @field_validator("forward_credit")
    @classmethod
    def _credit_template(cls, value: str) -> str:
        from contentq.content.split import check_credit_template

        return check_credit_template(value)

    @field_validator("footer_patterns")
    @classmethod
    def _footer_regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise ValueError(f"bad regex {pattern[3:]!r}: {exc}") from None
        return value

    @field_validator("destinations", mode="after")
    @classmethod
    def _destinations_parse(cls, value: list[str]) -> list[str]:
        keys = [parse_destination(d).key for d in value]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"destination {twice[0]} is listed twice")
        return keys

    @model_validator(mode="after")
    def _target_named(self) -> Route:
        if self.destinations:
            if self.publisher == "outbox":
                raise ValueError(
                    'publisher = "outbox" is for routes without destinations; preview a destinations route '
                    "with `contentq publish ID --dry-run`"
                )
            telegram = [d for d in self.destination_list if d.platform == "telegram"]
            if not self.target.strip():
                self.target = telegram[0].account if telegram else self.destinations[0]
            if any(d.platform == "instagram" for d in self.destination_list) and not self.instagram.public_media_url:
                raise ValueError(
                    "instagram: Instagram fetches images from a public URL: set public_media_url (a https base "
                    "that serves CONTENTQ_HOME/media) in [routes.NAME.instagram]; see docs/destinations.md"
                )
        elif not self.target.strip():
            raise ValueError(
                'target: give the target channel (@username or numeric id), or destinations = ["telegram:@chan", …]'
            )
        return self

    @property
    def destination_list(self) -> list[Destination]:
        return [parse_destination(d) for d in self.destinations]

    @field_validator("sources", mode="after")
    @classmethod
    def _sources_named(cls, value: list[str]) -> list[str]:
        if any(not normalize_channel_ref(s).lstrip("@") for s in value):
            raise ValueError("a source is empty: give @username, t.me/name or a numeric id")
        return value

    @model_validator(mode="after")
    def _has_input(self) -> Route:
        if not self.sources and self.generate is None:
            raise ValueError("a route needs donor channels (sources = [...]) or a [generate] section")
        return self


class BucketLimit(_Strict):
    """A token bucket: `burst` sends at once at most, refilled at `per_hour` sends an hour."""

    burst: Annotated[int, Field(ge=1, le=100_000)]
    per_hour: Annotated[float, Field(gt=0, le=1_000_000)]


X_DEFAULT_LIMIT = BucketLimit(burst=200, per_hour=100)
"""POST /2/tweets: 200 requests per 15 min and 300 per 3 hours per user (X API v2 rate limits)."""

INSTAGRAM_DEFAULT_LIMIT = BucketLimit(burst=25, per_hour=100 / 24)
"""25 an hour at most, 100 per rolling 24 h (content_publishing_limit; the quota itself is read before publishing)."""


class XAccount(_Strict):
    """An X account: secrets in .env (CONTENTQ_X_<NAME>_CONSUMER_KEY …), the rest here (all optional)."""

    api_base: str = "https://api.x.com"
    limit: BucketLimit = Field(default_factory=lambda: X_DEFAULT_LIMIT)


class InstagramAccount(_Strict):
    """An Instagram professional account: its IG user id here, its access token in .env."""

    user_id: Annotated[str, Field(pattern=r"^[0-9]{1,30}$")]
    api_base: str = "https://graph.facebook.com/v21.0"
    limit: BucketLimit = Field(default_factory=lambda: INSTAGRAM_DEFAULT_LIMIT)


class Accounts(_Strict):
    x: dict[str, XAccount] = {}
    instagram: dict[str, InstagramAccount] = {}


class RoutesConfig(BaseModel):
    path: Path | None = None
    routes: dict[str, Route] = {}
    accounts: Accounts = Field(default_factory=Accounts)
    budget: OverallBudget = Field(default_factory=OverallBudget)

    def x_account(self, name: str) -> XAccount:
        return self.accounts.x.get(name) or XAccount()

    def instagram_account(self, name: str) -> InstagramAccount:
        try:
            return self.accounts.instagram[name]
        except KeyError:
            raise ConfigError(
                f"no Instagram account {name!r}: add [accounts.instagram.{name}] with its user_id to contentq.toml"
            ) from None

    def get(self, name: str) -> Route:
        try:
            return self.routes[name]
        except KeyError:
            known = ", ".join(sorted(self.routes)) or "none configured"
            raise ConfigError(f"unknown route {name!r} (routes: {known})") from None

    def route_for_source(self, source: str) -> Route | None:
        wanted = normalize_channel_ref(source)
        for route in self.routes.values():
            if wanted in {normalize_channel_ref(s) for s in route.sources}:
                return route
        return None

    def sources(self) -> list[tuple[str, Route]]:
        seen: list[tuple[str, Route]] = []
        for route in self.routes.values():
            for source in route.sources:
                seen.append((normalize_channel_ref(source), route))
        return seen


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_routes(data: dict[str, Any], path: Path | None = None) -> RoutesConfig:
    where = str(path) if path else "contentq.toml"
    unknown = sorted(str(key) for key in data if key not in ("routes", "accounts", "budget"))
    if unknown:  # a misspelt [route.x] or [routs.x] would otherwise leave the routes silently empty
        raise ConfigError(
            f"{where}: unknown top-level table(s) {', '.join(unknown)}; routes go in [routes.NAME], "
            "destination accounts in [accounts.x.NAME] and [accounts.instagram.NAME], spending limits in [budget]"
        )
    accounts = _parse_accounts(where, data.get("accounts", {}))
    budget = _parse_budget(where, data.get("budget", {}))
    raw_routes = data.get("routes", {})
    if not isinstance(raw_routes, dict):
        raise ConfigError(f"{where}: [routes] must be a table of routes, e.g. [routes.news]")
    routes: dict[str, Route] = {}
    for name, body in raw_routes.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: route {name!r} must be a table ([routes.{name}])")
        try:
            route = Route(**{**body, "name": name})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = f"{_format_loc(err['loc'])}: " if err["loc"] else ""
            msg = err["msg"].removeprefix("Value error, ")
            raise ConfigError(f"{where}: route {name!r}: {field}{msg}") from None
        routes[name] = route
    _refuse_shared_sources(where, routes)
    _refuse_unknown_accounts(where, routes, accounts)
    return RoutesConfig(path=path, routes=routes, accounts=accounts, budget=budget)


def _parse_budget(where: str, raw: Any) -> OverallBudget:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [budget] must be a table, e.g. [budget] daily = 5.0")
    try:
        return OverallBudget(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: budget.{_format_loc(err['loc'])}: {msg}") from None


def _parse_accounts(where: str, raw: Any) -> Accounts:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [accounts] must be a table, e.g. [accounts.x.main]")
    try:
        return Accounts(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: accounts.{_format_loc(err['loc'])}: {msg}") from None


def _refuse_unknown_accounts(where: str, routes: dict[str, Route], accounts: Accounts) -> None:
    """An Instagram destination needs its account's user id; found when the file is read, not at the first post."""
    for name, route in routes.items():
        for dest in route.destination_list:
            if dest.platform == "instagram" and dest.account not in accounts.instagram:
                raise ConfigError(
                    f"{where}: route {name!r} publishes to {dest.key}: add [accounts.instagram.{dest.account}] "
                    "with its user_id (the IG user id; its token goes in .env, see docs/destinations.md)"
                )


def _refuse_shared_sources(where: str, routes: dict[str, Route]) -> None:
    """A donor feeds one route: collect assigns a donor's posts to the first route that lists it."""
    owner: dict[str, str] = {}
    for name, route in routes.items():
        for source in route.sources:
            ref = normalize_channel_ref(source)
            if owner.get(ref, name) != name:
                raise ConfigError(
                    f"{where}: source {ref} is in routes {owner[ref]!r} and {name!r}; a donor belongs to one route"
                )
            owner[ref] = name


def load_routes(path: Path, *, required: bool = False) -> RoutesConfig:
    if not path.exists():
        if required:
            raise ConfigError(
                f"{path}: no routes file; copy contentq.example.toml to {path} and edit it, or set CONTENTQ_CONFIG"
            )
        return RoutesConfig(path=path, routes={})
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the routes file (contentq.toml) with --config or CONTENTQ_CONFIG")
    if not path.is_file():
        raise ConfigError(f"{path}: not a regular file; give the routes file (contentq.toml)")
    if path.stat().st_size > ROUTES_FILE_MAX:
        raise ConfigError(f"{path}: larger than {ROUTES_FILE_MAX // 2**20} MB; this is not a routes file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; the routes file must be TOML text") from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read it ({exc.strerror or exc}); check the path and its permissions"
        ) from None
    return parse_routes(data, path)
