"""Roles in the panel (issue 24): every route of the app (API and pages) walked as an owner, an editor and a
viewer; an editor acts on the posts of their routes only; a viewer changes nothing; every refusal is a clear 403.
Real app, real SQLite, the test Valkey, users made by the same functions `contentq users` calls."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from contentq.runtime.context import Runtime
from contentq.runtime.queues import paused_queues
from contentq.web.app import create_app
from contentq.web.deps import permissions_of
from tests.web_helpers import PASSWORDS, add_people, as_user, failed_job, login_as, two_routes

ALLOWED = {
    "owner": {"public", "read", "posts", "jobs", "queues", "usage", "admin"},
    "editor": {"public", "read", "posts"},
    "viewer": {"public", "read"},
}
"""What each role may, as issue 24 says it (written out here, not read from contentq.people.roles)."""

INTENDED = {
    ("GET", "/api/jobs"): "read", ("POST", "/api/jobs"): "jobs", ("GET", "/api/jobs/{job_id}"): "read",
    ("GET", "/api/jobs/{job_id}/events"): "read", ("POST", "/api/jobs/{job_id}/retry"): "jobs",
    ("POST", "/api/jobs/{job_id}/cancel"): "jobs", ("POST", "/api/bulk/retry"): "jobs",
    ("POST", "/api/bulk/cancel"): "jobs", ("GET", "/api/queues"): "read",
    ("POST", "/api/queues/{name}/pause"): "queues",
    ("POST", "/api/queues/{name}/resume"): "queues", ("GET", "/api/workers"): "read", ("GET", "/api/posts"): "read",
    ("GET", "/api/posts/{post_id}"): "read", ("POST", "/api/posts/{post_id}/approve"): "posts",
    ("POST", "/api/posts/{post_id}/reject"): "posts", ("PUT", "/api/posts/{post_id}/text"): "posts",
    ("POST", "/api/posts/{post_id}/schedule"): "posts", ("DELETE", "/api/posts/{post_id}/schedule"): "posts",
    ("POST", "/api/posts/{post_id}/publish"): "posts", ("GET", "/api/sources"): "read",
    ("GET", "/api/schedule"): "read", ("GET", "/api/stats"): "usage", ("GET", "/api/usage"): "usage",
    ("GET", "/api/metrics"): "usage", ("GET", "/api/dashboard"): "read", ("GET", "/api/events"): "read",
    ("GET", "/api/me"): "read", ("GET", "/api/audit"): "admin", ("GET", "/api/sessions"): "admin",
    ("DELETE", "/api/sessions/{session_id}"): "admin",
    ("GET", "/login"): "public", ("POST", "/login"): "public", ("POST", "/logout"): "public", ("GET", "/"): "read",
    ("POST", "/queues/{name}/{action}"): "queues", ("GET", "/jobs"): "read", ("GET", "/jobs/bulk"): "jobs",
    ("POST", "/jobs/bulk"): "jobs", ("GET", "/jobs/{job_id}"): "read", ("POST", "/jobs/{job_id}/retry"): "jobs",
    ("POST", "/jobs/{job_id}/cancel"): "jobs", ("GET", "/posts"): "read", ("GET", "/posts/{post_id}"): "read",
    ("POST", "/posts/{post_id}/{action}"): "posts", ("GET", "/workers"): "read", ("GET", "/sources"): "read",
    ("GET", "/schedule"): "read", ("GET", "/usage"): "usage", ("GET", "/media/{media_id}"): "read",
    ("GET", "/audit"): "admin", ("GET", "/sessions"): "admin", ("POST", "/sessions/{session_id}/revoke"): "admin",
    ("GET", "/api/docs"): "read", ("GET", "/favicon.ico"): "public", ("GET", "/static/preview.css"): "public",
    ("GET", "/static/preview.js"): "public",
    ("GET", "/api/users"): "admin", ("POST", "/api/users"): "admin", ("GET", "/api/users/{user}"): "admin",
    ("PATCH", "/api/users/{user}"): "admin", ("PUT", "/api/users/{user}/password"): "admin",
    ("DELETE", "/api/users/{user}"): "admin", ("POST", "/api/users/{user}/tokens"): "admin",
    ("DELETE", "/api/users/{user}/tokens/{token_id}"): "admin", ("DELETE", "/api/users/{user}/sessions"): "admin",
    ("DELETE", "/api/users/{user}/sessions/{session_id}"): "admin",
    ("GET", "/users"): "admin", ("POST", "/users"): "admin", ("POST", "/users/{user}/role"): "admin",
    ("POST", "/users/{user}/password"): "admin", ("POST", "/users/{user}/remove"): "admin",
    ("POST", "/users/{user}/tokens"): "admin", ("POST", "/users/{user}/tokens/{token_id}/revoke"): "admin",
    ("POST", "/users/{user}/sessions/{session_id}/revoke"): "admin", ("POST", "/users/{user}/logout"): "admin",
}  # fmt: skip
"""The permission each route of today is meant to need. A route added later needs only to declare one (below)."""

WRITES = ("POST", "PUT", "PATCH", "DELETE")

JSON_BODIES = {
    "/api/jobs": {"kind": "noop", "key": "walk"},
    "/api/bulk/retry": {"dry_run": True},
    "/api/bulk/cancel": {"dry_run": True},
    "/api/posts/{post_id}/reject": {"reason": "walked"},
    "/api/posts/{post_id}/text": {"html": "Edited <b>text</b>"},
    "/api/posts/{post_id}/schedule": {"at": "+2h"},
    "/api/users": {"name": "walker", "role": "viewer", "generate": True},
    "/api/users/{user}": {"role": "viewer"},
    "/api/users/{user}/password": {"generate": True},
    "/api/users/{user}/tokens": {"label": "walked"},
}
FORMS = {
    "/jobs/bulk": {"action": "retry", "status": "failed"},
    "/login": {"name": "vera", "password": PASSWORDS["vera"]},
    "/posts/{post_id}/{action}": {"html": "Edited"},
    "/users": {"name": "walker", "role": "viewer", "generate": "true"},
    "/users/{user}/role": {"role": "viewer"},
    "/users/{user}/password": {"generate": "true"},
    "/users/{user}/tokens": {"label": "walked"},
}


def operations(app: Any) -> list[tuple[str, APIRoute]]:
    """Every (method, route) of the app, the included routers' too (FastAPI 0.16x keeps those behind an
    _IncludedRouter in app.routes; iter_route_contexts walks them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before 0.160: app.routes holds every route itself
        routes = list(app.routes)
    else:
        routes = [context.original_route for context in iter_route_contexts(app.routes)]
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found += [(method, route) for method in sorted(route.methods - {"HEAD"})]
    return found


