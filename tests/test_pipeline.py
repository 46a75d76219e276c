"""What follows a rewrite: waiting for a required image, approval (with the `posts` commands), scheduling."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now
from contentq.flow import pipeline
from contentq.flow import schedule as schedule_module
from contentq.runtime.tracking import enqueue
from contentq.store.posts import get_post
from tests.conftest import drain
from tests.publish_helpers import add_post, fake, notifications, route_toml, write_config


def fake_image_job(rt, post_id: int, status: str = "queued") -> None:
    """A job record as the rewrite job leaves when it enqueues the post's image."""
    stamp = iso()
    rt.store.execute(
        "INSERT INTO jobs (id, kind, queue, key, status, post_id, created_at, updated_at)"
        " VALUES (?, 'imagegen', 'imagegen', ?, ?, ?, ?, ?)",
        (f"imagegen-{post_id}", str(post_id), status, post_id, stamp, stamp),
    )


def test_without_approval_a_rewritten_post_is_scheduled_and_handed_over(rt, home):
    write_config(home, route_toml())
    post_id = add_post(rt)
    assert pipeline.on_rewritten(rt, post_id) == "scheduled"
    post = get_post(rt.store, post_id)
    assert post["scheduled_at"] is not None and post["target"] == "@mychan"
    assert post["dispatched_at"] is not None  # asap: handed to the publish queue at once
    job = rt.store.one("SELECT * FROM jobs WHERE kind = 'publish' AND post_id = ?", (post_id,))
    assert job["status"] == "queued"
    assert pipeline.on_rewritten(rt, post_id) == "scheduled"  # called again: nothing changes
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'publish'") == 1


def test_slot_far_ahead_is_left_for_dispatch(rt, home):
    write_config(home, route_toml(schedule="asap = true\nmin_age_minutes = 600"))
    post_id = add_post(rt, posted_at=iso(now()))
    assert pipeline.on_rewritten(rt, post_id) == "scheduled"
    post = get_post(rt.store, post_id)
    assert 9.9 * 3600 < pipeline.due_in_seconds(post) <= 10 * 3600
    assert post["dispatched_at"] is None
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'publish'") == 0


def test_approval_flow(rt, home, tmp_path):
    write_config(home, route_toml(extra="approval = true"))
    post_id = add_post(rt, "Rewritten <b>text</b>", text_html="Donor original text")
    assert pipeline.on_rewritten(rt, post_id) == "awaiting_approval"
    (note,) = notifications(rt, "approval:")
    assert f"post {post_id}" in note["message"] and f"contentq posts approve {post_id}" in note["message"]
    runner = CliRunner()

    listed = json.loads(runner.invoke(app, ["posts", "list", "--state", "awaiting_approval", "--json"]).output)
    assert [p["id"] for p in listed] == [post_id]
    assert json.loads(runner.invoke(app, ["posts", "list", "--route", "other", "--json"]).output) == []

    shown = runner.invoke(app, ["posts", "show", str(post_id)])
    assert shown.exit_code == 0, shown.output
    assert "Donor original text" in shown.output and "Rewritten <b>text</b>" in shown.output
    assert "original" in shown.output and "rewrite" in shown.output

    approved = runner.invoke(app, ["posts", "approve", str(post_id)])
    assert approved.exit_code == 0, approved.output
    post = get_post(rt.store, post_id)
    assert post["state"] == "scheduled" and post["scheduled_at"]
    again = runner.invoke(app, ["posts", "approve", str(post_id)])
    assert again.exit_code != 0 and "not awaiting approval" in str(again.exception)


def test_reject_with_reason(rt, home):
    write_config(home, route_toml(extra="approval = true"))
    post_id = add_post(rt)
    pipeline.on_rewritten(rt, post_id)
    result = CliRunner().invoke(app, ["posts", "reject", str(post_id), "--reason", "off topic"])
    assert result.exit_code == 0, result.output
    post = get_post(rt.store, post_id)
    assert post["state"] == "rejected" and post["state_reason"] == "off topic"


def test_reject_a_scheduled_post_cancels_its_publish_job(rt, home):
    write_config(home, route_toml())
    tg = fake(rt)
    post_id = add_post(rt)
    pipeline.on_rewritten(rt, post_id)
    job = rt.store.one("SELECT id FROM jobs WHERE kind = 'publish' AND post_id = ?", (post_id,))
    pipeline.reject(rt, post_id, None)
    assert rt.store.one("SELECT status FROM jobs WHERE id = ?", (job["id"],))["status"] == "cancelled"
    drain(rt, "publish")
    assert tg.sent == [] and get_post(rt.store, post_id)["state"] == "rejected"


