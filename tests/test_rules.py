"""Auto-posting rules: `contentq dispatch` fires each due time once (never twice, also with dispatchers at
once); the LLM (llmock over loopback, the real OpenAI SDK) writes the post, which then goes through approval
and scheduling like any other."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, parse
from contentq.flow.dispatch import dispatch
from contentq.flow.rules import SOURCE_PREFIX
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import load_settings
from tests.conftest import drain
from tests.publish_helpers import notifications, route_toml, write_config

GENERATE = 'topic = "A practical Linux tip with one command."\ntimes = ["08:00"]\ndays = ["mon", "wed", "fri"]'
DAY = datetime(2030, 1, 7, 7, 0, tzinfo=UTC)  # a Monday, 07:00 UTC


def answer(text: str, title: str = "Tip") -> str:
    return json.dumps({"text": text, "title": title, "image_prompt": None, "skip": False, "skip_reason": None})


@pytest.fixture
def grt(home, llmock) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    write_config(
        home,
        route_toml("tips", sources="[]", extra='approval = true\ndescription = "Linux tips"', generate=GENERATE),
    )
    settings = load_settings(
        home=home,
        openai_base_url=llmock.base_url("openai"),
        openai_api_key="sk-test-0123456789",
        rewrite_backoff_base=1.0,
        worker_maintenance_interval=1,
    )
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def rule(rt: Runtime) -> dict:
    row = rt.store.one("SELECT * FROM rules WHERE route = 'tips'")
    assert row is not None
    return row


def generated_posts(rt: Runtime) -> list[dict]:
    return rt.store.query("SELECT * FROM posts WHERE source = ? ORDER BY id", (SOURCE_PREFIX + "tips",))


def test_rule_fires_once_per_due_time_never_twice(grt, llmock, settings):
    assert dispatch(grt, current=DAY)["rules"] == []
    assert rule(grt)["next_run_at"] == iso(DAY.replace(hour=8))

    due = DAY.replace(hour=8, minute=0, second=30)
    barrier = threading.Barrier(4)
    fired: list[dict] = []

    def run() -> None:
        runtime = Runtime(grt.settings)
        try:
            barrier.wait()
            fired.extend(dispatch(runtime, current=due)["rules"])
        finally:
            runtime.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fired) == 1 and fired[0]["due"] == iso(DAY.replace(hour=8))
    assert dispatch(grt, current=due + timedelta(minutes=5))["rules"] == []
    row = rule(grt)
    assert row["runs"] == 1 and row["next_run_at"] == iso(datetime(2030, 1, 9, 8, tzinfo=UTC))  # Wednesday

    llmock.reply(answer("Use <code>du -sh *</code> to see what fills a folder."))
    drain(grt, "rewrite")
    (post,) = generated_posts(grt)
    assert post["state"] == "awaiting_approval"  # through approval like any other post
    assert post["rewrite_html"] == "Use <code>du -sh *</code> to see what fills a folder."
    assert post["title"] == "Tip" and post["rewriter"] == "generate" and post["target"] == "@mychan"
    assert notifications(grt, f"approval:{post['id']}")
    assert rule(grt)["successes"] == 1 and rule(grt)["last_error"] is None
    assert grt.store.scalar("SELECT COUNT(*) FROM usage WHERE post_id = ?", (post["id"],)) == 1
    prompt = json.dumps(llmock.last_request.body)
    assert "A practical Linux tip" in prompt and "Linux tips" in prompt

    # A second run of the generate job for the same due time writes no second post and bills nothing.
    from contentq.runtime.tracking import enqueue

    enqueue(grt, "generate", "tips", {"route": "tips", "due": fired[0]["due"]})
    drain(grt, "rewrite")
    assert len(generated_posts(grt)) == 1 and len(llmock.requests) == 1

    # The next due time fires again.
    llmock.reply(answer("Use <code>ls -lh</code>."))
    again = dispatch(grt, current=datetime(2030, 1, 9, 8, 0, 5, tzinfo=UTC))["rules"]
    assert len(again) == 1
    drain(grt, "rewrite")
    assert len(generated_posts(grt)) == 2 and rule(grt)["runs"] == 2


def test_missed_due_times_fire_once(grt, llmock):
    dispatch(grt, current=DAY)
    late = datetime(2030, 1, 12, 12, tzinfo=UTC)  # Mon, Wed and Fri 08:00 passed while dispatch was down
    (entry,) = dispatch(grt, current=late)["rules"]
    assert entry["due"] == iso(DAY.replace(hour=8)) and entry["missed"] == 2
    assert parse(rule(grt)["next_run_at"]) == datetime(2030, 1, 14, 8, tzinfo=UTC)
    assert dispatch(grt, current=late)["rules"] == []


def test_rule_failure_is_recorded_and_listed(grt, llmock):
    dispatch(grt, current=DAY)
    dispatch(grt, current=DAY.replace(hour=9))
    llmock.fail(401, message="bad key")
    drain(grt, "rewrite")
    (post,) = generated_posts(grt)
    assert post["state"] == "failed"
    row = rule(grt)
    assert row["runs"] == 1 and row["successes"] == 0 and "401" in row["last_error"]

    listed = CliRunner().invoke(app, ["rules", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.output)
    assert entry["route"] == "tips" and entry["runs"] == 1 and entry["successes"] == 0
    assert "401" in entry["last_error"] and entry["next_run_at"] == iso(datetime(2030, 1, 9, 8, tzinfo=UTC))
    table = CliRunner().invoke(app, ["rules", "list"])
    assert table.exit_code == 0 and "tips" in table.output


def test_changed_times_move_the_next_run(grt, home):
    dispatch(grt, current=DAY)
    assert rule(grt)["next_run_at"] == iso(DAY.replace(hour=8))
    write_config(home, route_toml("tips", sources="[]", generate=GENERATE.replace('["08:00"]', '["07:30", "19:00"]')))
    dispatch(grt, current=DAY)
    assert rule(grt)["next_run_at"] == iso(DAY.replace(hour=7, minute=30))


def test_a_rule_post_goes_through_the_rewriters_loop(grt, llmock):
    # An invalid answer is kept in the job log and the admin told a retry follows, as for a rewrite; the
    # answer that follows is written, and both calls are billed to the post.
    dispatch(grt, current=DAY)
    dispatch(grt, current=DAY.replace(hour=9))
    llmock.reply("Sure! Here is a tip: use du")  # not JSON
    llmock.reply(answer("Use <code>df -h</code> to see free space."))
    drain(grt, "rewrite")
    (post,) = generated_posts(grt)
    assert post["state"] == "awaiting_approval"
    assert post["rewrite_html"] == "Use <code>df -h</code> to see free space."
    job = grt.store.one("SELECT id FROM jobs WHERE kind = 'generate'")
    assert job is not None
    invalid = grt.store.one("SELECT * FROM job_events WHERE job_id = ? AND event = 'invalid_output'", (job["id"],))
    assert invalid is not None and "Sure! Here is a tip" in invalid["data"]
    assert any("the model returned invalid output (attempt 2/3)" in n["message"] for n in notifications(grt))
    assert grt.store.scalar("SELECT COUNT(*) FROM usage WHERE post_id = ?", (post["id"],)) == 2