def request_of(method: str, route: APIRoute, ids: dict[str, Any], post_route: str) -> dict[str, Any]:
    values = {
        "post_id": ids[post_route], "job_id": ids["job"], "name": "publish", "media_id": 1,
        "session_id": "abcdef12", "user": "eddie", "token_id": 1,
        "action": "approve" if "post_id" in route.path else "pause",
    }  # fmt: skip
    path = route.path_format.format(**{k: values[k] for k in route.param_convertors})
    request: dict[str, Any] = {"method": method, "url": path}
    api = route.path.startswith("/api/") and route.path != "/api/docs"
    request["headers"] = {"Accept": "application/json" if api else "text/html"}
    if route.path == "/api/events":
        request["params"] = {"once": "true"}
    if method in WRITES and route.path in JSON_BODIES:
        request["json"] = JSON_BODIES[route.path]
    elif method in WRITES and route.path in FORMS:
        request["data"] = FORMS[route.path]
    return request


@pytest.fixture
def panel(rt: Runtime) -> tuple[Runtime, dict[str, Any], dict[str, str]]:
    ids: dict[str, Any] = two_routes(rt)
    ids["job"] = failed_job(rt, "walked")
    return rt, ids, add_people(rt)


def test_every_route_declares_one_permission() -> None:
    """A route added without `needs(...)` fails here (and answers 403 to all but an owner meanwhile); one that
    changes something never declares read or public (logging in and out aside)."""
    from contentq.settings import load_settings

    app = create_app(load_settings())
    problems = []
    for method, route in operations(app):
        declared = [p.value for p in permissions_of(route)]
        if len(declared) != 1:
            problems.append(f"{method} {route.path} declares {declared or 'no permission'}: add needs(Permission.…)")
            continue
        intended = INTENDED.get((method, route.path))
        if intended is not None and declared[0] != intended:
            problems.append(f"{method} {route.path} declares {declared[0]}, meant to need {intended}")
        if method in WRITES and declared[0] in ("read", "public") and route.path not in ("/login", "/logout"):
            problems.append(f"{method} {route.path} changes something but declares {declared[0]}")
    assert not problems, "\n".join(problems)
    assert {(m, r.path) for m, r in operations(app)} >= set(INTENDED), "a route of the table is gone"


