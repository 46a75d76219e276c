"""Per-route filters ([routes.NAME.filters] in contentq.toml): posts not worth rewriting.

`RouteFilter.check` returns the first rule that matches as "<rule>: <detail>", e.g. "stop_words: 'casino'";
the post is then stored in state `filtered` with that reason. Rules run in the order of the config keys.

Route regexes run on the `regex` engine with a time limit (REGEX_TIMEOUT_S): a pattern that backtracks
catastrophically on some donor text (`(a|aa)+$` against 35 characters) gives up instead of hanging the
worker. Such a regex counts as not matching — the post is kept, not filtered — and `timed_out` names it,
so the caller records a warning on the post and the job and alerts the admin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import regex

from contentq.content.html import normalize_link
from contentq.content.refs import normalize_channel_ref

if TYPE_CHECKING:
    from contentq.routes import Filters  # the config model; filters read its fields only

_AD_MARKERS = re.compile(
    r"(?i)(#(?:реклама|ad|ads|advert|promo|sponsored|партнер\w*|партнёр\w*)\b|\berid\b|(?<!\w)реклама(?!\w)"
    r"|\bsponsored\b|\badvertisement\b)"
)
_INVITE = re.compile(r"(?i)(?:https?://)?(?:t|telegram)\.me/(?:\+|joinchat/)[\w-]+")
_CHANNEL_LINK = re.compile(r"(?i)(?:https?://)?(?:t|telegram)\.me/(?:s/)?([a-z]\w{3,31})\b")
_MENTION = re.compile(r"(?<![\w/])@([a-zA-Z]\w{3,31})\b")
_CALL_TO_ACTION = re.compile(
    r"(?i)\b(?:subscribe|join|follow|check out|подпис\w*|переход\w*|вступ\w*|присоедин\w*|заходи\w*)"
)
REGEX_TIMEOUT_S = 0.25
"""Longest time one route regex may search one post."""

_AD_HINTS = ("#", "erid", "реклам", "sponsor", "advertis")  # cheap test before the regex
_NOT_CHANNELS = frozenset({"share", "addstickers", "proxy", "socks", "iv", "addlist", "boost", "c"})


@dataclass(frozen=True)
class PostFacts:
    """What the filters look at."""

    text: str  # the visible text (caption) without markup
    kind: str  # text | photo | video | document | album | audio | voice | sticker
    is_forward: bool = False
    links: tuple[str, ...] = ()  # link targets: <a href> and bare URLs
    source: str = ""  # the donor channel, '@name'
    self_refs: frozenset[str] = frozenset()  # the donor's own channels and chat (its learned footer's)


@dataclass
class RouteFilter:
    filters: Filters
    own_refs: frozenset[str] = field(default_factory=frozenset)  # the route's own channels: not ads
    _stop: re.Pattern[str] | None = None
    _regexes: list[tuple[str, Any]] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    """The regexes that gave up on the last post checked (it was kept)."""

    def __post_init__(self) -> None:
        words = [w.strip() for w in self.filters.stop_words if w.strip()]
        if words:
            alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
            self._stop = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)
        self._regexes = [(p, regex.compile(p)) for p in self.filters.regexes]

    @classmethod
    def for_route(cls, filters: Filters, own: Iterable[str] = ()) -> RouteFilter:
        return cls(filters, frozenset(normalize_channel_ref(r) for r in own if r))

    def check(self, post: PostFacts) -> str | None:
        """The rule that filters this post out, or None when it passes."""
        f = self.filters
        if self._stop is not None and (hit := self._stop.search(post.text)):
            return f"stop_words: {hit.group(0).lower()!r}"
        self.timed_out = []
        for pattern, compiled in self._regexes:
            try:
                if compiled.search(post.text, timeout=REGEX_TIMEOUT_S):
                    return f"regexes: '{pattern}'"
            except TimeoutError:
                self.timed_out.append(pattern)
        length = len(post.text.strip())
        if length < f.min_length:
            return f"min_length: {length} < {f.min_length} characters"
        if f.max_length is not None and length > f.max_length:
            return f"max_length: {length} > {f.max_length} characters"
        if f.media_types is not None and post.kind not in f.media_types:
            return f"media_types: {post.kind} is not one of {', '.join(f.media_types)}"
        if f.skip_forwards and post.is_forward:
            return "skip_forwards: forwarded post"
        if f.skip_ads and (ad := advertisement(post, self.own_refs)):
            return f"skip_ads: {ad}"
        return None


def timeout_warning(patterns: list[str]) -> str:
    """The warning kept on a post whose route regexes gave up on it."""
    names = ", ".join(f"'{p}'" for p in patterns)
    return (
        f"kept: route regex {names} gave up after {REGEX_TIMEOUT_S:g} s on this post (catastrophic "
        "backtracking?); simplify the pattern in contentq.toml"
    )


def advertisement(post: PostFacts, own_refs: frozenset[str] = frozenset()) -> str | None:
    """Why the post looks like an ad for another channel, or None.

    An ad marker (#реклама, #ad, erid …), a private invite link, or a call to subscribe/join next to a
    link or @mention of a channel other than the donor itself (with the channels of its learned footer:
    its chat, its other channels) and the route's own channels: a donor promoting itself is not an ad.
    """
    lowered = post.text.lower()
    if any(hint in lowered for hint in _AD_HINTS) and (marker := _AD_MARKERS.search(post.text)):
        return f"ad marker {marker.group(0)!r}"
    haystack = " ".join([post.text, *post.links])
    has_links = ".me/" in haystack.lower()
    if has_links:
        invites = (m.group(0) for m in _INVITE.finditer(haystack))
        if invite := next((i for i in invites if normalize_link(i) not in post.self_refs), None):
            return f"invite link {invite}"
    named = [m.group(1) for m in _CHANNEL_LINK.finditer(haystack)] if has_links else []
    if "@" in post.text:
        named += [m.group(1) for m in _MENTION.finditer(post.text)]
    mine = own_refs | post.self_refs | ({normalize_channel_ref(post.source)} if post.source else frozenset())
    foreign = [normalize_channel_ref(n) for n in named if n.lower() not in _NOT_CHANNELS]
    foreign = [ref for ref in foreign if ref not in mine]
    if foreign and _CALL_TO_ACTION.search(post.text):
        return f"advertises {foreign[0]}"
    return None
