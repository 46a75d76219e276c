"""Destinations and deliveries: a route that publishes each post to several destinations, one delivery each with
its own state, job and retries (docs/destinations.md). Here with two Telegram channels (the fake gateway);
X and Instagram have their own files (test_x.py, test_instagram.py, test_destinations_all.py)."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from telethon import errors
from typer.testing import CliRunner

from contentq import lifecycle
from contentq.cli.app import app
from contentq.clock import iso, now
from contentq.errors import ConfigError, DatabaseFullError
from contentq.publish import deliveries
from contentq.redact import redact
from contentq.routes import load_routes, parse_destination
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue, retry
from contentq.settings import account_secret, get_settings, load_settings
from contentq.store.deliveries import deliveries_of, delivery_history
from contentq.store.posts import get_post
from tests.conftest import drain
from tests.publish_helpers import add_post, fake, write_config

ROUTE = """
[routes.news]
destinations = ["telegram:@mychan", "telegram:@second"]
sources = ["@donor"]
rewriter = "none"
[routes.news.schedule]
asap = true
"""


@pytest.fixture
def drt(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    for key, value in {"PUBLISH_BACKOFF_BASE": "1", "PUBLISH_MIN_INTERVAL": "0", "PUBLISH_ACCOUNT_BUDGET": "0"}.items():
        monkeypatch.setenv(f"CONTENTQ_{key}", value)
    get_settings.cache_clear()
    write_config(home, ROUTE)
    runtime = Runtime(load_settings(home=home))
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def scheduled(rt: Runtime, html: str = "Hello <b>both</b>") -> int:
    return add_post(rt, html, state="scheduled", scheduled_at=iso(now()))


def publish(rt: Runtime, post_id: int) -> None:
    enqueue(rt, "publish", str(post_id), {}, post_id=post_id)
    drain(rt, "publish")


def by_destination(rt: Runtime, post_id: int) -> dict[str, dict]:
    return {d["destination"]: d for d in deliveries_of(rt.store, post_id)}


# Configuration --------------------------------------------------------------------------------------------


def test_destinations_parse_and_an_existing_route_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "contentq.toml"
    path.write_text(
        ROUTE + '[routes.old]\ntarget = "@oldchan"\nsources = ["@other"]\n[routes.old.schedule]\nasap = true\n'
        '[accounts.instagram.brand]\nuser_id = "17841400000000001"\n'
        '[routes.all]\ndestinations = ["telegram:t.me/Chan", "x:Main", "instagram:brand"]\nsources = ["@third"]\n'
        '[routes.all.instagram]\npublic_media_url = "https://media.example.com/cq/"\n'
    )
    config = load_routes(path)
    assert config.routes["old"].destinations == [] and config.routes["old"].target == "@oldchan"
    assert config.routes["news"].target == "@mychan"  # the first Telegram destination
    route = config.routes["all"]
    assert route.destinations == ["telegram:@chan", "x:main", "instagram:brand"]
    assert route.instagram.public_media_url == "https://media.example.com/cq"
    assert parse_destination("x:Main").key == "x:main"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('destinations = ["mastodon:me"]', "unknown platform 'mastodon'"),
        ('destinations = ["x"]', "write platform:account"),
        ('destinations = ["x:main", "X:Main"]', "destination x:main is listed twice"),
        ('destinations = ["x:bad-name"]', "an account name is letters, digits and '_'"),
        ('destinations = ["instagram:brand"]', "set public_media_url"),
        ('destinations = ["x:main"]\npublisher = "outbox"', 'publisher = "outbox" is for routes without destinations'),
    ],
)
def test_bad_destinations_are_refused_with_what_to_do(tmp_path: Path, body: str, says: str) -> None:
    path = tmp_path / "contentq.toml"
    path.write_text(f'[routes.r]\nsources = ["@a"]\n{body}\n')
    with pytest.raises(ConfigError) as info:
        load_routes(path)
    assert says in str(info.value)


def test_an_instagram_destination_needs_its_account_table(tmp_path: Path) -> None:
    path = tmp_path / "contentq.toml"
    path.write_text(
        '[routes.r]\nsources = ["@a"]\ndestinations = ["instagram:brand"]\n'
        '[routes.r.instagram]\npublic_media_url = "https://m.example.com"\n'
    )
    with pytest.raises(ConfigError, match=r"add \[accounts.instagram.brand\] with its user_id"):
        load_routes(path)


def test_account_secrets_come_from_env_files_and_are_redacted(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / ".env").write_text("CONTENTQ_X_MAIN_ACCESS_TOKEN_SECRET=xsecret-from-home-env-123\n")
    monkeypatch.setenv("CONTENTQ_INSTAGRAM_BRAND_ACCESS_TOKEN", "IGQVJ-secret-token-456")
    settings = load_settings(home=home)
    assert account_secret(settings, "x", "main", "access_token_secret") == "xsecret-from-home-env-123"
    assert account_secret(settings, "x", "main", "consumer_key") is None
    # Registered by load_settings itself: a log line or job error quoting them is masked.
    assert redact("token IGQVJ-secret-token-456 and xsecret-from-home-env-123") == "token *** and ***"


# Deliveries ---------------------------------------------------------------------------------------------


def test_a_post_goes_out_once_on_each_destination_and_is_published_when_all_are(drt: Runtime) -> None:
    tg = fake(drt)
    tg.add_channel("@second", 7654321)
    post_id = scheduled(drt)
    publish(drt, post_id)
    assert [m.html for m in tg.visible("@mychan")] == ["Hello <b>both</b>"]
    assert [m.html for m in tg.visible("@second")] == ["Hello <b>both</b>"]
    rows = by_destination(drt, post_id)
    assert {k: v["state"] for k, v in rows.items()} == dict.fromkeys(
        ("telegram:@mychan", "telegram:@second"), "published"
    )
    assert rows["telegram:@second"]["link"] == f"https://t.me/second/{tg.visible('@second')[0].message_id}"
    post = get_post(drt.store, post_id)
    assert post["state"] == "published" and post["link"] == rows["telegram:@mychan"]["link"]
    events = [h["event"] for h in delivery_history(drt.store, rows["telegram:@second"]["id"])]
    assert events == ["created", "started", "published"]
    kinds = [r["kind"] for r in drt.store.query("SELECT kind FROM jobs WHERE post_id = ? ORDER BY rowid", (post_id,))]
    assert kinds == ["publish", "deliver", "deliver"]


def test_a_failed_delivery_neither_holds_back_nor_repeats_the_other_and_jobs_retry_sends_only_it(drt: Runtime) -> None:
    tg = fake(drt)
    tg.add_channel("@second", 7654321)
    post_id = scheduled(drt)
    original_send = tg.send

    def refuse_second(target, part, random_ids):  # type: ignore[no-untyped-def]
        if target.ref == "@second":
            raise errors.ChatWriteForbiddenError(request=None)
        return original_send(target, part, random_ids)

    tg.send = refuse_second  # type: ignore[method-assign]
    publish(drt, post_id)
    rows = by_destination(drt, post_id)
    assert rows["telegram:@mychan"]["state"] == "published" and len(tg.visible("@mychan")) == 1
    assert rows["telegram:@second"]["state"] == "failed"
    assert "ChatWriteForbidden" in rows["telegram:@second"]["state_reason"]
    post = get_post(drt.store, post_id)
    assert post["state"] == "failed" and "telegram:@second" in post["state_reason"]
    assert "published on telegram:@mychan" in post["state_reason"]

    tg.send = original_send  # type: ignore[method-assign]
    failed_job = drt.store.one(
        "SELECT id FROM jobs WHERE kind = 'deliver' AND status = 'failed' AND post_id = ?", (post_id,)
    )
    assert failed_job is not None
    retry(drt, failed_job["id"])
    drain(drt, "publish")
    assert len(tg.visible("@mychan")) == 1  # not sent again
    assert len(tg.visible("@second")) == 1
    assert {d["state"] for d in deliveries_of(drt.store, post_id)} == {"published"}
    assert get_post(drt.store, post_id)["state"] == "published"

    # The post moved through the lifecycle only, each move by the job that made it; the deliveries name theirs.
    moves = [(h["from_state"], h["event"], h["state"], h["actor"]) for h in lifecycle.history(drt.store, post_id)][1:]
    assert [m[:3] for m in moves] == [
        ("scheduled", "fanned_out", "publishing"),
        ("publishing", "delivery_failed", "failed"),
        ("failed", "redelivery_started", "publishing"),
        ("publishing", "delivered", "published"),
    ]
    publish_job = drt.store.scalar("SELECT id FROM jobs WHERE kind = 'publish' AND post_id = ?", (post_id,))
    assert moves[0][3] == f"job:{publish_job}" and moves[1][3] == moves[2][3] == f"job:{failed_job['id']}"
    assert all(lifecycle.allowed(h) for h in lifecycle.history(drt.store, post_id)[1:])
    second = delivery_history(drt.store, rows["telegram:@second"]["id"])
    assert [(h["event"], h["actor"]) for h in second] == [
        ("created", f"job:{publish_job}"),
        ("started", f"job:{failed_job['id']}"),
        ("failed", f"job:{failed_job['id']}"),
        ("started", f"job:{failed_job['id']}"),
        ("published", f"job:{failed_job['id']}"),
    ]


def _delivery_events_named(tree: ast.Module) -> set[str]:
    """The events of every `move_delivery(store, id, "event", …)` call with a literal event."""
    named: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) > 2:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            event = node.args[2]
            if name == "move_delivery" and isinstance(event, ast.Constant) and isinstance(event.value, str):
                named.add(event.value)
    return named


def test_every_delivery_event_named_in_the_code_is_in_its_table_and_every_move_is_made() -> None:
    root = Path(__file__).resolve().parents[1] / "contentq"
    named: set[str] = set()
    for path in root.rglob("*.py"):
        named |= _delivery_events_named(ast.parse(path.read_text(encoding="utf-8")))
    assert named - set(deliveries.MOVES) == set()
    # `created` is the insert's own history row (store/deliveries.insert_delivery, from publish/fanout).
    assert set(deliveries.MOVES) - named == {"created"}
    assert '"created"' in (root / "publish" / "fanout.py").read_text(encoding="utf-8")


def test_a_rejected_post_cancels_the_deliveries_still_to_go(drt: Runtime) -> None:
    fake(drt).add_channel("@second", 7654321)
    post_id = scheduled(drt)
    enqueue(drt, "publish", str(post_id), {}, post_id=post_id)
    drain(drt, "publish")
    # A delivery made but not yet run when its post is rejected (here: put back by hand) is cancelled, not sent.
    row = by_destination(drt, post_id)["telegram:@second"]
    drt.store.execute("UPDATE deliveries SET state = 'scheduled' WHERE id = ?", (row["id"],))
    drt.store.execute("UPDATE posts SET state = 'rejected' WHERE id = ?", (post_id,))
    from contentq.publish.deliver import deliver
    from contentq.publish.publication import LogReporter

    result = deliver(drt, row["id"], LogReporter(drt))
    assert result["skipped"] == "rejected"
    assert by_destination(drt, post_id)["telegram:@second"]["state"] == "cancelled"


def test_the_delivery_table_refuses_a_move_it_does_not_declare(drt: Runtime) -> None:
    fake(drt).add_channel("@second", 7654321)
    post_id = scheduled(drt)
    publish(drt, post_id)
    row = by_destination(drt, post_id)["telegram:@mychan"]
    with pytest.raises(deliveries.IllegalMove, match="cannot start from published"):
        deliveries.move_delivery(drt.store, row["id"], "failed", only_from="published")
    assert deliveries.move_delivery(drt.store, row["id"], "failed") is False  # published: 'failed' starts elsewhere


def test_posts_show_and_list_and_the_json_list_the_deliveries(drt: Runtime) -> None:
    tg = fake(drt)
    tg.add_channel("@second", 7654321)
    post_id = scheduled(drt)
    publish(drt, post_id)
    runner = CliRunner()
    shown = runner.invoke(app, ["posts", "show", str(post_id)], env={"COLUMNS": "160"})
    assert shown.exit_code == 0, shown.output
    assert "deliveries" in shown.output and "telegram:@second" in shown.output
    assert f"https://t.me/second/{tg.visible('@second')[0].message_id}" in shown.output
    data = json.loads(runner.invoke(app, ["posts", "show", str(post_id), "--json"]).output)
    assert [(d["destination"], d["state"]) for d in data["deliveries"]] == [
        ("telegram:@mychan", "published"),
        ("telegram:@second", "published"),
    ]
    listed = runner.invoke(app, ["posts", "list"], env={"COLUMNS": "200"})
    assert "telegram:@mychan published, telegram:@second published" in listed.output


def test_the_api_and_the_post_page_show_the_deliveries_and_each_destinations_version(drt: Runtime) -> None:
    from tests.web_helpers import client

    tg = fake(drt)
    tg.add_channel("@second", 7654321)
    post_id = scheduled(drt, 'Hello <a href="https://example.com">world</a>')
    publish(drt, post_id)
    tc = client(drt)
    data = tc.get(f"/api/posts/{post_id}").json()
    assert [(d["destination"], d["state"]) for d in data["deliveries"]] == [
        ("telegram:@mychan", "published"),
        ("telegram:@second", "published"),
    ]
    assert data["deliveries"][1]["link"].startswith("https://t.me/second/")
    assert [v["destination"] for v in data["destinations"]] == ["telegram:@mychan", "telegram:@second"]
    page = tc.get(f"/posts/{post_id}")
    assert page.status_code == 200
    assert 'data-delivery="telegram:@second"' in page.text and data["deliveries"][1]["link"] in page.text
    # The contract (checked on the way out, and by Schemathesis) declares them.
    schemas = tc.get("/api/openapi.json").json()["components"]["schemas"]
    assert {"deliveries", "destinations", "destinations_html"} <= set(schemas["PostDetail"]["required"])
    assert set(schemas["Delivery"]["properties"]["state"]["enum"]) == set(deliveries.STATES)
    assert "destination_limits" in schemas["Dashboard"]["required"]


def test_a_post_out_on_a_destination_is_not_edited(drt: Runtime) -> None:
    from contentq.errors import ContentqError
    from contentq.review.posts import save_text, text_to_edit

    tg = fake(drt)
    tg.add_channel("@second", 7654321)
    post_id = scheduled(drt)
    original_send = tg.send

    def refuse_second(target, part, random_ids):  # type: ignore[no-untyped-def]
        if target.ref == "@second":
            raise errors.ChatWriteForbiddenError(request=None)
        return original_send(target, part, random_ids)

    tg.send = refuse_second  # type: ignore[method-assign]
    publish(drt, post_id)
    assert get_post(drt.store, post_id)["state"] == "failed"  # editable by its state, but @mychan has it
    with pytest.raises(ContentqError, match="it is out .* on telegram:@mychan"):
        text_to_edit(drt, post_id)
    with pytest.raises(ContentqError, match="cannot be edited"):
        save_text(drt, post_id, "Another text")
    assert get_post(drt.store, post_id)["rewrite_html"] == "Hello <b>both</b>"


def test_publishing_a_failed_post_again_sends_only_its_failed_deliveries(drt: Runtime) -> None:
    from contentq.publish.core import publish_now

    tg = fake(drt)
    tg.add_channel("@second", 7654321)
    tg.fail_next("send", None, errors.ChatWriteForbiddenError(request=None))  # the second channel refuses once
    post_id = scheduled(drt)
    publish(drt, post_id)
    assert get_post(drt.store, post_id)["state"] == "failed"
    assert len(tg.visible("@mychan")) + len(tg.visible("@second")) == 1
    publish_now(drt, post_id)  # `contentq publish ID`: the post's publish job runs again
    drain(drt, "publish")
    assert (len(tg.visible("@mychan")), len(tg.visible("@second"))) == (1, 1)
    assert get_post(drt.store, post_id)["state"] == "published"


def test_a_moment_of_full_disk_mid_delivery_costs_it_nothing(drt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    # The message is out and recorded; the job's log line after it meets a full disk for a moment: the job runs
    # again (no try spent) and finds it recorded; nothing is sent twice, taken back or failed.
    from contentq.store import jobs as store_jobs

    tg = fake(drt)
    tg.add_channel("@second", 7654321)
    post_id = scheduled(drt)
    real = store_jobs.log_event
    refused: list[str] = []

    def log_event(store, job_id, event, message="", **kw):  # type: ignore[no-untyped-def]
        if event == "sent" and not refused:
            refused.append(job_id)
            raise DatabaseFullError("the disk holding the database is full")
        return real(store, job_id, event, message, **kw)

    monkeypatch.setattr(store_jobs, "log_event", log_event)
    publish(drt, post_id)
    assert refused
    assert {d["state"] for d in deliveries_of(drt.store, post_id)} == {"published"}
    assert get_post(drt.store, post_id)["state"] == "published"
    assert (len(tg.visible("@mychan")), len(tg.visible("@second"))) == (1, 1)
    assert not [m for m in tg.sent if m.deleted]
    jobs = drt.store.query("SELECT status, attempts FROM jobs WHERE kind = 'deliver' AND post_id = ?", (post_id,))
    assert [(j["status"], j["attempts"]) for j in jobs] == [("succeeded", 1), ("succeeded", 1)]