@pytest.mark.parametrize("role", ["viewer", "editor", "owner"])
def test_walk_every_route_as_each_role(panel: tuple[Runtime, dict[str, Any], dict[str, str]], role: str) -> None:
    rt, ids, tokens = panel
    name = {"owner": "olga", "editor": "eddie", "viewer": "vera"}[role]
    tc = as_user(rt, tokens[name])
    walked = 0
    for method, route in operations(tc.app):
        permission = permissions_of(route)[0].value
        # A post's action is tried on the post of the route the editor does not have, then on theirs.
        on_routes = ["sport", "news"] if "post_id" in route.path else ["news"]
        for post_route in on_routes:
            allowed = permission in ALLOWED[role] and not (
                role == "editor" and permission == "posts" and post_route != "news"
            )
            response = tc.request(**request_of(method, route, ids, post_route))
            walked += 1
            what = f"{role} {method} {route.path} (post on {post_route}): {response.status_code} {response.text[:200]}"
            assert response.status_code < 500, what
            if allowed:
                assert response.status_code not in (401, 403), what
                continue
            assert response.status_code == 403, what
            if request_of(method, route, ids, post_route)["headers"]["Accept"] == "application/json":
                assert response.json()["error"].startswith("forbidden: "), what
            else:
                assert response.headers["content-type"].startswith("text/html"), what
                assert "forbidden: " in response.text, what
    assert walked >= len(INTENDED)


def test_editor_approves_and_edits_their_route_and_nothing_else(
    panel: tuple[Runtime, dict[str, Any], dict[str, str]],
) -> None:
    """The issue's example: approve and edit a post of an assigned route; 403 on another route's post, on
    retrying a job, on pausing a queue and on usage — with a sentence, never a 500."""
    rt, ids, tokens = panel
    tc = as_user(rt, tokens["eddie"])
    edited = tc.put(f"/api/posts/{ids['news']}/text", json={"html": "Edited by <b>Eddie</b>"})
    assert edited.status_code == 200, edited.text
    approved = tc.post(f"/api/posts/{ids['news']}/approve")
    assert approved.status_code == 200 and approved.json()["state"] == "scheduled", approved.text
    post = rt.store.one("SELECT state, rewrite_html FROM posts WHERE id = ?", (ids["news"],))
    assert post == {"state": "scheduled", "rewrite_html": "Edited by <b>Eddie</b>"}

    refusals = {
        "another route's post": tc.post(f"/api/posts/{ids['sport']}/approve"),
        "another route's edit": tc.put(f"/api/posts/{ids['sport']}/text", json={"html": "no"}),
        "retrying a job": tc.post(f"/api/jobs/{ids['job']}/retry"),
        "pausing a queue": tc.post("/api/queues/publish/pause"),
        "usage": tc.get("/api/usage"),
        "the audit": tc.get("/api/audit"),
    }
    for what, response in refusals.items():
        assert response.status_code == 403, (what, response.text)
        assert response.json()["error"].startswith("forbidden: eddie"), (what, response.text)
    assert "route 'sport'" in refusals["another route's post"].json()["error"]
    assert "news" in refusals["another route's post"].json()["error"]
    assert rt.store.scalar("SELECT state FROM posts WHERE id = ?", (ids["sport"],)) == "awaiting_approval"
    assert rt.store.scalar("SELECT status FROM jobs WHERE id = ?", (ids["job"],)) == "failed"
    assert "publish" not in paused_queues(rt.redis)


def test_editor_in_the_browser_sees_403_pages_and_no_usage_link(
    panel: tuple[Runtime, dict[str, Any], dict[str, str]],
) -> None:
    rt, ids, _ = panel
    tc = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    csrf = login_as(tc, "eddie")
    html = {"Accept": "text/html"}
    dashboard = tc.get("/", headers=html)
    assert "eddie · editor" in dashboard.text
    assert 'href="/usage"' not in dashboard.text and 'href="/audit"' not in dashboard.text
    ok = tc.post(f"/posts/{ids['news']}/approve", data={"csrf": csrf}, headers=html, follow_redirects=False)
    assert ok.status_code == 303
    for url in (f"/posts/{ids['sport']}/approve", "/queues/publish/pause", f"/jobs/{ids['job']}/retry"):
        refused = tc.post(url, data={"csrf": csrf}, headers=html, follow_redirects=False)
        assert refused.status_code == 403, (url, refused.text[:300])
        assert refused.headers["content-type"].startswith("text/html")
        assert "forbidden: eddie " in refused.text
    assert tc.get("/usage", headers=html).status_code == 403
    assert rt.store.scalar("SELECT state FROM posts WHERE id = ?", (ids["news"],)) == "scheduled"
    assert rt.store.scalar("SELECT state FROM posts WHERE id = ?", (ids["sport"],)) == "awaiting_approval"


