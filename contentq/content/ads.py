"""Is a post an ad? Weighted signals, so that a word about advertising in a news story or a source credit does
not filter a post, while a labelled ad is caught whatever else it says.

Strong signals (each enough on its own):
- an ad label: "Реклама", "На правах рекламы", "Партнёрский материал", "Sponsored", "Advertisement",
  "Промо" … standing as a label: alone on its line, opening a line ("Реклама. ООО …", "На правах рекламы …"),
  or in brackets ("(реклама)");
- `erid` with its token (Russian ad marking): in the text or in a link's address (`…?erid=2Vtzqx…`);
- an ad hashtag: #реклама, #промо, #ad, #promo, #sponsored, #партнёр… ;
- "This post is sponsored by …", "Рекламодатель: …";
- a call to subscribe/join ("подписывайтесь", "join us" …) with a channel, chat or invite link that is not the
  donor's own (nor the route's): the donor promoting itself is not an ad. When the line calls that channel
  "наш"/"our" the call is only a weak signal (WEAK_INVITE).

Weak signals (WEAK_*), which filter only together (their sum reaching THRESHOLD): a foreign invite link, a link
to another channel, an @mention (never one credited as a source: "Источник: @rian_ru", "via @x"), a word about
advertising in running prose ("Реклама в Telegram подорожала"), `erid` without a token, a promo code, an INN.

`verdict` names the signal that decided, for the post's `state_reason` ("skip_ads: ad marker '#промо'").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from contentq.content.html import find_urls, normalize_link, parse_html, split_lines
from contentq.content.refs import normalize_channel_ref

THRESHOLD = 1.0
"""A post whose signals weigh this much is an ad."""

STRONG = 1.0
WEAK_INVITE = 0.5
WEAK_ERID_WORD = 0.5
WEAK_INN = 0.5
WEAK_CHANNEL_LINK = 0.3
WEAK_AD_WORD = 0.3
WEAK_PROMO_CODE = 0.3
WEAK_MENTION = 0.2

_LABEL_WORDS = (
    r"реклама|рекламная\s+запись|рекламный\s+пост|на\s+правах\s+рекламы|партн[её]рский\s+(?:материал|пост)"
    r"|материал\s+партн[её]ра|спонсорский\s+(?:материал|пост)|промо|ad|ads|advert|advertisement|advertorial"
    r"|sponsored(?:\s+(?:post|content))?|paid\s+(?:partnership|promotion|post)|promoted|partner\s+content"
)
_LABEL_LINE = re.compile(rf"(?i)^[\W_]*((?:{_LABEL_WORDS}))[\s.:!|—–\-·,]*$")
"""A line that is nothing but the label ("Реклама", "— Sponsored —")."""
_LABEL_OPENING = re.compile(
    rf"(?i)^[^\w#]*((?:{_LABEL_WORDS}))(?:\s*[.:|—–·(]|\s+-\s|\s+(?=(?:ООО|ОАО|АО|ИП|ПАО|erid|инн)(?!\w)))"
)
"""A line opening with the label and a separator ("Реклама. ООО «Ромашка»", "Sponsored: …", "Промо — …")."""
_LABEL_PHRASE_OPENING = re.compile(
    r"(?i)^[^\w#]*(на\s+правах\s+рекламы|партн[её]рский\s+(?:материал|пост)|материал\s+партн[её]ра"
    r"|спонсорский\s+(?:материал|пост)|рекламн(?:ая|ый)\s+(?:запись|пост|интеграция)|sponsored\s+(?:post|content)"
    r"|paid\s+partnership|advertorial)(?!\w)"
)
"""A line opening with a phrase that is only ever a label ("На правах рекламы …", "Партнёрский материал о …")."""
_LABEL_BRACKETED = re.compile(rf"(?i)[(\[]\s*((?:{_LABEL_WORDS}))\s*[)\]]")
_SPONSORED_BY = re.compile(
    r"(?i)\b(?:this|today's|the)\s+(?:post|video|episode|issue|newsletter|message|article)\s+is\s+"
    r"(?:sponsored|brought to you|paid for)\s+by\b|(?<!\w)рекламодатель\s*[:—\-]"
)
_HASHTAG = re.compile(
    r"(?i)(?<![\w#])#(реклама|рекламa|промо|промопост|ad|ads|advert|advertising|advertisement|promo|sponsored"
    r"|sponsor|спонсор\w*|партн[её]р\w*|нативн\w*|paid)(?!\w)"
)
_ERID = re.compile(r"(?i)(?<![\w/])erid\s*[:=]\s*([\w-]{4,})|(?<![\w/])erid\s+((?=[A-Za-z0-9]*\d)[A-Za-z0-9]{6,})")
_ERID_WORD = re.compile(r"(?i)(?<![\w/])erid(?!\w)")
_ERID_IN_LINK = re.compile(r"(?i)[?&#;]erid=[\w-]+")
_AD_WORD = re.compile(
    r"(?i)(?<!\w)(реклам\w*|спонсор\w*|партн[её]рск\w+\s+материал\w*|advertis\w*|sponsor\w*|advertorial)(?!\w)"
)
_PROMO_CODE = re.compile(r"(?i)(?<!\w)(промокод\w*|promo\s*code\w*|купон\w*|coupon)(?!\w)")
_INN = re.compile(r"(?i)(?<!\w)инн\s*:?\s*\d{10,12}(?!\d)")

_CALL = re.compile(
    r"(?i)(?<!\w)(?:подпи(?:шись|шитесь|сывайся|сывайтесь)|вступа(?:й|йте)|вступи(?:те)?|присоединя(?:йся|йтесь)"
    r"|переходи(?:те)?|перейди(?:те)?|заходи(?:те)?|жми(?:те)?|смотри(?:те)?\s+(?:канал|в\s+канале)"
    r"|subscribe|join\s+(?:us|our|my|the\s+(?:channel|chat|group)|now|today)|follow\s+(?:us|our|the\s+channel|@)"
    r"|check\s+out)(?!\w)"
)
"""A call to subscribe or join, in the imperative: "вступает в силу" or "переходит" in a news story is none."""
_OWN = re.compile(r"(?i)(?<!\w)(?:наш\w*|мой|моём|моем|мою|our|my)(?!\w)")
"""A line calling a channel or chat "ours": the donor's own, even when its footer was not learned."""
_CREDIT = re.compile(
    r"(?i)(?<!\w)(?:источник\w*|по\s+данным|со\s+ссылкой\s+на|фото|видео|автор|сообщает|пишет|пишут|цитата"
    r"|source|via|photo|credit|reports?|according\s+to|h/t|by)\W*$|©\s*$"
)
"""What precedes a mention that credits a source, on its line: "Источник: @rian_ru", "Фото: @x", "via @x"."""