def _editor(tmp_path: Path, content: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text(f"import sys\nopen(sys.argv[1], 'w').write({content!r})\n")
    return f"{sys.executable} {script}"


def test_edit_validates_and_saves(rt, home, tmp_path, monkeypatch):
    write_config(home, route_toml(extra="approval = true"))
    post_id = add_post(rt, "Old text", state="awaiting_approval")
    runner = CliRunner()

    monkeypatch.setenv("EDITOR", _editor(tmp_path, "<b>unclosed"))
    bad = runner.invoke(app, ["posts", "edit", str(post_id)])
    assert bad.exit_code != 0 and "not valid Telegram HTML" in str(bad.exception)
    assert get_post(rt.store, post_id)["rewrite_html"] == "Old text"

    monkeypatch.setenv("EDITOR", _editor(tmp_path, "New <i>better</i> text\n"))
    good = runner.invoke(app, ["posts", "edit", str(post_id)])
    assert good.exit_code == 0, good.output
    assert get_post(rt.store, post_id)["rewrite_html"] == "New <i>better</i> text"

    published = add_post(rt, "Out", state="published")
    refused = runner.invoke(app, ["posts", "edit", str(published)])
    assert refused.exit_code != 0 and "only posts not yet published" in str(refused.exception)


def test_required_image_waits_then_continues(rt, home):
    write_config(home, route_toml(extra='images = "required"'))
    post_id = add_post(rt)
    fake_image_job(rt, post_id)
    assert pipeline.on_rewritten(rt, post_id) == "rewritten"  # waits for its image
    assert pipeline.on_image_done(rt, post_id, True) == "scheduled"
    assert pipeline.on_image_done(rt, post_id, True) is None  # no longer waiting


def test_required_image_failing_fails_the_post_and_notifies(rt, home):
    write_config(home, route_toml(extra='images = "required"'))
    post_id = add_post(rt)
    fake_image_job(rt, post_id)
    pipeline.on_rewritten(rt, post_id)
    assert pipeline.on_image_done(rt, post_id, False) == "failed"
    post = get_post(rt.store, post_id)
    assert "image generation failed" in post["state_reason"]
    assert notifications(rt, f"post-failed:{post_id}")


def test_required_image_never_requested_fails_instead_of_waiting_forever(rt, home):
    write_config(home, route_toml(extra='images = "required"'))
    post_id = add_post(rt)
    assert pipeline.on_rewritten(rt, post_id) == "failed"
    assert "none was requested" in get_post(rt.store, post_id)["state_reason"]


def test_optional_image_failing_still_publishes(rt, home):
    write_config(home, route_toml(extra='images = "optional"\napproval = true'))
    post_id = add_post(rt)
    # optional: the rewrite does not wait for the image
    assert pipeline.on_rewritten(rt, post_id) == "awaiting_approval"
    assert pipeline.on_image_done(rt, post_id, False) is None
    assert get_post(rt.store, post_id)["state"] == "awaiting_approval"

    waiting = add_post(rt)  # a post still `rewritten` when its optional image fails
    assert pipeline.on_image_done(rt, waiting, False) == "awaiting_approval"


def test_optional_image_waits_for_its_queued_job_then_goes_on_without_it_if_it_fails(rt, home):
    write_config(home, route_toml(extra='images = "optional"'))
    post_id = add_post(rt)
    fake_image_job(rt, post_id)
    # publish runs before imagegen: scheduling now would publish the post before its image is made
    assert pipeline.on_rewritten(rt, post_id) == "rewritten"
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'publish'") == 0
    assert pipeline.on_image_done(rt, post_id, False) == "scheduled"  # failed for good: goes on without it
    assert not rt.store.scalar("SELECT 1 FROM media WHERE post_id = ?", (post_id,))

    in_progress = add_post(rt)
    fake_image_job(rt, in_progress, status="in_progress")
    assert pipeline.on_rewritten(rt, in_progress) == "rewritten"
    finished = add_post(rt)  # its image job is over (e.g. it failed before the rewrite finished)
    fake_image_job(rt, finished, status="failed")
    assert pipeline.on_rewritten(rt, finished) == "scheduled"


@pytest.mark.timeout(120)
def test_optional_card_image_is_made_before_the_post_is_scheduled_and_published(rt, home):
    write_config(home, route_toml(extra='images = "optional"\nimage_backend = "card"'))
    tg = fake(rt)
    post_id = add_post(rt, "A donor post about <b>things</b>", state="collected", rewrite_html=None)
    enqueue(rt, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id)
    drain(rt, "rewrite", timeout=60)
    post = get_post(rt.store, post_id)
    assert post["state"] == "rewritten", post["state_reason"]  # waits for its queued image job
    assert rt.store.scalar("SELECT status FROM jobs WHERE kind = 'imagegen' AND post_id = ?", (post_id,)) == "queued"
    drain(rt, "imagegen", timeout=60)
    assert get_post(rt.store, post_id)["state"] == "scheduled"
    assert rt.store.scalar("SELECT COUNT(*) FROM media WHERE post_id = ? AND origin = 'generated'", (post_id,)) == 1
    drain(rt, "publish", timeout=60)
    assert get_post(rt.store, post_id)["state"] == "published"
    (message,) = tg.visible("@mychan")
    assert message.kind == "photo" and "things" in message.html


@pytest.mark.timeout(120)
def test_end_to_end_rewrite_card_image_and_publish(rt, home):
    """collected → rewrite (no LLM) → card image (required) → scheduled → published as a photo with caption."""
    write_config(home, route_toml(extra='images = "required"\nimage_backend = "card"'))
    tg = fake(rt)
    post_id = add_post(rt, "A donor post about <b>things</b>", state="collected", rewrite_html=None)
    enqueue(rt, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id)
    drain(rt, "rewrite", "imagegen", "publish", timeout=60)
    post = get_post(rt.store, post_id)
    assert post["state"] == "published", post["state_reason"]
    (message,) = tg.visible("@mychan")
    assert message.kind == "photo" and "things" in message.html
    assert post["published_at"] >= post["scheduled_at"] <= iso(now())


def test_a_schedule_that_takes_no_post_fails_the_post_with_the_reason(rt, home, monkeypatch):
    # One slot a day within a three-day horizon: the fifth post finds no slot.
    write_config(home, route_toml(schedule='slots = ["09:00"]\nmax_per_day = 1'))
    monkeypatch.setattr(schedule_module, "local_times", functools.partial(schedule_module.local_times, horizon_days=3))
    outcomes: list[str | None] = []
    while "failed" not in outcomes and len(outcomes) < 6:
        post_id = add_post(rt)
        outcomes.append(pipeline.on_rewritten(rt, post_id))
    assert outcomes[-1] == "failed"
    assert "no free publishing slot" in get_post(rt.store, post_id)["state_reason"]
    assert notifications(rt, f"post-failed:{post_id}")
