"""Batch rewrites (issue 27): the real OpenAI SDK against a fake of the Files and Batches endpoints
(tests/fake_openai_batch.py), real Valkey, real SQLite, the rewrite and publish jobs run by real workers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
import time_machine
from rich.cells import cell_len
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, parse
from contentq.flow import pipeline
from contentq.flow.dispatch import dispatch
from contentq.flow.schedule import prospective_slot
from contentq.rewrite import batch
from contentq.routes import load_routes
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import cancel, retry
from contentq.runtime.worker import run_worker
from contentq.settings import load_settings
from contentq.store.batches import list_batches
from tests.conftest import TEST_EPOCH, drain
from tests.fake_openai_batch import API_KEY, FakeOpenAIBatch, chat_completion, error_body, validate
from tests.rewrite_helpers import add_post, answer, post
from tests.web_helpers import client

ROUTES = """
[routes.direct_news]
target = "@direct_channel"
sources = ["@donor"]
prompt = "Rewrite for our readers. [D]"
style_examples = 0
rewrite_mode = "direct"
[routes.direct_news.schedule]
asap = true

[routes.batch_news]
target = "@batch_channel"
sources = ["@donor2"]
prompt = "Rewrite for our readers. [B]"
style_examples = 0
rewrite_mode = "batch"
[routes.batch_news.schedule]
asap = true
"""


def donor(i: int) -> str:
    return f"<b>Post number {i}</b>: the city council approved a new park near the river, opening in spring."


class Model:
    """The scripted model, by the post's number (the same for both routes):
    0 — never valid JSON (refused three times: failed); 1 — skip (an ad: filtered); 2 — the first answer
    loses the bold (refused by the checks, asked again, then valid); 3 — HTTP 500 on the first request of the
    post (a failed batch line; a direct call retries it); 4 — always loses the bold (failed by the checks);
    others — valid at once."""

    def __init__(self) -> None:
        self.first_seen: set[tuple[str, int]] = set()

    def __call__(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = " ".join(str(m.get("content") or "") for m in body["messages"])
        number = int(re.findall(r"Post number (\d+)", text)[-1])
        route = "B" if "[B]" in text else "D"
        retry = any(m["role"] == "assistant" for m in body["messages"])
        kind = number % 10
        if kind == 3 and (route, number) not in self.first_seen:
            self.first_seen.add((route, number))
            return 500, error_body("The server had an error while processing your request.", kind="server_error")
        content = answer(f"<b>Park {number}</b>: the council approved a new riverside park; it opens in spring.")
        if kind == 0:
            content = "Sure! Here is the rewritten post."
        elif kind == 1:
            content = answer("", skip=True, skip_reason="an advertisement")
        elif kind == 4 or (kind == 2 and not retry):
            content = answer(f"Park {number}: the council approved a new riverside park; it opens in spring.")
        return 200, chat_completion(content, model=body["model"])


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeOpenAIBatch]:
    server = FakeOpenAIBatch(tmp_path / "openai.sqlite", answer=Model())
    server.start()
    yield server
    server.stop()


def make_runtime(home: Path, fake: FakeOpenAIBatch, routes: str = ROUTES, **overrides: Any) -> Runtime:
    (home / "contentq.toml").write_text(routes, encoding="utf-8")
    values: dict[str, Any] = dict(
        openai_base_url=fake.base_url, openai_api_key=API_KEY, rewrite_backoff_base=1.0,
        worker_maintenance_interval=1, openai_batch_gather=0.3, openai_batch_poll=0.2,
    )  # fmt: skip
    settings = load_settings(home=home, **{**values, **overrides})
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    return runtime


@pytest.fixture
def brt(home: Path, fake: FakeOpenAIBatch, rewritten_calls: list[int]) -> Iterator[Runtime]:
    runtime = make_runtime(home, fake)
    yield runtime
    runtime.close()


def rewrite_all(rt: Runtime, ids: list[int]) -> None:
    from contentq.rewrite.enqueue import enqueue_rewrites

    enqueue_rewrites(rt, ids)
    drain(rt, "rewrite", timeout=180)


def outcome(rt: Runtime, post_id: int) -> tuple[str, str | None, str | None]:
    row = post(rt, post_id)
    return row["state"], row["rewrite_html"], row["state_reason"]


@pytest.mark.timeout(300)
def test_100_posts_of_a_batch_route_are_one_batch_request_with_the_outcomes_of_direct_calls(
    brt: Runtime, fake: FakeOpenAIBatch
) -> None:
    direct = [add_post(brt, donor(i), route="direct_news", source="@donor") for i in range(100)]
    rewrite_all(brt, direct)
    direct_chat = fake.calls("chat")
    assert direct_chat == 100 + 10 * 2 + 10 * 2 + 10 + 10  # kinds 0 and 4 three tries, 2 two, 3 a retried 500
    assert fake.calls("files") == fake.calls("batches") == 0

    batched = [add_post(brt, donor(i), route="batch_news", source="@donor2") for i in range(100)]
    rewrite_all(brt, batched)

    # One upload and one batch for the 100 posts; the chat endpoint only saw the direct retries.
    assert fake.calls("files") == 1 and fake.calls("batches") == 1
    [sent] = fake.batches()
    assert sent["status"] == "completed" and sent["request_counts"] == {"total": 100, "completed": 90, "failed": 10}
    lines = fake.input_lines(sent["id"])
    assert len(lines) == 100 and {line["url"] for line in lines} == {"/v1/chat/completions"}
    assert lines[0]["body"]["response_format"]["type"] == "json_schema"
    retried = fake.calls("chat") - direct_chat
    assert retried == 10 * 2 + 10 * 2 + 10 * 1 + 10  # refused answers asked again, the 500 lines once each
    assert retried < 100

    # The same validation: every post ends as its direct twin did (text, state and reason).
    for i, (d, b) in enumerate(zip(direct, batched, strict=True)):
        assert outcome(brt, b) == outcome(brt, d), f"post number {i}"
    states = [post(brt, b)["state"] for b in batched]
    assert states.count("failed") == 20 and states.count("filtered") == 10 and states.count("rewritten") == 70
    failed_reasons = {post(brt, b)["state_reason"] for b in batched[4::10]}
    assert len(failed_reasons) == 1 and "bold" in failed_reasons.pop()

    # Tracked like any job: the batch's job is the parent of one child rewrite job per post.
    [row] = list_batches(brt.store)
    parent = row["job_id"]
    children = brt.store.query("SELECT post_id, status FROM jobs WHERE parent_id = ? AND kind = 'rewrite'", (parent,))
    assert sorted(c["post_id"] for c in children) == sorted(batched)
    assert brt.store.scalar("SELECT status FROM jobs WHERE id = ?", (parent,)) == "succeeded"
    panel = client(brt)
    shown = panel.get(f"/api/jobs/{parent}").json()
    assert shown["job"]["kind"] == "rewrite_batch" and len(shown["children"]) == 100
    page = panel.get(f"/jobs/{parent}")
    assert page.status_code == 200 and shown["children"][0]["id"] in page.text

    # `contentq usage`: the 90 answered lines at half the price, the retries at the full one.
    result = CliRunner().invoke(app, ["usage", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["route"]: r for r in json.loads(result.output)["rows"]}
    per_call = 120 / 1e6 * 0.15 + 40 / 1e6 * 0.60
    assert rows["batch_news"]["batch"] == 90 and rows["direct_news"]["batch"] == 0
    assert rows["batch_news"]["cost"] == pytest.approx(90 * per_call / 2 + retried * per_call, abs=1e-6)
    assert rows["direct_news"]["cost"] == pytest.approx((direct_chat - 10) * per_call, abs=1e-6)  # the 500s: $0
    shown = CliRunner().invoke(app, ["usage"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0 and "batch" in shown.output

    listed = CliRunner().invoke(app, ["batches", "--json"])
    assert listed.exit_code == 0, listed.output
    [shown_batch] = json.loads(listed.output)
    assert (shown_batch["status"], shown_batch["lines"], shown_batch["answered"], shown_batch["failed"]) == (
        "completed", 100, 90, 10)  # fmt: skip
    table_80 = CliRunner().invoke(app, ["batches"], env={"COLUMNS": "80"})
    assert table_80.exit_code == 0 and "completed" in table_80.output
    assert max(cell_len(line.rstrip()) for line in table_80.output.splitlines()) <= 80

    # A failed child job tried again asks the model directly: the line's answer counts once.
    child = brt.store.scalar("SELECT id FROM jobs WHERE parent_id = ? AND post_id = ?", (parent, batched[4]))
    retry(brt, child)
    drain(brt, "rewrite", timeout=60)
    assert fake.calls("chat") - direct_chat == retried + 3
    assert brt.store.scalar("SELECT SUM(batch) FROM usage WHERE route = 'batch_news'") == 90


def test_the_fake_refuses_invalid_lines_as_openai_does(fake: FakeOpenAIBatch) -> None:
    good = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": []}}
    lines = [
        json.dumps(good),
        json.dumps({**good, "custom_id": "x", "method": "GET"}),
        json.dumps(good),  # a duplicate custom_id
        json.dumps({**good, "custom_id": "b", "url": "/v1/embeddings"}),
        json.dumps({**good, "custom_id": "c", "body": {"model": "other", "messages": []}}),
        "{not json",
    ]
    codes = [(e["code"], e["line"]) for e in validate(lines, "/v1/chat/completions")]
    assert codes == [("invalid_method", 2), ("duplicate_custom_id", 3), ("invalid_url", 4),
                     ("mismatched_model", 5), ("invalid_json_line", 6)]  # fmt: skip

    client = openai.OpenAI(api_key=API_KEY, base_url=fake.base_url, max_retries=0)
    uploaded = client.files.create(file=("in.jsonl", "\n".join(lines).encode(), "application/jsonl"), purpose="batch")
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert created.status == "validating"
    failed = client.batches.retrieve(created.id)
    assert failed.status == "failed" and failed.errors is not None and len(failed.errors.data or []) == 5
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="1h")
    assert "completion_window" in str(refused.value)
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-nope")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-wrong", base_url=fake.base_url, max_retries=0).batches.list()
    client.close()


EXPIRING = """
[routes.slotted]
target = "@slotted_channel"
sources = ["@donor"]
prompt = "Rewrite for our readers."
style_examples = 0
publisher = "outbox"
rewrite_mode = "{mode}"
[routes.slotted.schedule]
slots = ["03:00", "04:00", "05:00", "06:00", "07:00"]
timezone = "UTC"
"""


def valid_model(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    text = " ".join(str(m.get("content") or "") for m in body["messages"])
    number = int(re.findall(r"Post number (\d+)", text)[-1])
    return 200, chat_completion(answer(f"<b>Park {number}</b>: the council approved a new riverside park."))


def run_until(rt: Runtime, done: Any, timeout: float = 60.0) -> None:
    """Run burst workers on the rewrite queue until `done()` (a batch's job polls on and on meanwhile)."""
    stop = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < stop, "timed out"
        run_worker(rt, ["rewrite"], burst=True)
        time.sleep(0.05)


def publish_due(rt: Runtime, clock: time_machine.Coordinates, until: datetime) -> None:
    """Walk the clock over the slots, handing due posts to the publish queue and publishing them."""
    for slot in sorted({parse(r["scheduled_at"]) for r in rt.store.query("SELECT scheduled_at FROM posts")}):
        if slot > until:
            break
        clock.move_to(slot + timedelta(seconds=1))
        dispatch(rt)
        drain(rt, "publish", timeout=60)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("fate", ["expire", "fail"])
def test_a_batch_that_expires_or_fails_still_gets_every_post_out_before_its_slot(
    home: Path, fake: FakeOpenAIBatch, clock: time_machine.Coordinates, fate: str
) -> None:
    fake.answer = valid_model
    fake.fate = fate
    rt = make_runtime(home, fake, EXPIRING.format(mode="batch"))
    try:
        ids = [add_post(rt, donor(i), route="slotted") for i in range(5)]
        rewrite_all(rt, ids)
        [sent] = fake.batches()
        assert sent["status"] == ("expired" if fate == "expire" else "failed")
        assert fake.calls("batches") == 1 and fake.calls("chat") == 5  # each post once, directly
        slots = [TEST_EPOCH + timedelta(hours=h) for h in (3, 4, 5, 6, 7)]
        assert sorted(parse(post(rt, i)["scheduled_at"]) for i in ids) == slots
        for post_id in ids:
            row = post(rt, post_id)
            assert row["state"] == "scheduled" and parse(row["updated_at"]) < parse(row["scheduled_at"])
        assert any("rewritten by direct calls" in n for n in [r["message"] for r in rt.store.query(
            "SELECT message FROM notifications")])  # fmt: skip
        publish_due(rt, clock, slots[-1])
        assert {post(rt, i)["state"] for i in ids} == {"published"}
    finally:
        rt.close()


@pytest.mark.timeout(240)
def test_a_batch_still_running_near_the_slot_falls_back_to_direct_calls(
    home: Path, fake: FakeOpenAIBatch, clock: time_machine.Coordinates
) -> None:
    fake.answer = valid_model
    fake.fate = "stall"
    rt = make_runtime(home, fake, EXPIRING.format(mode="batch"))
    try:
        ids = [add_post(rt, donor(i), route="slotted") for i in range(3)]
        from contentq.rewrite.enqueue import enqueue_rewrites

        enqueue_rewrites(rt, ids)
        for _ in range(100):  # the batch is submitted and runs (the fake never finishes it)
            run_worker(rt, ["rewrite"], burst=True)
            if fake.batches() and fake.batches()[0]["status"] == "in_progress":
                break
        assert fake.batches()[0]["status"] == "in_progress"
        assert {post(rt, i)["state"] for i in ids} == {"rewriting"}
        deadlines = [parse(r["deadline"]) for r in rt.store.query("SELECT deadline FROM batch_items ORDER BY id")]
        margin = timedelta(seconds=rt.settings.openai_batch_margin)
        assert deadlines == [TEST_EPOCH + timedelta(hours=h) - margin for h in (3, 4, 5)]  # each post's own slot

        # The first post's deadline comes: it alone goes direct, the batch runs on for the others.
        clock.move_to(deadlines[0] + timedelta(seconds=5))
        run_until(rt, lambda: post(rt, ids[0])["state"] == "scheduled")
        assert fake.calls("chat") == 1 and fake.calls("batch_cancel") == 0
        assert [post(rt, i)["state"] for i in ids[1:]] == ["rewriting", "rewriting"]
        assert parse(post(rt, ids[0])["scheduled_at"]) == TEST_EPOCH + timedelta(hours=3)

        # The last deadline: every post went direct, so the batch is cancelled.
        clock.move_to(deadlines[-1] + timedelta(seconds=5))
        drain(rt, "rewrite", timeout=60)
        assert fake.calls("chat") == 3 and fake.calls("batch_cancel") == 1
        assert {post(rt, i)["state"] for i in ids} == {"scheduled"}
        assert fake.batches()[0]["status"] in ("cancelling", "cancelled")
    finally:
        rt.close()


def test_auto_batches_only_posts_whose_slot_is_beyond_the_batch_window(
    home: Path, fake: FakeOpenAIBatch, clock: time_machine.Coordinates
) -> None:
    rt = make_runtime(home, fake, EXPIRING.format(mode="auto"), openai_batch_window=6 * 3600)
    try:
        route = load_routes(rt.settings.config_path).get("slotted")
        first = rt.store.one("SELECT * FROM posts WHERE id = ?", (add_post(rt, donor(1), route="slotted"),))
        assert first is not None
        near = batch.plan(
            rt, first, route, lambda: prospective_slot(rt.store, route, first)
        )  # slot 03:00, 3 h away: inside the 6 h window
        assert not near.batch and "within the batch window" in near.why
        later = rt.store.one("SELECT * FROM posts WHERE id = ?", (add_post(rt, donor(2), route="slotted"),))
        assert later is not None
        clock.move_to(TEST_EPOCH + timedelta(hours=7, minutes=30))  # next slot: tomorrow 03:00, 19.5 h away
        far = batch.plan(rt, later, route, lambda: prospective_slot(rt.store, route, later))
        assert far.batch and far.deadline == datetime(2030, 1, 2, 2, 30, tzinfo=UTC)
        asap = (
            load_routes(rt.settings.config_path)
            .get("slotted")
            .model_copy(update={"schedule": route.schedule.model_copy(update={"asap": True})})
        )
        assert not batch.plan(rt, later, asap, lambda: None).batch
        assert iso(far.deadline)  # a real instant
    finally:
        rt.close()


@pytest.mark.timeout(120)
def test_a_donor_edit_before_the_batch_leaves_sends_the_new_text_once(
    home: Path, fake: FakeOpenAIBatch, rewritten_calls: list[int]
) -> None:
    rt = make_runtime(home, fake, openai_batch_gather=3.0)
    try:
        post_id = add_post(rt, donor(7), route="batch_news", source="@donor2")
        from contentq.rewrite.enqueue import enqueue_rewrites

        enqueue_rewrites(rt, [post_id])
        run_until(rt, lambda: post(rt, post_id)["state"] == "rewriting")
        assert pipeline.advance(rt, post_id, "donor_edited", reason="edited", text_html=donor(8))
        drain(rt, "rewrite", timeout=60)
        [sent] = fake.batches()
        [line] = fake.input_lines(sent["id"])
        assert "Post number 8" in line["body"]["messages"][-1]["content"]
        assert post(rt, post_id)["state"] == "rewritten" and "Park 8" in post(rt, post_id)["rewrite_html"]
        assert fake.calls("chat") == 0
    finally:
        rt.close()


@pytest.mark.timeout(120)
def test_posts_of_a_batch_whose_job_was_cancelled_are_rewritten_directly_when_asked_again(
    home: Path, fake: FakeOpenAIBatch, rewritten_calls: list[int]
) -> None:
    fake.fate = "stall"
    rt = make_runtime(home, fake)
    try:
        ids = [add_post(rt, donor(i), route="batch_news", source="@donor2") for i in (5, 6)]
        from contentq.rewrite.enqueue import enqueue_rewrites

        enqueue_rewrites(rt, ids)
        run_until(rt, lambda: bool(fake.batches()) and fake.batches()[0]["status"] == "in_progress")
        [row] = list_batches(rt.store)
        cancel(rt, row["job_id"])
        assert {post(rt, i)["state"] for i in ids} == {"rewriting"}
        rows = enqueue_rewrites(rt, ids)
        assert [r["result"] for r in rows] == ["queued", "queued"]
        drain(rt, "rewrite", timeout=60)
        assert {post(rt, i)["state"] for i in ids} == {"rewritten"}
        assert fake.calls("chat") == 2
        assert {r["status"] for r in rt.store.query("SELECT status FROM batch_items")} == {"direct"}
    finally:
        rt.close()


def test_the_fake_runs_lines_against_llmock(tmp_path: Path, llmock: Any) -> None:
    server = FakeOpenAIBatch(tmp_path / "openai.sqlite", llm_base_url=llmock.base_url("openai"))
    server.start()
    try:
        llmock.reply(answer("<b>From llmock</b>"), times=None)
        client = openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body} for i in (1, 2)]
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
        created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                        completion_window="24h", metadata={"k": "v"})  # fmt: skip
        seen = [client.batches.retrieve(created.id).status for _ in range(3)]
        assert seen == ["in_progress", "finalizing", "completed"]
        done = client.batches.retrieve(created.id)
        assert done.request_counts is not None and done.request_counts.completed == 2 and done.error_file_id is None
        assert done.output_file_id is not None
        out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        assert {o["custom_id"] for o in out} == {"r1", "r2"}
        assert all(o["response"]["status_code"] == 200 for o in out)
        assert "From llmock" in out[0]["response"]["body"]["choices"][0]["message"]["content"]
        assert client.batches.list().data[0].metadata == {"k": "v"}
        client.close()
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_an_endpoint_without_batches_fails_the_batch_job_and_its_posts_go_direct(
    home: Path, fake: FakeOpenAIBatch, rewritten_calls: list[int]
) -> None:
    fake.script("files", "status", status=404, body=error_body("Invalid URL (POST /v1/files)"), times=10)
    rt = make_runtime(home, fake)
    try:
        ids = [add_post(rt, donor(i), route="batch_news", source="@donor2") for i in (5, 6)]
        rewrite_all(rt, ids)
        [row] = list_batches(rt.store)
        assert row["status"] == "failed" and row["direct"] == 2
        job = rt.store.one("SELECT status, error FROM jobs WHERE id = ?", (row["job_id"],))
        assert job is not None and job["status"] == "failed"
        assert "the endpoint has no Batch API" in job["error"] and API_KEY not in job["error"]
        assert {post(rt, i)["state"] for i in ids} == {"rewritten"}
        assert fake.calls("chat") == 2 and fake.calls("batches") == 0
        assert any(
            "rewritten by direct calls" in r["message"] for r in rt.store.query("SELECT message FROM notifications")
        )
    finally:
        rt.close()