_INVITE = re.compile(r"(?i)(?:https?://)?(?:t|telegram)\.me/(?:\+|joinchat/)[\w-]+")
_CHANNEL_LINK = re.compile(r"(?i)(?:https?://)?(?:t|telegram)\.me/(?:s/)?([a-z]\w{3,31})\b")
_MENTION = re.compile(r"(?<![\w/@])@([a-zA-Z]\w{3,31})\b")
_NOT_CHANNELS = frozenset({"share", "addstickers", "proxy", "socks", "iv", "addlist", "boost", "c"})


@dataclass(frozen=True)
class Signal:
    weight: float
    reason: str  # how it reads in the post's state_reason: "ad marker '#промо'", "advertises @x"


@dataclass(frozen=True)
class Ref:
    """A channel or chat the post points at: '@name' or an invite link, and the line it stands on."""

    ref: str
    shown: str  # as the post shows it
    row: int | None  # its line; None: a link whose place in the text is not known
    at: int = -1  # where it starts in its line (-1: somewhere in it, the anchor of a link)
    kind: str = "mention"  # mention | link | invite


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 40 else text[:39] + "…")


def _line_starts(lines: Sequence[str]) -> list[tuple[int, Signal]]:
    found: list[tuple[int, Signal]] = []
    offset = 0
    for line in lines:
        for pattern in (_LABEL_LINE, _LABEL_OPENING, _LABEL_PHRASE_OPENING):
            match = pattern.match(line)
            if match is not None:
                found.append((offset, Signal(STRONG, f"ad marker {_quote(match.group(1))}")))
                break
        offset += len(line) + 1
    return found


