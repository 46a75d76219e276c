"""The owner's Users page and /api/users: every action and every refusal, as each role. Real app, real SQLite,
argon2-cffi's hasher, the test Valkey; users made and checked through the functions `contentq users` calls."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from contentq.people import users
from contentq.runtime.context import Runtime
from contentq.web.app import create_app
from tests.web_helpers import PASSWORDS, add_people, as_user, login_as, two_routes

Panel = tuple[Runtime, dict[str, int], dict[str, str]]


@pytest.fixture
def panel(rt: Runtime) -> Panel:
    return rt, two_routes(rt), add_people(rt)


def audit_rows(rt: Runtime, target: str) -> list[tuple[str, str]]:
    return [
        (r["actor"], r["action"])
        for r in rt.store.query("SELECT actor, action FROM audit_events WHERE target = ? ORDER BY id", (target,))
    ]


def test_the_owner_lists_users_with_routes_logins_sessions_and_tokens(panel: Panel) -> None:
    rt, _, tokens = panel
    browser = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    login_as(browser, "eddie")
    made = as_user(rt, tokens["olga"]).post("/api/users/eddie/tokens", json={"label": "ci"})
    assert made.status_code == 201, made.text
    listed = as_user(rt, tokens["olga"]).get("/api/users")
    assert listed.status_code == 200, listed.text
    by_name = {u["name"]: u for u in listed.json()}
    assert list(by_name) == ["olga", "eddie", "vera"]
    eddie = by_name["eddie"]
    assert (eddie["role"], eddie["routes"]) == ("editor", ["news"])
    assert eddie["last_login"] is not None and by_name["vera"]["last_login"] is None
    assert len(eddie["sessions"]) == 1 and eddie["sessions"][0]["user"] == "eddie"
    hints = [(None, tokens["eddie"][-4:]), ("ci", made.json()["hint"])]
    assert [(t["label"], t["hint"]) for t in eddie["tokens"]] == hints
    assert all(t["created_at"] for t in eddie["tokens"]) and eddie["tokens"][0]["last_used_at"] is None
    assert "password_hash" not in listed.text and tokens["eddie"] not in listed.text
    assert as_user(rt, tokens["olga"]).get("/api/users/EDDIE").json()["name"] == "eddie"


def test_add_a_user_with_a_typed_password_and_with_a_generated_one(panel: Panel) -> None:
    rt, _, tokens = panel
    olga = as_user(rt, tokens["olga"])
    typed = olga.post(
        "/api/users",
        json={"name": "nina", "role": "editor", "routes": ["sport"], "password": "nina-password-1",
              "password_again": "nina-password-1"},
    )  # fmt: skip
    assert typed.status_code == 201, typed.text
    answer = typed.json()
    assert (answer["role"], answer["routes"], answer["generated_password"]) == ("editor", ["sport"], None)
    assert users.verify_password(users.find(rt, "nina"), "nina-password-1")
    made = olga.post("/api/users", json={"name": "gena", "role": "viewer", "generate": True})
    assert made.status_code == 201, made.text
    shown = made.json()["generated_password"]
    assert len(shown) >= 20 and "*" not in shown  # shown as it is, once (never masked)
    assert users.verify_password(users.find(rt, "gena"), shown)
    assert audit_rows(rt, "nina") == [("web:olga", "added")] and audit_rows(rt, "gena") == [("web:olga", "added")]
    assert shown not in str(rt.store.query("SELECT * FROM audit_events"))
    logged_in = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    assert logged_in.post("/login", data={"name": "gena", "password": shown}, follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"name": "olga", "role": "viewer", "generate": True}, 409, "user 'olga' exists already"),
        ({"name": "Olga", "role": "viewer", "generate": True}, 409, "exists already"),
        ({"name": "nina", "role": "viewer", "password": "short"}, 422, "the password is 5 characters; use at least 10"),
        ({"name": "nina", "role": "viewer", "password": "long-enough-1", "password_again": "long-enough-2"}, 422,
         "the two passwords differ"),
        ({"name": "nina", "role": "viewer"}, 422, "give a password, typed twice, or ask for a generated one"),
        ({"name": "nina", "role": "viewer", "password": "long-enough-1", "password_again": "long-enough-1",
          "generate": True}, 422, "not both"),
        ({"name": "nina", "role": "editor", "routes": ["weather"], "generate": True}, 422, "no route 'weather'"),
        ({"name": "nina", "role": "viewer", "routes": ["news"], "generate": True}, 422, "only an editor has routes"),
        ({"name": "-nina", "role": "viewer", "generate": True}, 422, "name"),
        ({"name": "nina", "role": "admin", "generate": True}, 422, "role"),
    ],
)  # fmt: skip
def test_adding_refuses_with_a_sentence(panel: Panel, body: dict[str, Any], status: int, says: str) -> None:
    rt, _, tokens = panel
    refused = as_user(rt, tokens["olga"]).post("/api/users", json=body)
    assert refused.status_code == status, refused.text
    assert says in refused.json()["error"], refused.text
    assert users.find(rt, "nina") is None
    assert users.find(rt, "olga")["role"] == "owner"  # type: ignore[index]


def test_change_role_and_routes_takes_effect_at_the_next_request(panel: Panel) -> None:
    rt, ids, tokens = panel
    olga, eddie = as_user(rt, tokens["olga"]), as_user(rt, tokens["eddie"])
    assert eddie.post(f"/api/posts/{ids['sport']}/approve").status_code == 403
    changed = olga.patch("/api/users/eddie", json={"routes": ["news", "sport"]})
    assert changed.status_code == 200 and changed.json()["routes"] == ["news", "sport"], changed.text
    assert eddie.post(f"/api/posts/{ids['sport']}/approve").status_code == 200
    viewer = olga.patch("/api/users/eddie", json={"role": "viewer"})
    assert viewer.status_code == 200 and (viewer.json()["role"], viewer.json()["routes"]) == ("viewer", [])
    assert eddie.get("/api/me").json()["role"] == "viewer"
    assert audit_rows(rt, "eddie")[-2:] == [("web:olga", "changed"), ("web:olga", "changed")]

    refusals = [
        (olga.patch("/api/users/olga", json={"role": "editor"}), 409, "olga is the only owner; add another owner"),
        (olga.patch("/api/users/vera", json={"routes": ["news"]}), 422, "only an editor has routes"),
        (olga.patch("/api/users/vera", json={"role": "editor", "routes": ["moon"]}), 422, "no route 'moon'"),
        (olga.patch("/api/users/nobody", json={"role": "viewer"}), 404, "no user 'nobody'"),
    ]
    for answer, status, says in refusals:
        assert answer.status_code == status and says in answer.json()["error"], answer.text
    assert users.find(rt, "olga")["role"] == "owner"  # type: ignore[index]


def test_reset_a_password_ends_the_users_sessions(panel: Panel) -> None:
    rt, _, tokens = panel
    browser = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    login_as(browser, "vera")
    olga = as_user(rt, tokens["olga"])
    for body, says in [
        ({"password": "short"}, "use at least 10"),
        ({"password": "vera-new-password", "password_again": "vera-new-passw0rd"}, "the two passwords differ"),
    ]:
        refused = olga.put("/api/users/vera/password", json=body)
        assert refused.status_code == 422 and says in refused.json()["error"], refused.text
    assert browser.get("/api/me").status_code == 200  # refused: nothing changed
    new = {"password": "vera-new-password", "password_again": "vera-new-password"}
    reset = olga.put("/api/users/vera/password", json=new)
    assert reset.json() == {"name": "vera", "sessions_ended": 1, "generated_password": None}, reset.text
    assert browser.get("/api/me").status_code == 401
    assert users.verify_password(users.find(rt, "vera"), "vera-new-password")
    generated = olga.put("/api/users/vera/password", json={"generate": True}).json()["generated_password"]
    assert users.verify_password(users.find(rt, "vera"), generated)
    assert audit_rows(rt, "vera")[-2:] == [("web:olga", "password_changed")] * 2
    assert olga.put("/api/users/nobody/password", json={"generate": True}).status_code == 404


def test_remove_a_user_but_not_the_last_owner_nor_yourself_unconfirmed(panel: Panel) -> None:
    rt, _, tokens = panel
    olga = as_user(rt, tokens["olga"])
    removed = olga.delete("/api/users/vera")
    assert removed.status_code == 200 and removed.json() == {"name": "vera", "role": "viewer"}
    assert users.find(rt, "vera") is None and as_user(rt, tokens["vera"]).get("/api/me").status_code == 401
    assert audit_rows(rt, "vera")[-1] == ("web:olga", "removed")

    myself = olga.delete("/api/users/olga")
    assert myself.status_code == 409 and "this removes you (olga)" in myself.json()["error"], myself.text
    last = olga.delete("/api/users/olga", params={"confirm_self": True})
    assert last.status_code == 409 and "olga is the only owner of users who remain" in last.json()["error"]
    assert olga.delete("/api/users/nobody").status_code == 404

    olga.post("/api/users", json={"name": "otto", "role": "owner", "generate": True})
    assert olga.delete("/api/users/olga").status_code == 409  # another owner now, still not without confirming
    gone = olga.delete("/api/users/olga", params={"confirm_self": True})
    assert gone.status_code == 200, gone.text
    assert olga.get("/api/me").status_code == 401  # their token went with them


def test_issue_and_revoke_tokens(panel: Panel) -> None:
    rt, _, tokens = panel
    olga = as_user(rt, tokens["olga"])
    made = olga.post("/api/users/vera/tokens", json={"label": "grafana"})
    assert made.status_code == 201, made.text
    token = made.json()
    assert token["token"].startswith("cq_") and token["user"] == "vera" and token["label"] == "grafana"
    assert as_user(rt, token["token"]).get("/api/me").json()["name"] == "vera"
    listed = olga.get("/api/users/vera").json()["tokens"]
    assert [t["label"] for t in listed] == [None, "grafana"] and token["token"] not in str(listed)
    assert rt.store.scalar("SELECT COUNT(*) FROM user_tokens WHERE hash = ?", (token["token"],)) == 0
    revoked = olga.delete(f"/api/users/vera/tokens/{token['id']}")
    assert revoked.status_code == 200 and revoked.json() == {"user": "vera", "id": token["id"]}
    assert as_user(rt, token["token"]).get("/api/me").status_code == 401
    assert as_user(rt, tokens["vera"]).get("/api/me").status_code == 200  # the other stays
    again = olga.delete(f"/api/users/vera/tokens/{token['id']}")
    assert again.status_code == 404 and "no live token" in again.json()["error"]
    assert olga.delete(f"/api/users/eddie/tokens/{token['id']}").status_code == 404  # not eddie's
    assert olga.post("/api/users/vera/tokens", json={"label": "a\nb"}).status_code == 422
    assert [a for _, a in audit_rows(rt, "vera")][-2:] == ["token_issued", "token_revoked"]


def test_list_and_revoke_sessions(panel: Panel) -> None:
    rt, _, tokens = panel
    one = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    two = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    login_as(one, "eddie")
    login_as(two, "eddie")
    olga = as_user(rt, tokens["olga"])
    sessions = olga.get("/api/users/eddie").json()["sessions"]
    assert len(sessions) == 2
    assert olga.delete(f"/api/users/vera/sessions/{sessions[0]['id']}").status_code == 404  # not vera's
    ended = olga.delete(f"/api/users/eddie/sessions/{sessions[0]['id']}")
    assert ended.status_code == 200 and ended.json() == {"id": sessions[0]["id"], "user": "eddie"}
    assert sorted(c.get("/api/me").status_code for c in (one, two)) == [200, 401]
    assert olga.delete("/api/users/eddie/sessions").json() == {"user": "eddie", "ended": 1}
    assert [c.get("/api/me").status_code for c in (one, two)] == [401, 401]
    assert [a for _, a in audit_rows(rt, sessions[0]["id"])] == ["revoked"]


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_every_users_action_is_refused_to_a_non_owner(panel: Panel, role: str) -> None:
    rt, _, tokens = panel
    name = {"editor": "eddie", "viewer": "vera"}[role]
    tc = as_user(rt, tokens[name])
    before = rt.store.query("SELECT name, role, routes, password_hash FROM users ORDER BY name")
    tried = [
        tc.get("/api/users"), tc.get("/api/users/olga"),
        tc.post("/api/users", json={"name": "mallory", "role": "owner", "generate": True}),
        tc.patch(f"/api/users/{name}", json={"role": "owner"}),
        tc.put("/api/users/olga/password", json={"generate": True}),
        tc.delete("/api/users/olga"), tc.post("/api/users/olga/tokens", json={"label": "mine now"}),
        tc.delete("/api/users/olga/tokens/1"), tc.delete("/api/users/olga/sessions"),
        tc.delete("/api/users/olga/sessions/abcdef12"),
    ]  # fmt: skip
    for answer in tried:
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"].startswith(f"forbidden: {name} is {'an' if role == 'editor' else 'a'} {role}")
        assert "manage users" in answer.json()["error"]
    assert rt.store.query("SELECT name, role, routes, password_hash FROM users ORDER BY name") == before
    assert rt.store.scalar("SELECT COUNT(*) FROM user_tokens") == 3


# -- the page ---------------------------------------------------------------------------------------------------


def csrf_of(html: str) -> str:
    marker = 'name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def test_the_page_adds_an_editor_shows_a_token_once_and_refuses_with_the_sentence(panel: Panel) -> None:
    rt, _, _ = panel
    tc = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    csrf = login_as(tc, "olga")
    html = {"Accept": "text/html"}
    page = tc.get("/users", headers=html)
    assert page.status_code == 200 and 'href="/users"' in page.text and 'id="user-eddie"' in page.text
    form = {"csrf": csrf, "name": "nina", "role": "editor", "routes": ["sport"], "password": "nina-password-1",
            "password_again": "nina-password-2"}  # fmt: skip
    refused = tc.post("/users", data=form, headers=html)
    assert refused.status_code == 422 and "the two passwords differ" in refused.text
    assert 'value="nina"' in refused.text and "nina-password" not in refused.text  # kept what was typed, not that
    form["password_again"] = "nina-password-1"
    added = tc.post("/users", data=form, headers=html, follow_redirects=False)
    assert added.status_code == 303 and added.headers["location"] == "/users#user-nina"
    shown = tc.get("/users", headers=html).text
    assert "user nina added: editor on routes sport" in shown
    assert users.find(rt, "nina")["routes"] == ["sport"]  # type: ignore[index]

    issued = tc.post("/users/nina/tokens", data={"csrf": csrf, "label": "phone"}, headers=html)
    assert issued.status_code == 201
    token = issued.text.split('id="secret-value" readonly value="')[1].split('"')[0]
    assert token.startswith("cq_") and as_user(rt, token).get("/api/me").json()["name"] == "nina"
    assert token not in tc.get("/users", headers=html).text  # once
    duplicate = tc.post("/users", data=form | {"name": "NINA"}, headers=html)
    assert duplicate.status_code == 409 and "exists already" in duplicate.text
    without_csrf = tc.post("/users/nina/remove", data={}, headers=html)
    assert without_csrf.status_code == 403 and users.find(rt, "nina") is not None
    me = tc.post("/users/olga/remove", data={"csrf": csrf}, headers=html)
    assert me.status_code == 409 and "this removes you (olga)" in me.text
    assert [(a, act) for a, act in audit_rows(rt, "nina")] == [("web:olga", "added"), ("web:olga", "token_issued")]


def test_the_page_is_an_owners_only(panel: Panel) -> None:
    rt, _, _ = panel
    for name in ("eddie", "vera"):
        tc = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
        csrf = login_as(tc, name, PASSWORDS[name])
        assert 'href="/users"' not in tc.get("/posts", headers={"Accept": "text/html"}).text
        page = tc.get("/users", headers={"Accept": "text/html"})
        assert page.status_code == 403 and "may not manage users" in page.text
        tried = tc.post("/users", data={"csrf": csrf, "name": "mallory", "role": "owner", "generate": "true"},
                        headers={"Accept": "text/html"})  # fmt: skip
        assert tried.status_code == 403 and users.find(rt, "mallory") is None
