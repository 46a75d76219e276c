"""Bidirectional control characters made visible: `invoice‮gnp.exe` is read as `invoiceexe.png` unless the
right-to-left override is shown. The panel shows each as ⟨U+202E⟩ (previews, lists, the edit box); an edit
saved with the markers in it gets the characters back, so showing them never changes a post by itself."""

from __future__ import annotations

import re

BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
"""Embeddings and overrides (U+202A–U+202E), isolates (U+2066–U+2069), the LTR/RTL marks and the Arabic letter
mark (U+200E, U+200F, U+061C)."""

_CONTROL = re.compile(f"[{BIDI_CONTROLS}]")
_MARKER = re.compile("⟨U\\+(" + "|".join(f"{ord(c):04X}" for c in BIDI_CONTROLS) + ")⟩")


def show_bidi(text: str) -> str:
    """Each bidi control character as a visible ⟨U+XXXX⟩ (the text is otherwise unchanged)."""
    return _CONTROL.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)


def restore_bidi(text: str) -> str:
    """The inverse of show_bidi: the markers of an edit box back to the characters they stood for."""
    return _MARKER.sub(lambda m: chr(int(m.group(1), 16)), text)
