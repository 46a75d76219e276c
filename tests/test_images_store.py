"""Stored images: card generation end to end through the CLI and a worker, list/show/delete, and prune
deleting exactly the unattached and stale images and unreferenced files. Real Valkey and SQLite."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now
from contentq.errors import ContentqError
from contentq.flow import pipeline
from contentq.images.store import prune_images, save_generated
from contentq.integrations.image_generator import GeneratedImage
from contentq.media import store_bytes
from contentq.runtime.context import Runtime
from contentq.store.jobs import get_job, job_events
from tests.conftest import drain

runner = CliRunner()


@pytest.fixture
def image_done(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    calls: list[tuple[int, bool]] = []
    monkeypatch.setattr(pipeline, "on_image_done", lambda rt, post_id, ok: calls.append((post_id, ok)))
    return calls


def insert_post(rt: Runtime, *, state: str = "rewritten", title: str | None = "Новости дня",
                route: str = "news") -> int:  # fmt: skip
    stamp = iso()
    cursor = rt.store.execute(
        "INSERT INTO posts (route, text_html, rewrite_html, title, state, collected_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (route, "Текст донора.", "Переписанный текст. Вторая фраза.", title, state, stamp, stamp),
    )
    return int(cursor.lastrowid or 0)


def png(colour: str) -> GeneratedImage:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, "PNG")
    return GeneratedImage(data=buffer.getvalue(), mime="image/png", width=40, height=30, backend="card")


def add_image(rt: Runtime, colour: str, post_id: int | None, *, age: timedelta = timedelta(0)) -> tuple[int, Path]:
    saved = save_generated(rt, post_id, png(colour), f"prompt {colour}")
    created = now() - age
    rt.store.execute("UPDATE media SET created_at = ? WHERE id = ?", (iso(created), saved.image_id))
    path = rt.settings.media_dir / saved.relpath
    os.utime(path, (created.timestamp(), created.timestamp()))
    return saved.image_id, path


def media_ids(rt: Runtime) -> set[int]:
    return {r["id"] for r in rt.store.query("SELECT id FROM media")}


# -- generate through the CLI and a worker ------------------------------------------------------------


def test_cli_generate_card_runs_and_attaches_a_card(rt: Runtime, image_done):
    post_id = insert_post(rt)
    result = runner.invoke(app, ["images", "generate", str(post_id), "--backend", "card"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"imagegen-{post_id}" in result.output and "card" in result.output
    again = runner.invoke(app, ["images", "generate", str(post_id), "--prompt", "other"], env={"COLUMNS": "200"})
    assert "already queued" in again.output and "not applied" in again.output
    drain(rt, "imagegen")

    job = get_job(rt.store, f"imagegen-{post_id}")
    assert job["status"] == "succeeded"
    row = rt.store.one("SELECT * FROM media WHERE post_id = ?", (post_id,))
    assert row is not None and row["backend"] == "card" and row["prompt"] == "Новости дня"
    with Image.open(rt.settings.media_dir / row["path"]) as image:
        assert image.format == "PNG" and image.size == (rt.settings.card_width, rt.settings.card_height)
    assert image_done == [(post_id, True)]
    logged = [e["event"] for e in job_events(rt.store, job["id"])]
    assert {"attempt", "image_request", "image_attached"} <= set(logged)

    listed = json.loads(runner.invoke(app, ["images", "list", "--json"]).output)
    assert [(i["id"], i["post_id"], i["post_state"]) for i in listed] == [(row["id"], post_id, "rewritten")]
    shown = json.loads(runner.invoke(app, ["images", "show", str(row["id"]), "--json"]).output)
    assert shown["file_exists"] is True and shown["file"].endswith(row["path"])
    table = runner.invoke(app, ["images", "list"], env={"COLUMNS": "200"})
    assert f"{post_id} (rewritten)" in table.output and "1280x720" in table.output


def test_route_backend_and_card_prompt_override(rt: Runtime, home: Path, image_done):
    (home / "contentq.toml").write_text(
        '[routes.news]\ntarget = "@mine"\nsources = ["@donor"]\nimages = "optional"\nimage_backend = "card"\n'
    )
    post_id = insert_post(rt, title=None)
    result = runner.invoke(app, ["images", "generate", str(post_id), "--prompt", "Свои слова"])
    assert result.exit_code == 0, result.output
    drain(rt, "imagegen")
    row = rt.store.one("SELECT * FROM media WHERE post_id = ?", (post_id,))
    assert row is not None and row["backend"] == "card" and row["prompt"] == "Свои слова"

    untitled = insert_post(rt, title=None)
    runner.invoke(app, ["images", "generate", str(untitled)])
    drain(rt, "imagegen")
    row = rt.store.one("SELECT * FROM media WHERE post_id = ?", (untitled,))
    assert row is not None and row["prompt"] == "Переписанный текст."  # the first sentence of the rewrite


def test_generate_refuses_missing_and_closed_posts(rt: Runtime):
    result = runner.invoke(app, ["images", "generate", "999"])
    assert isinstance(result.exception, ContentqError) and "no post 999" in str(result.exception)
    published = insert_post(rt, state="published")
    result = runner.invoke(app, ["images", "generate", str(published), "--backend", "card"])
    assert isinstance(result.exception, ContentqError)
    assert "is published" in str(result.exception)
    result = runner.invoke(app, ["images", "generate", str(published), "--backend", "dalle"])
    assert isinstance(result.exception, ContentqError)
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs") == 0


def test_card_job_fails_at_once_when_there_is_nothing_to_write(rt: Runtime, image_done):
    stamp = iso()
    post_id = int(rt.store.execute(
        "INSERT INTO posts (route, text_html, state, collected_at, updated_at) VALUES ('news', '', 'rewritten', ?, ?)",
        (stamp, stamp),
    ).lastrowid or 0)  # fmt: skip
    from contentq.runtime.tracking import enqueue

    row = enqueue(rt, "imagegen", str(post_id), {"post_id": post_id, "backend": "card"}, post_id=post_id)
    drain(rt, "imagegen")
    job = get_job(rt.store, row["id"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "no title or text to put on a card" in job["error"]
    assert image_done == [(post_id, False)]


# -- delete -----------------------------------------------------------------------------------------------


def test_delete_refuses_an_attached_image_unless_detach(rt: Runtime):
    post_id = insert_post(rt)
    image_id, path = add_image(rt, "#123456", post_id)
    result = runner.invoke(app, ["images", "delete", str(image_id)])
    assert isinstance(result.exception, ContentqError)
    assert f"attached to post {post_id}" in str(result.exception) and "--detach" in str(result.exception)
    assert path.exists() and image_id in media_ids(rt)

    result = runner.invoke(app, ["images", "delete", str(image_id), "--detach"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"removed from post {post_id}" in result.output
    assert not path.exists() and image_id not in media_ids(rt)

    loose, loose_path = add_image(rt, "#654321", None)
    assert runner.invoke(app, ["images", "delete", str(loose)]).exit_code == 0
    assert not loose_path.exists()
    # Every deletion is on record: CLI commands keep contentq's INFO lines in CONTENTQ_HOME/logs.
    audit = (rt.settings.home / "logs" / "contentq.log").read_text()
    assert f"image {image_id}" in audit and f"image {loose}" in audit


def test_delete_keeps_a_file_another_row_uses_and_refuses_donor_media(rt: Runtime):
    post_a, post_b = insert_post(rt), insert_post(rt)
    a, path = add_image(rt, "#aaaaaa", post_a)
    b, same_path = add_image(rt, "#aaaaaa", post_b)  # identical bytes: one file, two rows
    assert path == same_path
    runner.invoke(app, ["images", "delete", str(a), "--detach"])
    assert path.exists() and b in media_ids(rt)

    rt.store.execute(
        "INSERT INTO media (post_id, origin, kind, path, created_at) VALUES (?, 'donor', 'photo', 'x/y.jpg', ?)",
        (post_a, iso()),
    )
    donor = rt.store.scalar("SELECT id FROM media WHERE origin = 'donor'")
    result = runner.invoke(app, ["images", "delete", str(donor), "--detach"])
    assert isinstance(result.exception, ContentqError) and "donor file" in str(result.exception)
    assert donor in media_ids(rt)


# -- prune ------------------------------------------------------------------------------------------------


def test_prune_deletes_exactly_the_unattached_and_stale(rt: Runtime):
    media_dir = rt.settings.media_dir
    post_id = insert_post(rt)
    old = timedelta(days=10)
    attached_old, attached_path = add_image(rt, "#000001", post_id, age=old)
    loose_old, loose_old_path = add_image(rt, "#000002", None, age=old)
    loose_new, loose_new_path = add_image(rt, "#000003", None, age=timedelta(days=1))
    # A donor file of the post (collect's), old: referenced, so kept.
    donor = store_bytes(media_dir, b"donor-bytes", ext=".jpg")
    rt.store.execute(
        "INSERT INTO media (post_id, origin, kind, path, created_at) VALUES (?, 'donor', 'photo', ?, ?)",
        (post_id, donor.relpath, iso(now() - old)),
    )
    # Files no row refers to: an old one goes, a fresh one stays (a collect may be about to add its row).
    orphan_old = store_bytes(media_dir, b"orphan-old", ext=".png").path(media_dir)
    stamp = time.time() - old.total_seconds()
    os.utime(orphan_old, (stamp, stamp))
    orphan_new = store_bytes(media_dir, b"orphan-new", ext=".png").path(media_dir)

    preview = prune_images(rt, "7d", dry_run=True)
    assert preview["deleted"] == 1 and preview["images"] == [loose_old]
    assert preview["files"] == 2 and len(preview["orphan_files"]) == 1
    assert loose_old in media_ids(rt) and loose_old_path.exists() and orphan_old.exists()

    result = runner.invoke(app, ["images", "prune", "--older-than", "7d", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["deleted"] == 1 and summary["images"] == [loose_old] and summary["files"] == 2
    assert summary["orphan_files"] == [orphan_old.relative_to(media_dir).as_posix()]

    assert media_ids(rt) == {attached_old, loose_new, rt.store.scalar("SELECT id FROM media WHERE origin='donor'")}
    assert attached_path.exists() and loose_new_path.exists() and donor.path(media_dir).exists()
    assert orphan_new.exists()
    assert not loose_old_path.exists() and not orphan_old.exists()

    # With a shorter age the fresh unattached image and the fresh orphan go too; attached ones never.
    summary = prune_images(rt, timedelta(hours=1))
    assert summary["images"] == [loose_new]
    assert not loose_new_path.exists() and attached_path.exists() and donor.path(media_dir).exists()


def test_prune_table_output_and_purge_finds_the_pruner(rt: Runtime):
    _, path = add_image(rt, "#0000ff", None, age=timedelta(days=30))
    result = runner.invoke(app, ["images", "prune", "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "would delete 1 unattached image" in result.output
    assert path.exists()

    from contentq.ops.purge import find_images_pruner

    pruner = find_images_pruner()
    assert pruner is prune_images
    assert pruner(rt, older_than=timedelta(days=7), dry_run=False)["deleted"] == 1
    assert not path.exists()


# -- with the real pipeline --------------------------------------------------------------------------------


def test_image_done_moves_the_post_on_through_the_real_pipeline(rt: Runtime, home: Path):
    (home / "contentq.toml").write_text(
        '[routes.news]\ntarget = "@mine"\nsources = ["@donor"]\nimages = "required"\nimage_backend = "card"\n'
        'publisher = "outbox"\n'
    )
    waiting = insert_post(rt)
    assert runner.invoke(app, ["images", "generate", str(waiting)]).exit_code == 0
    nothing_to_draw = int(rt.store.execute(
        "INSERT INTO posts (route, text_html, state, collected_at, updated_at) VALUES ('news', '', 'rewritten', ?, ?)",
        (iso(), iso()),
    ).lastrowid or 0)  # fmt: skip
    from contentq.runtime.tracking import enqueue

    enqueue(rt, "imagegen", str(nothing_to_draw), {"post_id": nothing_to_draw}, post_id=nothing_to_draw)
    drain(rt, "imagegen")
    states = {r["id"]: r["state"] for r in rt.store.query("SELECT id, state FROM posts")}
    assert states[waiting] == "scheduled"  # the required image is attached: the post takes its slot
    assert states[nothing_to_draw] == "failed"  # required image failed for good: the post fails
