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
from pathlib import Path
from typing import Any

from contentq.clock import iso
from contentq.content.html import normalize_html, visible_len_utf16
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
.part {{ background: #fff; border-radius: 12px; max-width: 520px; padding: 10px 14px; margin: 0 0 10px;
         box-shadow: 0 1px 2px rgba(0,0,0,.15); }}
.media {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(120px, 1fr)); gap: 4px; margin-bottom: 6px; }}
.media img, .media video {{ width: 100%; border-radius: 6px; }}
.text {{ white-space: pre-wrap; line-height: 1.4; }}
.meta {{ color: #64748b; font-size: 12px; margin-bottom: 1rem; }}
</style>
</head>
<body>
<div class="meta">post {post_id} · route {route} · target {target} · {note}</div>
{parts}
</body>
</html>
"""


def _media_tag(name: str, kind: str) -> str:
    src = htmllib.escape(name, quote=True)
    if kind == "photo":
        return f'<img src="{src}" alt="{src}">'
    if kind == "video":
        return f'<video src="{src}" controls></video>'
    return f'<a href="{src}">{src}</a>'


def write_outbox(
    settings: Settings, post: dict[str, Any], route: Route, rendered: Rendered, *, dry_run: bool = False
) -> Path:
    """Write the post's folder and return it."""
    folder = settings.outbox_dir / route.name / str(post["id"])
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
                    "kind": item["kind"],
                    "mime": item.get("mime"),
                    "size": item.get("size"),
                    "sha256": item.get("sha256"),
                    "origin": item.get("origin"),
                }
            )
        parts_meta = []
        sections = []
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
            media_html = "".join(_media_tag(f, m.kind) for f, m in zip(files, part.media, strict=True))
            sections.append(
                '<div class="part">'
                + (f'<div class="media">{media_html}</div>' if media_html else "")
                + (f'<div class="text">{normalize_html(part.html)}</div>' if part.html else "")  # safe links only
                + "</div>"
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
            parts="\n".join(sections),
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
