"""Telegram counts lengths and entity offsets in UTF-16 code units, not Python characters; a reader sees grapheme
clusters (a flag is two code points, a keycap three), which a cut must not split."""

from __future__ import annotations

from functools import cache

import regex

_GRAPHEME = regex.compile(r"\X")
_BREAK_CLASSES = ("CR", "LF", "Control", "Extend", "ZWJ", "SpacingMark", "Prepend", "Regional_Indicator", "L", "V", "T",
                  "LV", "LVT")  # fmt: skip
_CLASS = {name: regex.compile(rf"\p{{Grapheme_Cluster_Break={name}}}") for name in _BREAK_CLASSES}
_PICTOGRAPHIC = regex.compile(r"\p{Extended_Pictographic}")
_CONSONANT = regex.compile(r"\p{Indic_Conjunct_Break=Consonant}")
_CONJOINER = regex.compile(r"[\p{Indic_Conjunct_Break=Linker}\p{Indic_Conjunct_Break=Extend}]")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def utf16_to_index(text: str, units: int) -> int:
    """The Python index at which `units` UTF-16 code units of `text` end (never inside a surrogate pair)."""
    count = 0
    for index, char in enumerate(text):
        step = 2 if ord(char) > 0xFFFF else 1
        if count + step > units:
            return index
        count += step
    return len(text)


@cache
def _break_class(char: str) -> str:
    """The character's Grapheme_Cluster_Break property (Unicode UAX #29), "Other" for most."""
    return next((name for name, pattern in _CLASS.items() if pattern.match(char)), "Other")


@cache
def _may_join(before: str, after: str) -> bool:
    """Whether two adjacent characters may belong to one grapheme cluster (UAX #29's rules GB3–GB13); False means a
    boundary between them whatever comes before. Regional indicators and ZWJ sequences depend on more context."""
    first, second = _break_class(before), _break_class(after)
    if first == "CR":
        return second == "LF"
    if first in ("LF", "Control") or second in ("CR", "LF", "Control"):
        return False
    if second in ("Extend", "ZWJ", "SpacingMark") or first == "Prepend":
        return True
    if first == second == "Regional_Indicator":
        return True
    if _CONJOINER.match(before) and _CONSONANT.match(after):  # GB9c: a virama joins Indic consonants (क्ष)
        return True
    if first == "L":
        return second in ("L", "V", "LV", "LVT")
    if first in ("LV", "V"):
        return second in ("V", "T")
    if first in ("LVT", "T"):
        return second == "T"
    return first == "ZWJ" and _PICTOGRAPHIC.match(after) is not None


def grapheme_boundary(text: str, index: int) -> bool:
    """Whether `index` falls between two grapheme clusters (user-perceived characters: a flag, a keycap 1️⃣, a
    family emoji, a letter with its accents) of `text`, as Unicode defines them (the `regex` module's `\\X`)."""
    if index <= 0 or index >= len(text) or not _may_join(text[index - 1], text[index]):
        return True
    if _break_class(text[index - 1]) == _break_class(text[index]) == "Regional_Indicator":
        start = index - 1  # flags pair regional indicators from the first one on: count them
        while start > 0 and _break_class(text[start - 1]) == "Regional_Indicator":
            start -= 1
        return (index - start) % 2 == 0
    start = index - 1  # back to a certain boundary, then clusters up to `index`
    while start > 0 and _may_join(text[start - 1], text[start]):
        start -= 1
    for cluster in _GRAPHEME.finditer(text, start):
        end: int = cluster.end()
        if end >= index:
            return end == index
    return True