def label_signals(text: str, low: str) -> list[Signal]:
    """Ad labels, hashtags, erid and "sponsored by" statements, in the order they stand in the text. `low` is
    the text in lower case: each pattern runs only when the words it needs are there (most posts have none)."""
    found = _line_starts(text.split("\n"))
    searches = [
        (_LABEL_BRACKETED, "(" in low or "[" in low),
        (_HASHTAG, "#" in low),
        (_SPONSORED_BY, any(w in low for w in ("sponsored", "brought to you", "paid for", "рекламодател"))),
    ]
    for pattern, wanted in searches:
        if wanted:
            found += [(m.start(), Signal(STRONG, f"ad marker {_quote(m.group(0))}")) for m in pattern.finditer(text)]
    if "erid" in low and (erid := _ERID.search(text)) is not None:  # its token differs per ad: named erid only
        found.append((erid.start(), Signal(STRONG, "ad marker 'erid'")))
    found.sort(key=lambda item: item[0])
    return [signal for _, signal in found]


def link_signals(links: Iterable[str]) -> list[Signal]:
    """erid in a link's address: an ad whose only marking is in its link."""
    return [Signal(STRONG, "ad marker 'erid' in a link") for link in links if _ERID_IN_LINK.search(link)][:1]


def link_places(html: str) -> list[tuple[str, str]]:
    """Every link of a post (an <a> target or a bare URL) with the line of text it stands on."""
    places: list[tuple[str, str]] = []
    if "<" not in html and "&" not in html:  # plain text: no need to parse
        return list(dict.fromkeys((url, line) for line in html.split("\n") for _, _, url in find_urls(line)))
    for line in split_lines(parse_html(html).runs):
        text = "".join(r.text for r in line)
        for run in line:
            places += [(tag.href, text) for tag in run.tags if tag.href]
            if not run.has("code", "pre"):
                places += [(url, text) for _, _, url in find_urls(run.text)]
    return list(dict.fromkeys(places))


def refs(links: Sequence[tuple[str, str | None]], lines: Sequence[str]) -> list[Ref]:
    """The channels and chats a post names: @mentions not credited as a source, t.me links and invite links
    (each with its place when known). `links` are (target, line of its anchor or None)."""
    found: list[Ref] = []
    for row, line in enumerate(lines):
        for match in _MENTION.finditer(line):
            if not _CREDIT.search(line[: match.start()]):
                found.append(Ref(normalize_channel_ref(match.group(1)), match.group(0), row, match.start()))
    for target, anchor in links:
        place = next((i for i, line in enumerate(lines) if line == anchor or target.lower() in line.lower()), None)
        at = lines[place].lower().find(target.lower()) if place is not None else -1
        if (invite := _INVITE.search(target)) is not None:
            found.append(Ref(normalize_link(invite.group(0)), invite.group(0), place, at, "invite"))
        elif (channel := _CHANNEL_LINK.search(target)) is not None and channel.group(1).lower() not in _NOT_CHANNELS:
            found.append(Ref(normalize_channel_ref(channel.group(1)), target, place, at, "link"))
    return found


_SENTENCE_END = re.compile(r"[.!?…](?:\s|$)")
_POINTING = (":", "👇", "⬇", "↓", "→")


