"""Each destination's version of a post, as that platform would show it: for the outbox (`contentq publish ID
--dry-run` writes `destinations.html` and `destinations.json`) and the web panel's post page.

X: the tweets of the thread, each with its weighted length and its images; Instagram: the caption with its
length, the images (or the card it would get); Telegram: the Telegram preview itself (post.html).
"""

from __future__ import annotations

import html as htmllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contentq.content.utf16 import utf16_len
from contentq.content.xtext import weighted_length
from contentq.publish import PublishError
from contentq.publish.adapt import INSTAGRAM_CAPTION_MAX, adapt_for_instagram, adapt_for_x
from contentq.publish.render import post_html, post_media
from contentq.routes import Route
from contentq.settings import Settings
from contentq.store import Store

_CSS = """
.dest { background: #fff; border-radius: 12px; padding: 12px 16px; margin: 12px 0; max-width: 560px;
        font: 15px/1.4 system-ui, sans-serif; }
.dest h3 { margin: 0 0 8px; font-size: 14px; color: #334155; }
.tweet { border-left: 3px solid #1d9bf0; padding: 6px 10px; margin: 8px 0; white-space: pre-wrap; }
.caption { white-space: pre-wrap; }
.meta { color: #64748b; font-size: 12px; }
.notes { color: #92400e; font-size: 12px; }
"""


def destination_versions(store: Store, settings: Settings, post: dict[str, Any], route: Route) -> list[dict[str, Any]]:
    """One entry per destination of the route: what it is sent (see the module doc)."""
    try:
        media = post_media(store, settings, int(post["id"]))
    except PublishError:
        media = []
    html = post_html(post)
    out: list[dict[str, Any]] = []
    for dest in route.destination_list:
        entry: dict[str, Any] = {"destination": dest.key, "platform": dest.platform}
        if dest.platform == "x":
            plan = adapt_for_x(html, media, route.x)
            entry["tweets"] = [
                {"text": t.text, "weight": weighted_length(t.text), "images": [p.name for p in t.images]}
                for t in plan.tweets
            ]
            entry["notes"] = plan.notes
        elif dest.platform == "instagram":
            ig = adapt_for_instagram(html, media, route.instagram)
            entry.update(
                caption=ig.caption, length=utf16_len(ig.caption), images=[p.name for p in ig.images],
                card=ig.needs_card, notes=ig.notes,
            )  # fmt: skip
        else:
            entry["notes"] = ["as the Telegram preview shows it"]
        out.append(entry)
    return out


def render_versions(versions: list[dict[str, Any]], src: Callable[[str], str] = lambda name: name) -> str:
    """The versions as HTML (escaped), for the outbox page and the panel; `src` names an image file's URL."""
    esc = htmllib.escape
    blocks: list[str] = []
    for v in versions:
        body: list[str] = [f"<h3>{esc(v['destination'])}</h3>"]
        if v["platform"] == "x":
            for i, tweet in enumerate(v["tweets"], 1):
                images = "".join(f'<img src="{esc(src(n))}" alt="" width="120">' for n in tweet["images"])
                body.append(
                    f'<div class="tweet">{esc(tweet["text"])}{images}'
                    f'<div class="meta">tweet {i}/{len(v["tweets"])} · {tweet["weight"]}/280</div></div>'
                )
        elif v["platform"] == "instagram":
            images = "".join(f'<img src="{esc(src(n))}" alt="" width="160">' for n in v["images"])
            card = '<div class="meta">an image card made from the text</div>' if v["card"] else ""
            body.append(
                f'{images}{card}<div class="caption">{esc(v["caption"])}</div>'
                f'<div class="meta">{v["length"]}/{INSTAGRAM_CAPTION_MAX} characters</div>'
            )
        body += [f'<div class="notes">{esc(n)}</div>' for n in v.get("notes") or []]
        blocks.append(f'<section class="dest" data-destination="{esc(v["destination"])}">{"".join(body)}</section>')
    return "\n".join(blocks)


def versions_page(title: str, versions: list[dict[str, Any]], src: Callable[[str], str]) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{htmllib.escape(title)}</title>'
        f"<style>body {{ background: #e5ebf1; margin: 2rem; }}{_CSS}</style></head><body>"
        f"{render_versions(versions, src)}</body></html>\n"
    )


def versions_css() -> str:
    return _CSS


def file_names(versions: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for v in versions:
        for tweet in v.get("tweets") or []:
            names.update(tweet["images"])
        names.update(v.get("images") or [])
    return {Path(n).name for n in names}
