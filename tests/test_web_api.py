"""The JSON API with the real app on real SQLite and the test Valkey: every endpoint, auth, CSRF, pagination."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from contentq.cli.app import app as cli
from contentq.clock import iso
from contentq.runtime.context import Runtime
from contentq.runtime.queues import paused_queues
from contentq.store.jobs import get_job
from contentq.store.posts import get_post
from contentq.web.auth import token_path
from tests.publish_helpers import add_media, add_post, route_toml, write_config
from tests.web_helpers import album_post, client, failed_job, json_of, login


def test_jobs_endpoints_list_show_create_retry_cancel(rt: Runtime) -> None:
    tc = client(rt)
    failed = failed_job(rt, "a")
    created = tc.post("/api/jobs", json={"kind": "noop", "key": "b"})
    assert created.status_code == 201, created.text
    new_id = created.json()["job"]["id"]
    assert get_job(rt.store, new_id)["status"] == "queued"
    assert [e["event"] for e in created.json()["events"]] == ["enqueued"]

    listed = json_of(tc.get("/api/jobs", params={"status": "failed"}))
    assert [j["id"] for j in listed["items"]] == [failed] and listed["total"] == 1
    shown = tc.get(f"/api/jobs/{failed}").json()
    assert shown["job"]["error"] == "boom" and shown["children"] == [] and shown["parent"] is None
    assert tc.get(f"/api/jobs/{failed}/events").json()[0]["event"] == "enqueued"

    retried = tc.post(f"/api/jobs/{failed}/retry").json()
    assert retried["job"]["status"] == "queued" and retried["job"]["generation"] == 2
    assert retried["events"][-1]["event"] == "restarted"
    cancelled = tc.post(f"/api/jobs/{new_id}/cancel").json()
    assert cancelled["job"]["status"] == "cancelled"
    again = tc.post(f"/api/jobs/{new_id}/cancel")  # the job's state refuses it: a conflict, not a bad request
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]


def test_queue_pause_resume_and_status(rt: Runtime) -> None:
    tc = client(rt)
    rows = tc.get("/api/queues").json()
    assert {r["queue"] for r in rows} >= {"rewrite", "publish", "collect"}
    assert tc.post("/api/queues/rewrite/pause").json() == {"queue": "rewrite", "paused": True, "changed": True}
    assert "rewrite" in paused_queues(rt.redis)
    assert next(r for r in tc.get("/api/queues").json() if r["queue"] == "rewrite")["paused"] is True
    assert tc.post("/api/queues/rewrite/resume").json()["changed"] is True
    assert "rewrite" not in paused_queues(rt.redis)
    bad = tc.post("/api/queues/nope/pause")  # not one of the queues the document lists
    assert bad.status_code == 422 and "name" in bad.json()["error"] and "'publish'" in bad.json()["error"]


def test_post_endpoints_approve_reject_edit_schedule_unschedule_publish(rt: Runtime) -> None:
    tc = client(rt)
    post_id = album_post(rt)
    other = add_post(rt, "Second", state="awaiting_approval")

    listed = tc.get("/api/posts", params={"state": "awaiting_approval"}).json()
    assert {p["id"] for p in listed["items"]} == {post_id, other}
    detail = tc.get(f"/api/posts/{post_id}").json()
    assert detail["post"]["state"] == "awaiting_approval" and len(detail["media"]) == 5
    assert 'class="tg-album"' in detail["preview_html"] and "tg-spoiler" in detail["preview_html"]

    bad_edit = tc.put(f"/api/posts/{post_id}/text", json={"html": "<b>open"})
    assert bad_edit.status_code == 400 and "not valid Telegram HTML" in bad_edit.json()["error"]
    saved = tc.put(f"/api/posts/{post_id}/text", json={"html": "New <i>text</i>"})
    assert saved.status_code == 200 and get_post(rt.store, post_id)["rewrite_html"] == "New <i>text</i>"

    approved = tc.post(f"/api/posts/{post_id}/approve").json()
    assert approved["state"] == "scheduled" and get_post(rt.store, post_id)["state"] == "scheduled"
    assert tc.delete(f"/api/posts/{post_id}/schedule").json()["state"] == "awaiting_approval"
    at = tc.post(f"/api/posts/{post_id}/schedule", json={"at": "+2h"}).json()
    assert get_post(rt.store, post_id)["scheduled_at"] == at["scheduled_at"]
    published = tc.post(f"/api/posts/{post_id}/publish").json()
    assert published["job"].startswith("publish-")
    assert get_job(rt.store, published["job"])["status"] == "queued"

    rejected = tc.post(f"/api/posts/{other}/reject", json={"reason": "off topic"}).json()
    assert rejected["state"] == "rejected" and rejected["state_reason"] == "off topic"
    again = tc.post(f"/api/posts/{other}/approve")
    assert again.status_code == 409 and "not awaiting approval" in again.json()["error"]


def test_schedule_stats_usage_metrics_dashboard_docs(rt: Runtime) -> None:
    tc = client(rt)
    write_config(rt.settings.home, route_toml())
    post_id = add_post(rt, "Soon", state="scheduled", scheduled_at=iso())
    rt.store.execute(
        "INSERT INTO usage (at, post_id, route, model, tokens_in, tokens_out, cost)"
        " VALUES (?, ?, 'news', 'm', 100, 20, 0.5)",
        (iso(), post_id),
    )
    failed_job(rt, "x")
    schedule = tc.get("/api/schedule").json()
    assert [p["id"] for p in schedule["posts"]] == [post_id] and schedule["routes"][0]["route"] == "news"
    stats = tc.get("/api/stats", params={"since": "24h"}).json()
    assert stats["llm"]["total"]["tokens_in"] == 100 and stats["jobs"][0]["failed"] == 1
    usage = tc.get("/api/usage").json()
    assert usage["total"] == {
        "calls": 1, "failed": 0, "batch": 0, "tokens_in": 100, "tokens_cached": 0, "tokens_out": 20, "images": 0,
        "cost": 0.5, "saved": 0.0, "image_cost": 0.0, "cache_share": 0.0,
    }  # fmt: skip
    metrics = tc.get("/api/metrics")
    assert metrics.status_code == 200 and "contentq_" in metrics.text
    dash = tc.get("/api/dashboard").json()
    assert len(dash["hours"]) == 24 and dash["hours"][-1]["failed"] == 1 and dash["queues"]
    assert "llm_breaker" in dash and isinstance(dash["alerts"], list)
    spec = tc.get("/api/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}/retry", "/api/events", "/api/queues/{name}/pause"} <= set(spec["paths"])
    assert spec["openapi"].startswith("3.1")
    scheme = spec["components"]["securitySchemes"]["HTTPBearer"]  # Swagger UI's "Authorize" sends the token
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and "contentq web token" in scheme["description"]
    assert all(op["security"] == [{"HTTPBearer": []}] for ops in spec["paths"].values() for op in ops.values())
    docs = tc.get("/api/docs")
    assert docs.status_code == 200 and "/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "unsafe-inline" not in docs.headers["content-security-policy"] and "<script>" not in docs.text
    assert "cdn." not in docs.text and "https://" not in docs.headers["content-security-policy"]  # works offline
    asset = tc.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 1_000_000


def test_events_stream_job_and_post_changes(rt: Runtime) -> None:
    tc = client(rt)
    job = failed_job(rt, "e")
    post_id = add_post(rt, "x", state="awaiting_approval")
    with tc.stream("GET", "/api/events", params={"since_start": True, "max_events": 2}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    events = [block for block in body.split("\r\n\r\n") if "data:" in block]
    assert "event: job" in events[0] and f'"job_id": "{job}"' in events[0] and '"status": "failed"' in events[0]
    assert "event: post" in events[1] and f'"id": {post_id}' in events[1]
    last_id = next(line[4:] for line in events[1].splitlines() if line.startswith("id: "))
    tc.post(f"/api/jobs/{job}/retry")
    with tc.stream("GET", "/api/events", params={"max_events": 1}, headers={"Last-Event-ID": last_id}) as response:
        body = "".join(response.iter_text())
    assert '"event": "restarted"' in body and '"status": "queued"' in body


def test_every_endpoint_refuses_without_the_token(rt: Runtime) -> None:
    tc = client(rt)
    spec = tc.get("/api/openapi.json").json()
    anonymous = client(rt, token=False)
    wrong = client(rt, token=False)
    wrong.headers["Authorization"] = "Bearer not-the-token"
    checked = 0
    for path, methods in spec["paths"].items():
        url = path.replace("{job_id}", "x").replace("{post_id}", "1").replace("{name}", "rewrite")
        for method in methods:
            for c in (anonymous, wrong):
                response = c.request(method.upper(), url)
                assert response.status_code == 401, (method, url, response.status_code)
                assert "not logged in" in response.json()["error"]
                checked += 1
    assert checked >= 2 * 20
    page = anonymous.get("/posts", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert anonymous.get("/media/1").status_code == 401
    assert "not-the-token" not in wrong.get("/api/jobs").text


def test_cookie_requests_need_the_csrf_token(rt: Runtime) -> None:
    browser = client(rt, token=False)
    wrong_login = browser.post("/login", data={"token": "nope"}, follow_redirects=False)
    assert wrong_login.status_code == 401 and "contentq_session" not in wrong_login.headers.get("set-cookie", "")
    set_cookie = browser.post("/login", data={"token": (rt.settings.home / "web-token").read_text().strip()},
                              follow_redirects=False).headers["set-cookie"]  # fmt: skip
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    csrf = login(browser, rt)  # a login of its own: the CSRF token belongs to one session
    cookie = browser.cookies.get("contentq_session")
    assert cookie and cookie not in (rt.settings.home / "web-token").read_text()
    assert browser.get("/api/jobs").status_code == 200  # reading with the cookie is fine

    refused = browser.post("/api/queues/rewrite/pause")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert "rewrite" not in paused_queues(rt.redis)
    form = browser.post("/queues/rewrite/pause", data={"csrf": "forged"}, follow_redirects=False)
    assert form.status_code == 403 and "rewrite" not in paused_queues(rt.redis)

    assert browser.post("/api/queues/rewrite/pause", headers={"X-CSRF-Token": csrf}).status_code == 200
    done = browser.post("/queues/rewrite/resume", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303 and "rewrite" not in paused_queues(rt.redis)


def test_bad_input_gets_a_4xx_json_error(rt: Runtime) -> None:
    tc = client(rt)
    cases = [
        ("GET", "/api/jobs/nope", 404, "no job 'nope'"),
        # A value outside what the document declares (an enum, a pattern, a range) is a 422, named
        ("GET", "/api/jobs?status=weird", 422, "status: Input should be 'queued'"),
        ("GET", "/api/jobs?queue=weird", 422, "queue"),
        ("GET", "/api/jobs?cursor=garbage", 422, "cursor"),
        ("GET", "/api/jobs?limit=0", 422, "limit"),
        ("GET", "/api/jobs?since=yesterday", 422, "since"),
        ("GET", "/api/posts/99", 404, "no post 99"),
        ("GET", f"/api/posts/{2**70}", 422, "post_id"),
        ("GET", "/api/posts?state=weird", 422, "state"),
        ("POST", "/api/jobs/nope/retry", 404, "no job"),
        ("POST", "/api/posts/99/approve", 404, "no post 99"),
        ("GET", "/api/stats?since=-5h", 422, "since"),
        ("GET", "/api/nothing-here", 404, ""),
    ]
    for method, url, status, text in cases:
        response = tc.request(method, url)
        assert response.status_code == status, (url, response.status_code, response.text)
        assert text in json_of(response)["error"], (url, response.text)
    for body in ('{"kind": "noop"}', "not json", '{"kind": "nope", "key": "k"}', '{"kind": "call", "key": "k"}'):
        response = tc.post("/api/jobs", content=body, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500 and json_of(response)["error"], (body, response.text)
    with tc.stream("GET", "/api/events", headers={"Last-Event-ID": "junk"}) as response:
        assert response.status_code == 400


def test_pagination_walks_10000_jobs_once_each_newest_first(rt: Runtime) -> None:
    stamp = "2025-01-01T00:00:%02d+00:00"
    rows = [
        (
            f"noop-{n}",
            "noop",
            "maintenance",
            str(n),
            "failed" if n % 10 == 0 else "succeeded",
            stamp % (n % 60),
            stamp % (n % 60),
        )
        for n in range(10_000)
    ]  # fmt: skip  -- many jobs share a second: the cursor must break ties
    with rt.store.transaction() as conn:
        conn.executemany(
            "INSERT INTO jobs (id, kind, queue, key, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    tc = client(rt)
    for status, expected in ((None, 10_000), ("failed", 1_000)):
        seen: list[str] = []
        created: list[str] = []
        cursor = None
        while True:
            params = {"limit": 500} | ({"status": status} if status else {}) | ({"cursor": cursor} if cursor else {})
            page = tc.get("/api/jobs", params=params).json()
            assert page["total"] == expected
            seen += [j["id"] for j in page["items"]]
            created += [j["created_at"] for j in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == expected and len(set(seen)) == expected
        assert created == sorted(created, reverse=True)
    html = tc.get("/jobs", params={"status": "failed", "limit": 100}, headers={"Accept": "text/html"})
    assert html.status_code == 200 and html.text.count('data-field="status"') == 100 and "Next page" in html.text


def test_token_is_private_printed_and_rotated(home: Path, rt: Runtime) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["web", "token"])
    assert first.exit_code == 0, first.output
    token = first.output.strip()
    path = token_path(rt.settings)
    assert path.read_text().strip() == token and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    tc = client(rt)
    assert tc.get("/api/jobs").status_code == 200
    rotated = runner.invoke(cli, ["web", "token", "--rotate"])
    assert rotated.exit_code == 0 and token not in rotated.output
    assert tc.get("/api/jobs").status_code == 401  # the old token stopped working without a restart
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_secrets_never_reach_a_page_or_an_answer(rt: Runtime) -> None:
    tc = client(rt)
    secret = "sk-live" + "A" * 30
    job = failed_job(rt, "s", error=f"OpenAI refused key {secret}")
    assert secret not in tc.get(f"/api/jobs/{job}").text
    assert secret not in tc.get("/api/jobs").text
    login(browser := client(rt, token=False), rt)
    for url in (f"/jobs/{job}", "/jobs?status=failed"):
        page = browser.get(url, headers={"Accept": "text/html"})
        assert page.status_code == 200 and secret not in page.text and "***" in page.text
    token = (rt.settings.home / "web-token").read_text().strip()
    for url in ("/", "/jobs", "/posts", "/usage"):
        assert token not in browser.get(url, headers={"Accept": "text/html"}).text
    assert json.dumps(token) not in tc.get("/api/openapi.json").text


def test_a_last_event_id_the_feed_never_sent_is_refused_with_400(rt: Runtime) -> None:
    tc = client(rt)
    too_big = str(2**63)  # one past SQLite's INTEGER: it used to reach the query and end the stream empty
    for value in ("1|x|99999999999999999999999", f"1|{too_big}", f"{too_big}|1", "1|2|3", "-1|0", "1.5|0", "1|"):
        with tc.stream("GET", "/api/events", params={"max_events": 1}, headers={"Last-Event-ID": value}) as response:
            response.read()
        assert response.status_code == 400, (value, response.status_code)
        assert "bad Last-Event-ID" in json_of(response)["error"], value


def test_the_post_feed_follows_commit_order_not_the_writers_clock(rt: Runtime) -> None:
    # A writer that read the clock (t1) before another writer's change (t2) but committed after it.
    tc = client(rt)
    slow = add_post(rt, "slow", state="awaiting_approval", updated_at="2020-01-01T00:00:00+00:00")
    fast = add_post(rt, "fast", state="awaiting_approval")
    with tc.stream("GET", "/api/events", params={"since_start": True, "max_events": 2}) as response:
        body = "".join(response.iter_text())
    last_id = [line[4:] for line in body.splitlines() if line.startswith("id: ")][-1]
    rt.store.execute(
        "UPDATE posts SET state = 'scheduled', updated_at = '2020-06-01T00:00:00+00:00' WHERE id = ?", (slow,)
    )
    rt.store.execute("UPDATE posts SET state = 'scheduled', updated_at = ? WHERE id = ?", (iso(), fast))
    add_post(rt, "later", state="awaiting_approval")  # a third change: the stream has two to send either way
    with tc.stream("GET", "/api/events", params={"max_events": 2}, headers={"Last-Event-ID": last_id}) as response:
        body = "".join(response.iter_text())
    changes = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert [(c["id"], c["state"]) for c in changes] == [(slow, "scheduled"), (fast, "scheduled")]


def test_post_jobs_need_an_existing_post_keyed_by_its_id(rt: Runtime) -> None:
    write_config(rt.settings.home, route_toml())
    tc = client(rt)
    post_id = add_post(rt, "Ready", state="rewritten")
    missing = tc.post("/api/jobs", json={"kind": "publish", "post_id": 999999})
    assert missing.status_code == 404 and "no post 999999" in json_of(missing)["error"]
    for body in ({"kind": "publish", "key": "x", "post_id": post_id}, {"kind": "rewrite", "key": "x"},
                 {"kind": "imagegen"}, {"kind": "publish", "post_id": post_id, "delay_s": 60}):  # fmt: skip
        refused = tc.post("/api/jobs", json=body)
        assert refused.status_code == 400 and json_of(refused)["error"], (body, refused.text)

    first = tc.post("/api/jobs", json={"kind": "publish", "post_id": post_id})
    assert first.status_code == 201, first.text
    job = first.json()["job"]
    assert (job["kind"], job["key"], job["post_id"]) == ("publish", str(post_id), post_id)
    assert get_post(rt.store, post_id)["state"] == "scheduled"  # `contentq publish ID`'s path: now, skipping the slot
    other_key = tc.post("/api/jobs", json={"kind": "publish", "key": "again", "post_id": post_id})
    assert other_key.status_code == 400
    active = rt.store.scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'publish' AND post_id = ? AND status = 'queued'", (post_id,)
    )
    assert active == 1

    fresh = add_post(rt, "Fresh", state="collected")
    rewrite = tc.post("/api/jobs", json={"kind": "rewrite", "key": str(fresh)})
    assert rewrite.status_code == 201 and rewrite.json()["job"]["key"] == str(fresh)
    assert tc.post("/api/jobs", json={"kind": "rewrite", "post_id": fresh}).json()["deduplicated"] is True
    done = tc.post("/api/jobs", json={"kind": "rewrite", "post_id": post_id})
    assert done.status_code == 409 and "post is scheduled" in json_of(done)["error"]


def test_media_of_a_non_media_type_is_a_download_not_a_page(rt: Runtime) -> None:
    tc = client(rt)
    post_id = add_post(rt, "files", state="awaiting_approval")
    served = {}
    for mime in ("text/html", "image/svg+xml", None, "image/jpeg"):
        media_id = add_media(rt, post_id, "document", data=f"<script>alert(1)</script> {mime}".encode())
        rt.store.execute("UPDATE media SET mime = ? WHERE id = ?", (mime, media_id))
        served[mime] = tc.get(f"/media/{media_id}")
    for mime in ("text/html", "image/svg+xml", None):
        response = served[mime]
        assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream", mime
        assert response.headers["content-disposition"].startswith("attachment;"), mime
        assert response.headers["x-content-type-options"] == "nosniff"
    photo_response = served["image/jpeg"]
    assert photo_response.headers["content-type"] == "image/jpeg"
    assert "content-disposition" not in photo_response.headers
