"""The outbox publisher: each rendered post written to a folder instead of Telegram.

`publisher = "outbox"` on a route, or `contentq publish ID --dry-run` for any post, writes
`<outbox_dir>/<route>/<post_id>/` with `post.html` (a page that shows the post as it would be sent, part
by part), the media files, and `meta.json` (what would be sent: parts, media, limits, times). A rewrite
of the folder replaces it whole, so a reader never sees half of one.
"""

from __future__ import annotations

import html as htmllib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contentq.clock import iso
from contentq.content.html import visible_len_utf16
from contentq.content.preview import PreviewMedia, PreviewPart, asset, render_preview
from contentq.integrations.telegram.gateway import OutgoingMedia
from contentq.publish.render import Rendered
from contentq.routes import Route
from contentq.settings import Settings

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #e5ebf1; margin: 2rem; }}
.meta {{ color: #64748b; font-size: 12px; margin-bottom: 1rem; }}
{css}
</style>
</head>
<body>
<div class="meta">post {post_id} · route {route} · target {target} · {note}</div>
{preview}
<script>
{js}
</script>
</body>
</html>
"""


_ATTRIBUTES = ("width", "height", "duration", "title", "performer", "file_name", "emoji")
"""What a media is sent with, in meta.json when known; `spoiler` is always there."""


def preview_time(post: dict[str, Any]) -> str:
    """The time on the bubbles: the post's slot (or publication) in UTC, else now."""
    stamp = post.get("published_at") or post.get("scheduled_at") or iso()
    return f"{stamp[:10]} {stamp[11:16]} UTC"


def _preview_media(src: str, m: OutgoingMedia) -> PreviewMedia:
    """A media as the preview shows it: what it is sent as, with its attributes."""
    return PreviewMedia(
        src, m.kind, m.width, m.height, name=m.name, duration=m.duration, spoiler=m.spoiler, title=m.title,
        performer=m.performer, emoji=m.emoji, mime=m.mime,
    )  # fmt: skip


def preview_parts(rendered: Rendered, src: Callable[[dict[str, Any]], str]) -> list[PreviewPart]:
    """The rendered parts for the Telegram preview; `src` names each media row's file for the page."""
    by_path = {str(item["file"]): item for item in rendered.media}
    parts = []
    for part in rendered.parts:
        items = []
        for m in part.media:
            row = by_path.get(str(m.path), {"file": m.path, "kind": m.kind})
            items.append(_preview_media(src(row), m))
        parts.append(PreviewPart(part.html, items))
    return parts


def _published_in(folder: Path) -> bool:
    """The outbox publisher's own folder of a published post (its meta.json says it was no dry run)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("dry_run") is False


def write_outbox(
    settings: Settings, post: dict[str, Any], route: Route, rendered: Rendered, *, dry_run: bool = False
) -> Path:
    """Write the post's folder and return it. A dry run never replaces what the outbox publisher published: for
    a post published there, it goes to `<id>.dry-run` beside it."""
    folder = settings.outbox_dir / route.name / str(post["id"])
    if dry_run and _published_in(folder):
        folder = folder.with_name(f"{post['id']}.dry-run")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{post['id']}-"))
    try:
        names: dict[str, str] = {}
        media_meta = []
        for number, item in enumerate(rendered.media, 1):
            source = Path(item["file"])
            name = f"{number:02d}-{item['kind']}{source.suffix}"
            shutil.copyfile(source, staging / name)
            names[str(source)] = name
            media_meta.append(
                {
                    "file": name,
                    "kind": item["kind"],  # what it is sent as: photo, video, video_note, animation, voice, sticker …
                    "mime": item.get("mime"),
                    "size": item.get("size"),
                    "sha256": item.get("sha256"),
                    "origin": item.get("origin"),
                    "spoiler": bool(item.get("spoiler")),
                    **{key: item[key] for key in _ATTRIBUTES if item.get(key)},
                }
            )
        parts_meta = []
        for number, part in enumerate(rendered.parts, 1):
            files = [names.get(str(m.path), m.path.name) for m in part.media]
            parts_meta.append(
                {
                    "number": number,
                    "kind": part.kind,
                    "html": part.html,
                    "length": visible_len_utf16(part.html),
                    "media": files,
                }
            )
        meta = {
            "post_id": post["id"],
            "route": route.name,
            "target": route.target,
            "publisher": "outbox",
            "dry_run": dry_run,
            "rendered_at": iso(),
            "state": post.get("state"),
            "scheduled_at": post.get("scheduled_at"),
            "title": post.get("title"),
            "source": post.get("source"),
            "source_msg_id": post.get("source_msg_id"),
            "caption_limit": rendered.caption_limit,
            "caption_moved": rendered.caption_moved,
            "long_text": rendered.long_text,
            "truncated": rendered.truncated,
            "custom_emoji": rendered.custom_emoji,
            "notes": rendered.notes,
            "html": rendered.html,
            "parts": parts_meta,
            "media": media_meta,
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        page = _PAGE.format(
            title=htmllib.escape(post.get("title") or f"post {post['id']}"),
            post_id=post["id"],
            route=htmllib.escape(route.name),
            target=htmllib.escape(route.target),
            note="dry run" if dry_run else "outbox publisher",
            css=asset("preview.css"),
            js=asset("preview.js"),
            preview=render_preview(
                preview_parts(rendered, lambda row: names.get(str(row["file"]), Path(str(row["file"])).name)),
                channel=route.target,
                time_label=preview_time(post),
            ),
        )
        (staging / "post.html").write_text(page, encoding="utf-8")
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old-{staging.name}")
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def write_versions(folder: Path, versions: list[dict[str, Any]], media: list[dict[str, Any]]) -> None:
    """Each destination's version (X's thread, Instagram's caption …) beside the Telegram preview:
    `destinations.html` (with the images it names) and `destinations.json`."""
    from contentq.publish.preview_destinations import file_names, versions_page

    wanted = file_names(versions)
    for item in media:
        source = Path(item["file"])
        if source.name in wanted:
            shutil.copyfile(source, folder / source.name)
    (folder / "destinations.json").write_text(
        json.dumps(versions, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    page = versions_page(f"{folder.name}: each destination's version", versions, lambda name: name)
    (folder / "destinations.html").write_text(page, encoding="utf-8")
