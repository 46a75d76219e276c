"""Channel references as people write them, reduced to one spelling."""

from __future__ import annotations

import re


def normalize_channel_ref(ref: str) -> str:
    """'https://t.me/Foo', 't.me/foo', '@Foo' and 'foo' are one channel: '@foo'. Numeric ids stay."""
    ref = ref.strip()
    ref = re.sub(r"^(https?://)?(www\.)?(t|telegram)\.me/", "", ref)
    if ref.lstrip("-").isdigit():
        return ref
    return "@" + ref.lstrip("@").lower()