def _called(ref: Ref, lines: Sequence[str], text: str) -> bool:
    """Whether a call to subscribe or join is about this channel: in its sentence, or on the line just above
    ending in a colon or an arrow ("Подписывайтесь:" then "@channel"); anywhere for a link whose place is
    not known."""
    if ref.row is None:
        return _CALL.search(text) is not None
    line = lines[ref.row]
    for match in _CALL.finditer(line):
        if ref.at < 0:
            return True
        between = line[match.end() : ref.at] if match.start() < ref.at else line[ref.at : match.start()]
        if not _SENTENCE_END.search(between):
            return True
    above = lines[ref.row - 1].strip().rstrip("\ufe0f") if ref.row > 0 else ""
    return bool(above) and above.endswith(_POINTING) and _CALL.search(above) is not None


def _named(ref: Ref) -> str:
    return f"invite link {ref.shown}" if ref.kind == "invite" else f"advertises {ref.ref}"


def promotion_signals(text: str, found: list[Ref], mine: frozenset[str]) -> list[Signal]:
    """A call to subscribe or join about a channel or chat that is not the donor's: strong, or weak when its
    line calls it "наш"/"our" (self-promotion whose footer was not learned, or an ad in the first person:
    only a label or more signals then make it an ad). Without the call a foreign invite, channel link or
    mention is weak."""
    foreign = [r for r in found if r.ref not in mine]
    if not foreign:
        return []
    lines = text.split("\n")
    called = [r for r in foreign if _called(r, lines, text)]
    if called:
        theirs = [r for r in called if r.row is None or not _OWN.search(lines[r.row])]
        if theirs:
            return [Signal(STRONG, _named(theirs[0]))]
        return [Signal(WEAK_INVITE, f"{_named(called[0])} (called ours)")]
    out: list[Signal] = []
    weights = {"invite": WEAK_INVITE, "link": WEAK_CHANNEL_LINK, "mention": WEAK_MENTION}
    for kind, weight in weights.items():
        if ref := next((r for r in foreign if r.kind == kind), None):
            out.append(Signal(weight, _named(ref) if kind == "invite" else f"{kind} of {ref.ref}"))
    return out


def word_signals(text: str, low: str, strong_found: bool) -> list[Signal]:
    """Weak hints in the prose: a word about advertising, erid without its token, a promo code, an INN."""
    out: list[Signal] = []
    hints = [  # pattern, weight, name, words it needs, whether a label found makes it redundant
        (_AD_WORD, WEAK_AD_WORD, "the word", ("реклам", "спонсор", "партн", "advertis", "sponsor"), True),
        (_ERID_WORD, WEAK_ERID_WORD, "the word", ("erid",), True),
        (_PROMO_CODE, WEAK_PROMO_CODE, "promo code", ("промокод", "promo", "купон", "coupon"), False),
        (_INN, WEAK_INN, "INN", ("инн",), False),
    ]
    for pattern, weight, name, needs, redundant in hints:
        if strong_found and redundant:
            continue
        if any(n in low for n in needs) and (match := pattern.search(text)):
            out.append(Signal(weight, f"{name} {_quote(match.group(0))}"))
    return out


def signals(text: str, links: Sequence[tuple[str, str | None]], mine: frozenset[str]) -> list[Signal]:
    """Every ad signal of a post: its visible text, its links (target, the line of the anchor or None) and the
    channels that are its own (the donor, its footer's channels, the route's)."""
    low = text.lower()
    strong = label_signals(text, low) + link_signals(target for target, _ in links)
    found = refs(links, text.split("\n") if "@" in text or links else [])
    return strong + promotion_signals(text, found, mine) + word_signals(text, low, bool(strong))


def verdict(found: list[Signal]) -> str | None:
    """The reason the post is an ad (the first strong signal, else the weak ones that add up), or None."""
    strong = next((s for s in found if s.weight >= THRESHOLD), None)
    if strong is not None:
        return strong.reason
    score = sum(s.weight for s in found)
    if score >= THRESHOLD:
        return "weak signals together: " + ", ".join(s.reason for s in found) + f" (score {score:.1f})"
    return None
