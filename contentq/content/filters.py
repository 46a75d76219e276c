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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import regex

from contentq.content import ads
from contentq.content.refs import normalize_channel_ref


class Filters(Protocol):
    """The fields the filters read from the route's config model (routes.Filters); a Protocol, since routes
    imports content and content must not import it back."""

    @property
    def stop_words(self) -> Sequence[str]: ...
    @property
    def regexes(self) -> Sequence[str]: ...
    @property
    def min_length(self) -> int: ...
    @property
    def max_length(self) -> int | None: ...
    @property
    def media_types(self) -> Sequence[str] | None: ...
    @property
    def skip_forwards(self) -> bool: ...
    @property
    def skip_ads(self) -> bool: ...


REGEX_TIMEOUT_S = 0.25
"""Longest time one route regex may search one post."""


@dataclass(frozen=True)
class PostFacts:
    """What the filters look at."""

    text: str  # the visible text (caption) without markup
    kind: str  # text | photo | video | document | album | audio | voice | sticker
    is_forward: bool = False
    links: tuple[str, ...] = ()  # link targets: <a href> and bare URLs
    source: str = ""  # the donor channel, '@name'
    self_refs: frozenset[str] = frozenset()  # the donor's own channels and chat (its learned footer's)
    link_lines: tuple[tuple[str, str], ...] = ()  # (link target, the line it stands on), where known


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
    """Why the post is an ad (the signal that decided, content/ads.py), or None.

    The donor's own channels (itself, the channels and chats of its learned footer) and the route's own are
    not advertised: a donor promoting itself is not an ad."""
    mine = own_refs | post.self_refs | ({normalize_channel_ref(post.source)} if post.source else frozenset())
    placed = dict(post.link_lines)
    links = [(link, placed.get(link)) for link in dict.fromkeys([*post.links, *placed])]
    return ads.verdict(ads.signals(post.text, links, mine))
