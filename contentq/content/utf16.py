"""Telegram counts lengths and entity offsets in UTF-16 code units, not Python characters."""

from __future__ import annotations


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
