"""What happens to a post after each step. The publish area owns the decisions made here."""

from __future__ import annotations

from contentq.runtime.context import Runtime


def on_rewritten(runtime: Runtime, post_id: int) -> str:
    """Called by the rewrite job once a post is `rewritten`; returns the post's new state.

    Until scheduling exists, `rewritten` is where a post rests.
    """
    return "rewritten"


def on_image_done(runtime: Runtime, post_id: int, ok: bool) -> str | None:
    """Called by image generation when a post's image is attached (ok) or failed for good (not ok)."""
    return None