def test_viewer_changes_nothing(panel: tuple[Runtime, dict[str, Any], dict[str, str]]) -> None:
    rt, ids, tokens = panel
    tables = ("posts", "jobs", "job_events", "post_changes", "users", "audit_events")
    queries = [f"SELECT * FROM {t}" for t in tables] + ["SELECT id, user, hash, revoked_at FROM user_tokens"]
    before = {q: rt.store.query(q) for q in queries}  # a token's last use is all that may change
    tc = as_user(rt, tokens["vera"])
    for method, route in operations(tc.app):
        if method in WRITES and route.path not in ("/login", "/logout"):
            response = tc.request(**request_of(method, route, ids, "news"))
            assert response.status_code == 403, (method, route.path, response.text[:200])
    assert {q: rt.store.query(q) for q in queries} == before
    assert not paused_queues(rt.redis)


def test_owner_user_ends_the_shared_token(rt: Runtime) -> None:
    """The panel's one token is the owner's until an owner user exists; then it logs nobody in, and the
    sessions made with it end; a user's own token works."""
    from contentq.web.auth import load_token
    from tests.web_helpers import client, login

    shared = client(rt)
    assert shared.get("/api/me").json() == {
        "name": "owner (panel token)", "role": "owner", "routes": [], "via": "shared",
        "permissions": ["read", "posts", "jobs", "queues", "usage", "admin"],
    }  # fmt: skip
    browser = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    login(browser, rt)
    assert browser.get("/jobs", headers={"Accept": "text/html"}, follow_redirects=False).status_code == 200
    tokens = add_people(rt)
    assert shared.get("/api/me").status_code == 401
    assert browser.get("/jobs", headers={"Accept": "text/html"}, follow_redirects=False).status_code == 303
    refused = browser.post("/login", data={"token": load_token(rt.settings)}, follow_redirects=False)
    assert refused.status_code == 401 and "an owner user exists" in refused.text
    me = as_user(rt, tokens["olga"]).get("/api/me").json()
    assert (me["name"], me["role"], me["via"]) == ("olga", "owner", "token")


def test_revoked_token_and_removed_user_are_refused(panel: tuple[Runtime, dict[str, Any], dict[str, str]]) -> None:
    from contentq.people import users

    rt, _, tokens = panel
    tc = as_user(rt, tokens["vera"])
    assert tc.get("/api/me").status_code == 200
    users.revoke_tokens(rt, "vera")
    assert tc.get("/api/me").status_code == 401
    eddie = as_user(rt, tokens["eddie"])
    assert eddie.get("/api/me").json()["routes"] == ["news"]
    users.set_role(rt, "eddie", routes=["news", "sport"])
    assert eddie.get("/api/me").json()["routes"] == ["news", "sport"]  # at the next request
    users.remove_user(rt, "eddie")
    assert eddie.get("/api/me").status_code == 401


def test_a_route_that_declares_no_permission_is_an_owners_only(
    panel: tuple[Runtime, dict[str, Any], dict[str, str]],
) -> None:
    """Fail closed: a router added later without `needs(...)` is refused to editors and viewers (403, with why)."""
    from fastapi import APIRouter

    rt, _, tokens = panel
    app = create_app(rt.settings, rt)
    extra = APIRouter(prefix="/api/insights")

    @extra.post("/refresh")
    def refresh() -> dict[str, bool]:
        return {"refreshed": True}

    app.include_router(extra)
    for name, status in (("olga", 200), ("eddie", 403), ("vera", 403)):
        tc = TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {tokens[name]}"})
        response = tc.post("/api/insights/refresh")
        assert response.status_code == status, (name, response.text)
        if status == 403:
            assert "declares no permission" in response.json()["error"]
