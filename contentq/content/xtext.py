"""X's text rules: the weighted length (twitter-text v3) and a long text split into a thread.

Weighted length, as twitter-text's v3 configuration counts it (max 280): the text in NFC; every URL weighs 23
(`transformedURLLength`), whatever its length; an emoji (a whole sequence: flags, skin tones, ZWJ families)
weighs 2; a code point in Latin, Cyrillic, Greek, Hebrew, Arabic … (U+0000–U+10FF) and a few punctuation ranges
weighs 1; any other (CJK, Japanese, Korean …) weighs 2. A bare domain X might link (`example.dev/x`) weighs at
least 23, so the count never falls short of X's.

A thread: the text is cut at paragraph breaks, else at sentence ends, else between words (never inside one), so
that each tweet weighs at most 280 with its " 2/5" number.
"""

from __future__ import annotations

import re
import unicodedata

import regex

from contentq.content.html import find_urls

MAX_WEIGHT = 280
URL_WEIGHT = 23
_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
"""Code point ranges that weigh 1 (twitter-text v3 `ranges`); everything else weighs 2."""

_GRAPHEME = regex.compile(r"\X")
_EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20e3")
_DOMAIN_LIKE = re.compile(r"(?<![\w@/.\-])(?:[\w-]+\.)+[^\W\d_]{2,24}(?:[/?#][^\s]*)?")
_SENTENCE_END = re.compile(r"[.!?…][\"'»”’)\]]*$")


def _char_weight(ch: str) -> int:
    point = ord(ch)
    return 1 if any(lo <= point <= hi for lo, hi in _LIGHT) else 2


def _plain_weight(text: str) -> int:
    total = 0
    for cluster in _GRAPHEME.findall(text):
        total += 2 if _EMOJI.search(cluster) else sum(_char_weight(ch) for ch in cluster)
    return total


def weighted_length(text: str) -> int:
    """The length X counts (see the module doc)."""
    text = unicodedata.normalize("NFC", text)
    spans = [(s, e) for s, e, _ in find_urls(text)]
    for match in _DOMAIN_LIKE.finditer(text):
        if not any(s <= match.start() < e for s, e in spans):
            spans.append((match.start(), match.end()))
    spans.sort()
    total, pos = 0, 0
    for start, end in spans:
        total += _plain_weight(text[pos:start])
        total += max(URL_WEIGHT, _plain_weight(text[start:end])) if not _has_scheme(text[start:end]) else URL_WEIGHT
        pos = end
    return total + _plain_weight(text[pos:])


def _has_scheme(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def fits(text: str, limit: int = MAX_WEIGHT) -> bool:
    return weighted_length(text) <= limit


def _sentences(paragraph: str) -> list[tuple[str, str]]:
    """(separator before, sentence) pieces of a paragraph; the separator keeps a line break as one."""
    pieces: list[tuple[str, str]] = []
    tokens = re.split(r"(\s+)", paragraph)
    current, sep_before, pending_sep = "", "", ""
    for i, token in enumerate(tokens):
        if i % 2 == 1:
            pending_sep = "\n" if "\n" in token else " "
            continue
        if not token:
            continue
        if current:
            current += pending_sep + token
        else:
            current, sep_before = token, pending_sep
        if _SENTENCE_END.search(token):
            pieces.append((sep_before, current))
            current = ""
    if current:
        pieces.append((sep_before, current))
    return pieces


def _words(sentence: str) -> list[tuple[str, str]]:
    tokens = re.split(r"(\s+)", sentence)
    out: list[tuple[str, str]] = []
    sep = ""
    for i, token in enumerate(tokens):
        if i % 2 == 1:
            sep = "\n" if "\n" in token else " "
        elif token:
            out.append((sep, token))
    return out


def _hard_cut(word: str, budget: int) -> list[str]:
    """A single word heavier than a tweet (no space in 280 characters): cut by characters, the only way."""
    out, current = [], ""
    for cluster in _GRAPHEME.findall(word):
        if current and weighted_length(current + cluster) > budget:
            out.append(current)
            current = ""
        current += cluster
    return out + ([current] if current else [])


def _pieces(text: str, budget: int) -> list[tuple[str, str]]:
    """(separator before, piece): paragraphs that fit whole, else their sentences, else their words."""
    out: list[tuple[str, str]] = []
    for p_index, paragraph in enumerate(p for p in re.split(r"\n\s*\n", text) if p.strip()):
        para_sep = "\n\n" if p_index else ""
        paragraph = paragraph.strip()
        if weighted_length(paragraph) <= budget:
            out.append((para_sep, paragraph))
            continue
        for s_index, (sep, sentence) in enumerate(_sentences(paragraph)):
            sep = para_sep if s_index == 0 else sep
            if weighted_length(sentence) <= budget:
                out.append((sep, sentence))
                continue
            for w_index, (wsep, word) in enumerate(_words(sentence)):
                wsep = sep if w_index == 0 else wsep
                if weighted_length(word) <= budget:
                    out.append((wsep, word))
                else:
                    cuts = _hard_cut(word, budget)
                    out.append((wsep, cuts[0]))
                    out.extend(("", cut) for cut in cuts[1:])
    return out


def _pack(pieces: list[tuple[str, str]], budget: int) -> list[str]:
    tweets: list[str] = []
    current = ""
    for sep, piece in pieces:
        candidate = f"{current}{sep}{piece}" if current else piece
        if weighted_length(candidate) <= budget:
            current = candidate
        else:
            tweets.append(current)
            current = piece
    if current:
        tweets.append(current)
    return [t.strip() for t in tweets if t.strip()]


def numbered(tweets: list[str]) -> list[str]:
    total = len(tweets)
    return [f"{t} {i}/{total}" if t else f"{i}/{total}" for i, t in enumerate(tweets, 1)]


def split_thread(text: str, *, limit: int = MAX_WEIGHT, numbering: bool = True, at_least: int = 1) -> list[str]:
    """The tweets of `text`: one when it fits, else a thread cut at paragraph and sentence breaks, each tweet
    weighing at most `limit` with its number (see the module doc). `at_least`: the thread has that many tweets
    (empty ones added at its end, for images that need tweets of their own), numbered with the rest."""
    text = text.strip()

    def build(budget: int) -> list[str]:
        tweets = [] if not text else [text] if weighted_length(text) <= budget else _pack(_pieces(text, budget), budget)
        return tweets + [""] * max(0, at_least - len(tweets))

    tweets = build(limit)
    if not numbering or len(tweets) <= 1:
        return tweets
    reserve = 0
    while True:
        suffix = len(f" {len(tweets)}/{len(tweets)}")
        if suffix <= reserve:
            return numbered(tweets)
        reserve = suffix
        tweets = build(limit - reserve)
