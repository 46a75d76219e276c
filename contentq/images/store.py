"""Generated images in SQLite and on disk: rows of `media` with origin='generated', files content-addressed.

A generated image is *attached* while its row has a post_id, *unattached* once detached (or its post was
purged). Only attached images are kept for good: `prune_images` removes unattached ones past a cutoff, and
files under the media directory that no media row (donor or generated) refers to.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from contentq.clock import iso, now, parse_duration
from contentq.errors import ContentqError, NotFoundError
from contentq.integrations.image_generator import GeneratedImage
from contentq.media import store_bytes
from contentq.runtime.context import Runtime
from contentq.store import Store

log = logging.getLogger("contentq.images")

DEFAULT_PRUNE_AGE = "7d"

POST_LOCKED_STATES = ("publishing", "published")
"""A post in these states keeps the image it has: it is (being) sent."""

_COLUMNS = "id, post_id, position, origin, kind, sha256, path, mime, size, width, height, prompt, backend, created_at"


def get_image(store: Store, image_id: int) -> dict[str, Any]:
    row = store.one(f"SELECT {_COLUMNS} FROM media WHERE id = ?", (image_id,))
    if row is None:
        raise NotFoundError(f"no image {image_id}; `contentq images list` shows the generated images")
    if row["origin"] != "generated":
        raise ContentqError(
            f"media {image_id} is a donor file of post {row['post_id']}, not a generated image; "
            "`contentq images list` shows the generated ones"
        )
    return row


def list_images(
    store: Store, *, unattached: bool = False, post_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    where = ["m.origin = 'generated'"]
    params: list[Any] = []
    if unattached:
        where.append("m.post_id IS NULL")
    if post_id is not None:
        where.append("m.post_id = ?")
        params.append(post_id)
    params.append(limit)
    return store.query(
        f"SELECT m.id, m.post_id, p.state AS post_state, m.backend, m.mime, m.size, m.width, m.height, m.prompt,"
        f" m.path, m.sha256, m.created_at FROM media AS m LEFT JOIN posts AS p ON p.id = m.post_id"
        f" WHERE {' AND '.join(where)} ORDER BY m.created_at DESC, m.id DESC LIMIT ?",
        params,
    )


def generated_for_post(store: Store, post_id: int) -> list[dict[str, Any]]:
    return store.query(
        f"SELECT {_COLUMNS} FROM media WHERE origin = 'generated' AND post_id = ? ORDER BY id", (post_id,)
    )


@dataclass
class Attached:
    image_id: int
    relpath: str
    replaced: list[dict[str, Any]] = field(default_factory=list)
    attached: bool = True  # False when the post went to publishing meanwhile: the image stays unattached


def save_generated(runtime: Runtime, post_id: int | None, image: GeneratedImage, prompt: str) -> Attached:
    """Store the file, add its media row, and attach it to the post in place of an earlier generated image.

    The replaced rows are deleted (their files too, unless another row uses the same file).
    """
    media_dir = runtime.settings.media_dir
    stored = store_bytes(media_dir, image.data, mime=image.mime, ext=image.ext)
    # Same bytes as an old unreferenced file: freshen it so a concurrent prune does not take it.
    os.utime(stored.path(media_dir))
    store = runtime.store
    with store.transaction() as conn:
        attach = post_id is not None
        if post_id is not None:
            state = conn.execute("SELECT state FROM posts WHERE id = ?", (post_id,)).fetchone()
            attach = state is not None and state[0] not in POST_LOCKED_STATES
        replaced: list[dict[str, Any]] = []
        if attach:
            cursor = conn.execute(
                f"SELECT {_COLUMNS} FROM media WHERE origin = 'generated' AND post_id = ?", (post_id,)
            )
            columns = [c[0] for c in cursor.description]
            replaced = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
        cursor = conn.execute(
            "INSERT INTO media (post_id, position, origin, kind, sha256, path, mime, size, width, height, prompt,"
            " backend, created_at) VALUES (?, 0, 'generated', 'photo', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (post_id if attach else None, stored.sha256, stored.relpath, image.mime, stored.size, image.width,
             image.height, prompt, image.backend, iso()),
        )  # fmt: skip
        image_id = int(cursor.lastrowid or 0)
        # Insert first, then delete: the new image never takes the id of the one it replaces.
        conn.executemany("DELETE FROM media WHERE id = ?", [(r["id"],) for r in replaced])
    for row in replaced:
        remove_file_if_unused(store, media_dir, row["path"])
    return Attached(image_id=image_id, relpath=stored.relpath, replaced=replaced, attached=attach)


def remove_file_if_unused(store: Store, media_dir: Path, relpath: str | None) -> bool:
    """Delete a media file no row refers to any more; True when a file went."""
    if not relpath:
        return False
    if store.scalar("SELECT 1 FROM media WHERE path = ? LIMIT 1", (relpath,)):
        return False  # content-addressed: the same bytes may belong to another row
    path = media_dir / relpath
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def delete_image(runtime: Runtime, image_id: int, *, detach: bool = False) -> dict[str, Any]:
    """Delete a generated image; an attached one only with `detach` (and never while its post is being sent)."""
    store = runtime.store
    row = get_image(store, image_id)
    if row["post_id"] is not None:
        post = store.one("SELECT id, state FROM posts WHERE id = ?", (row["post_id"],))
        if not detach:
            raise ContentqError(
                f"image {image_id} is attached to post {row['post_id']}; "
                f"`contentq images delete {image_id} --detach` removes it from the post and deletes it"
            )
        if post is not None and post["state"] in POST_LOCKED_STATES:
            raise ContentqError(f"post {row['post_id']} is {post['state']}; its image cannot be removed from it now")
    with store.transaction() as conn:
        cursor = conn.execute("DELETE FROM media WHERE id = ? AND origin = 'generated'", (image_id,))
        if cursor.rowcount != 1:
            raise ContentqError(f"image {image_id} changed while deleting it; look at `contentq images list`")
    file_removed = remove_file_if_unused(store, runtime.settings.media_dir, row["path"])
    log.info(
        "deleted image %s (%s%s)", image_id,
        f"detached from post {row['post_id']}" if row["post_id"] is not None else "unattached",
        ", file removed" if file_removed else "",
    )  # fmt: skip
    return {**row, "file_removed": file_removed}


# -- pruning -------------------------------------------------------------------------------------


def _as_timedelta(older_than: timedelta | str | float | None) -> timedelta:
    if older_than is None:
        return parse_duration(DEFAULT_PRUNE_AGE)
    if isinstance(older_than, timedelta):
        return older_than
    if isinstance(older_than, (int, float)):
        return timedelta(seconds=float(older_than))
    return parse_duration(older_than)


def _orphan_files(store: Store, media_dir: Path, cutoff_ts: float) -> list[tuple[str, int]]:
    """Files under media_dir, older than the cutoff, that no media row refers to (incl. stale temp files)."""
    if not media_dir.is_dir():
        return []
    referenced = {r["path"] for r in store.query("SELECT DISTINCT path FROM media WHERE path IS NOT NULL")}
    found: list[tuple[str, int]] = []
    for dirpath, _dirs, files in os.walk(media_dir):
        for name in files:
            path = Path(dirpath) / name
            relpath = path.relative_to(media_dir).as_posix()
            if relpath in referenced:
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            # Only files older than the cutoff: a collect may have written a file and not yet its row.
            if stat.st_mtime < cutoff_ts:
                found.append((relpath, stat.st_size))
    return sorted(found)


def prune_images(
    runtime: Runtime, older_than: timedelta | str | float | None = DEFAULT_PRUNE_AGE, dry_run: bool = False
) -> dict[str, Any]:
    """Delete unattached generated images created before now - older_than, and unreferenced media files
    older than that; with dry_run only report what would go. The purge command calls this."""
    age = _as_timedelta(older_than)
    cutoff = now() - age
    store = runtime.store
    media_dir = runtime.settings.media_dir
    stale = store.query(
        f"SELECT {_COLUMNS} FROM media WHERE origin = 'generated' AND post_id IS NULL AND created_at < ? ORDER BY id",
        (iso(cutoff),),
    )
    summary: dict[str, Any] = {
        "dry_run": dry_run,
        "cutoff": iso(cutoff),
        "deleted": 0,
        "images": [r["id"] for r in stale],
        "files": 0,
        "orphan_files": [],
        "bytes": 0,
    }
    if dry_run:
        # What would go: the stale rows' files that nothing else uses, plus the orphans.
        stale_ids = {r["id"] for r in stale}
        files = set()
        for r in stale:
            others = store.query("SELECT id FROM media WHERE path = ?", (r["path"],)) if r["path"] else []
            if r["path"] and all(o["id"] in stale_ids for o in others) and (media_dir / r["path"]).exists():
                files.add(r["path"])
                summary["bytes"] += (media_dir / r["path"]).stat().st_size
        orphans = _orphan_files(store, media_dir, cutoff.timestamp())
        summary["deleted"] = len(stale)
        summary["orphan_files"] = [p for p, _ in orphans]
        summary["files"] = len(files) + len(orphans)
        summary["bytes"] += sum(size for _, size in orphans)
        return summary
    deleted_ids: list[int] = []
    for row in stale:
        with store.transaction() as conn:
            # Re-check: the image may have been attached since it was listed.
            cursor = conn.execute(
                "DELETE FROM media WHERE id = ? AND origin = 'generated' AND post_id IS NULL", (row["id"],)
            )
            if cursor.rowcount != 1:
                continue
        deleted_ids.append(row["id"])
        size = (media_dir / row["path"]).stat().st_size if row["path"] and (media_dir / row["path"]).exists() else 0
        if remove_file_if_unused(store, media_dir, row["path"]):
            summary["files"] += 1
            summary["bytes"] += size
        log.info("pruned unattached image %s (created %s)", row["id"], row["created_at"])
    orphans = _orphan_files(store, media_dir, cutoff.timestamp())
    for relpath, size in orphans:
        try:
            (media_dir / relpath).unlink()
        except FileNotFoundError:
            continue
        summary["orphan_files"].append(relpath)
        summary["files"] += 1
        summary["bytes"] += size
        log.info("pruned media file %s: no media row refers to it", relpath)
    _remove_empty_dirs(media_dir)
    summary["deleted"] = len(deleted_ids)
    summary["images"] = deleted_ids
    return summary


def _remove_empty_dirs(media_dir: Path) -> None:
    if not media_dir.is_dir():
        return
    for child in media_dir.iterdir():
        if child.is_dir():
            with contextlib.suppress(OSError):
                child.rmdir()  # only succeeds when empty
