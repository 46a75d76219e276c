"""The post lifecycle (issue 20): one declared table of states and moves that every change of a post's state
goes through, each move recorded with its event, actor and reason, and the docs showing the same machine.

The end-to-end runs (a listener with a failing LLM, rejections from the CLI and the web, the donor deleting
posts; a worker SIGKILLed in the middle of a publication; the demo) end on one check: every move in the history
is one the table allows, made by a named actor, following on from the post's move before.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from contentq import actors, lifecycle
from contentq.cli.app import app
from contentq.clock import iso
from contentq.flow import pipeline
from contentq.flow.dispatch import dispatch
from contentq.intake.listen import Listener
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import load_settings
from contentq.store import open_store
from contentq.store.migrations import MIGRATIONS, migration_set
from contentq.store.posts import get_post
from tests.conftest import drain, start_worker, wait_for
from tests.fake_telegram import FakeTelegram
from tests.llm_server import LocalLLM, completion, error, local_llm  # noqa: F401 - fixture
from tests.publish_helpers import write_config
from tests.rewrite_helpers import answer
from tests.shared_telegram import visible
from tests.test_listen import listen, posts, settled, tg  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
ACTOR = re.compile(r"^(job|cli|web|listen):\S+$")


def history_problems(store_path: Path) -> list[str]:
    """What is wrong with the recorded history, read from the database file: a move the table does not allow, one
    without an actor, one that does not start where the move before ended, a post whose state is not the last."""
    conn = sqlite3.connect(store_path)
    conn.row_factory = sqlite3.Row
    problems: list[str] = []
    states = dict(conn.execute("SELECT id, state FROM posts").fetchall())
    rows = [dict(r) for r in conn.execute("SELECT * FROM post_changes ORDER BY id")]
    last: dict[int, str] = {}
    for row in rows:
        post, what = row["post_id"], f"post {row['post_id']}: {row['from_state']} → {row['state']} ({row['event']})"
        if not lifecycle.allowed(row):
            problems.append(f"{what}: not a move of the table")
        if not ACTOR.match(row["actor"] or ""):
            problems.append(f"{what}: actor {row['actor']!r}")
        if row["from_state"] != last.get(post):
            problems.append(f"{what}: the move before ended in {last.get(post)}")
        last[post] = row["state"]
    for post, state in states.items():
        if last.get(post) != state:
            problems.append(f"post {post} is {state}, its history ends in {last.get(post)}")
    conn.close()
    assert rows, "no history at all"
    return problems


def moves_of(rt: Runtime, post_id: int) -> list[tuple[str | None, str]]:
    return [(h["event"], h["actor"]) for h in lifecycle.history(rt.store, post_id)]


# -- the table, printed and drawn ------------------------------------------------------------------------


def test_posts_states_json_lists_every_state_and_every_move_with_its_event(home: Path) -> None:
    done = runner.invoke(app, ["posts", "states", "--json"])
    assert done.exit_code == 0, done.output
    machine = json.loads(done.output)
    assert [s["state"] for s in machine["states"]] == list(lifecycle.STATES)
    moves = {m["event"]: (tuple(m["from"]), m["to"], tuple(m["then"])) for m in machine["moves"]}
    assert moves == {e: (m.sources, m.target, m.then) for e, m in lifecycle.MOVES.items()}
    assert moves["rewritten"] == (("rewriting",), "rewritten", ("image_job", "next_step"))
    assert moves["donor_deleted"][1] == "cancelled" and moves["collected"] == (("new",), "collected", ("rewrite_job",))
    assert {f["name"] for f in machine["follow_ups"]} == {t for m in moves.values() for t in m[2]}
    # Every state is reached by some move, and every state but the ends is left by one.
    targets = {m[1] for m in moves.values()}
    sources = {s for m in moves.values() for s in m[0]}
    assert targets == set(lifecycle.STATES)
    assert set(lifecycle.STATES) - sources == {"duplicate", "filtered", "cancelled", "rejected"}
    text = runner.invoke(app, ["posts", "states"], env={"COLUMNS": "200"})
    assert text.exit_code == 0 and all(event in text.output for event in lifecycle.MOVES)


def test_the_diagram_in_docs_pipeline_is_drawn_from_the_table(home: Path) -> None:
    doc = (ROOT / "docs" / "pipeline.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- lifecycle diagram.*?-->\n```mermaid\n(.*?)```\n", doc, re.S)
    assert found, "docs/pipeline.md has no lifecycle diagram"
    drawn = runner.invoke(app, ["posts", "states", "--mermaid"])
    assert drawn.exit_code == 0 and drawn.output == lifecycle.mermaid()
    assert found.group(1) == lifecycle.mermaid(), (
        "docs/pipeline.md's diagram is stale: replace it with the output of `contentq posts states --mermaid`"
    )


# -- nothing else writes a post's state ------------------------------------------------------------------


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((ROOT / "contentq").rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _text(node: ast.AST) -> str | None:
    """A string literal, an f-string with its holes as {}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)  # type: ignore[misc]
    return None


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """Every node with the name of the function it is in ('' at module level)."""
    for top in tree.body:
        name = top.name if isinstance(top, ast.FunctionDef | ast.ClassDef) else ""
        for node in ast.walk(top):
            yield name, node


def test_no_module_but_the_lifecycle_writes_a_posts_state() -> None:
    sets_state, dynamic, inserts = [], set(), set()
    for module, tree in _sources():
        for function, node in _functions(tree):
            text = _text(node)
            if text is None:
                continue
            sql = " ".join(text.split()).lower()
            for found in re.finditer(r"\bupdate posts set (.*?)(?: where |$)", sql):
                if re.search(r"(^|,)\s*state\s*=", found.group(1)):
                    sets_state.append((module, function))
                if "{}" in found.group(1):
                    dynamic.add((module, function))
            if re.search(r"\binsert\b[^;]*\binto posts\b", sql):
                inserts.add(module)
    assert sets_state == []
    # Statements whose columns are built at run time: the lifecycle's own, and the donor's new text.
    assert dynamic == {("contentq/store/posts.py", "change_state"), ("contentq/intake/donor_changes.py", "apply_edit")}
    donor = (ROOT / "contentq" / "intake" / "donor_changes.py").read_text(encoding="utf-8")
    assert not re.search(r"""["'](state|state_reason)["']\s*:""", donor)  # its columns never include the state
    # A post is stored by ingest (collect, listen, import) and by the rules; each says how it entered.
    assert inserts == {"contentq/intake/ingest.py", "contentq/flow/rules.py"}
    for module in inserts:
        assert "lifecycle.enter_in(" in (ROOT / module).read_text(encoding="utf-8")


def test_the_sql_helpers_of_a_move_are_called_by_the_lifecycle_only() -> None:
    callers = set()
    for module, tree in _sources():
        for _, node in _functions(tree):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in ("change_state", "record_entry", "transition"):
                    callers.add((module, name))
    assert callers == {("contentq/lifecycle.py", "change_state"), ("contentq/lifecycle.py", "record_entry")}


MOVERS = {"move": 2, "move_in": 2, "advance": 2, "follow_up": 2, "enter_in": 2, "sources_of": 0, "spec": 0}
"""Functions taking an event, and the position of the event among their arguments."""


def test_every_event_named_in_the_code_is_in_the_table_and_every_move_is_made_somewhere() -> None:
    named: set[str] = set()
    for module, tree in _sources():
        # ingest stores posts inside its callers' transactions: collect and import run the follow-ups after them.
        followed = "follow_up(" in ast.unparse(tree) or module in (
            "contentq/flow/pipeline.py",
            "contentq/intake/ingest.py",
        )
        for _, node in _functions(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            keywords = {k.arg: k.value for k in node.keywords}
            if name == "schedule_post":  # its event is a keyword, "scheduled" by default
                event: ast.expr | None = keywords.get("event", ast.Constant("scheduled"))
            elif name in MOVERS and len(node.args) > MOVERS[name]:
                event = node.args[MOVERS[name]]
            else:
                continue
            text = _text(event) if event is not None else None
            if text is not None:
                assert text in lifecycle.MOVES, (module, ast.unparse(node))
                named.add(text)
            then = keywords.get("then")
            if isinstance(then, ast.Constant) and then.value is True:
                assert followed, f"{module} moves with then=True but never runs the follow-ups"
    # ingest names its entries after the state it stored (`enter_in(conn, post_id, state)`).
    assert set(lifecycle.MOVES) - named == {"duplicate"}


def test_a_move_the_table_does_not_allow_raises(rt: Runtime) -> None:
    stamp = iso()
    with rt.store.transaction() as conn:
        post_id = int(
            conn.execute(
                "INSERT INTO posts (route, source, source_msg_id, state, collected_at, updated_at)"
                " VALUES ('news', '@d', 1, 'collected', ?, ?)",
                (stamp, stamp),
            ).lastrowid
            or 0
        )
    with pytest.raises(lifecycle.IllegalMove, match="no post event 'teleported'"):
        lifecycle.move(rt.store, post_id, "teleported")
    with pytest.raises(lifecycle.IllegalMove, match="'published' cannot start from collected"):
        lifecycle.move(rt.store, post_id, "published", only_from="collected")
    with pytest.raises(lifecycle.IllegalMove, match="followed by image_job, next_step: move it with pipeline"):
        lifecycle.move(rt.store, post_id, "rewritten")
    with pytest.raises(lifecycle.IllegalMove, match="pass `reason`"):
        lifecycle.move(rt.store, post_id, "rewrite_started", state="published")
    with rt.store.transaction() as conn, pytest.raises(lifecycle.IllegalMove, match="a new post enters by"):
        lifecycle.enter_in(conn, post_id, "published")
    with pytest.raises(lifecycle.IllegalMove, match="does not schedule a post"):
        pipeline.schedule_post(rt, post_id, event="rejected")
    assert not lifecycle.move(rt.store, post_id, "published", then=False)  # allowed, but not from collected
    assert get_post(rt.store, post_id)["state"] == "collected"
    with pytest.raises(ValueError, match="not <kind>:<who>"), actors.acting_as("somebody"):
        pass
    with actors.acting_as("cli:tester"):
        assert lifecycle.move(rt.store, post_id, "rewrite_started", reason="x" * 900)
    [entry, moved] = lifecycle.history(rt.store, post_id)
    assert (entry["event"], moved["event"], moved["actor"], moved["from_state"]) == (
        None, "rewrite_started", "cli:tester", "collected"
    )  # fmt: skip
    assert len(moved["reason"]) == 500 and get_post(rt.store, post_id)["state_reason"] == moved["reason"]


def test_an_existing_database_keeps_its_changes_as_history_without_actor(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    store = open_store(path, migrate=False)
    migration_set().apply(store.db, stop_before=[m.key for m in MIGRATIONS if m.number > 121])  # as before 122
    stamp = iso()
    store.execute(
        "INSERT INTO posts (route, source, source_msg_id, state, collected_at, updated_at)"
        " VALUES ('news', '@d', 1, 'collected', ?, ?)",
        (stamp, stamp),
    )
    store.execute("UPDATE posts SET state = 'rewriting', updated_at = ? WHERE id = 1", (iso(),))
    store.execute("UPDATE posts SET state = 'rewritten', updated_at = ? WHERE id = 1", (iso(),))
    store.close()

    store = open_store(path)  # migration 122
    old = [(h["from_state"], h["state"], h["event"], h["actor"]) for h in lifecycle.history(store, 1)]
    assert old == [(None, "collected", None, None), ("collected", "rewriting", None, None),
                   ("rewriting", "rewritten", None, None)]  # fmt: skip
    with actors.acting_as("job:rewrite-1"):
        assert lifecycle.move(store, 1, "held", then=True, target="@mine")
    store.execute("UPDATE posts SET state = 'scheduled', updated_at = ? WHERE id = 1", (iso(),))  # by hand
    new = [(h["from_state"], h["state"], h["event"], h["actor"]) for h in lifecycle.history(store, 1)][3:]
    assert new == [("rewritten", "awaiting_approval", "held", "job:rewrite-1"),
                   ("awaiting_approval", "scheduled", None, None)]  # fmt: skip
    store.close()
    # The end-to-end check below tells such rows apart: the old ones and the one by hand have no event, no actor.
    problems = history_problems(path)
    assert len(problems) == 8 and sum("actor None" in p for p in problems) == 4
    assert sum("not a move of the table" in p for p in problems) == 4


# -- end to end: every move recorded is lawful and has an actor ---------------------------------------------

ROUTES = """
[routes.news]
target = "@mine"
sources = ["@donor_a"]
rewriter = "llm"
on_donor_delete = "delete_published"
"""


def good(text: str) -> bytes:
    return completion(answer(text))


@pytest.mark.timeout(180)
def test_a_hostile_run_records_only_moves_of_the_table_each_with_its_actor(
    rt: Runtime,
    tg: FakeTelegram,  # noqa: F811 - fixture
    listen: Callable[..., Listener],  # noqa: F811 - fixture
    local_llm: LocalLLM,  # noqa: F811 - fixture
) -> None:
    write_config(rt.settings.home, ROUTES)
    rt.settings.openai_base_url = local_llm.base_url
    rt.settings.openai_api_key = SecretStr("sk-test-lifecycle-0123456789")
    listen()
    for msg_id, text in enumerate(["Rates go up", "Off-topic gossip", "Soon deleted", "Refused", "Buy now!"], 1):
        tg.inject_message("@donor_a", msg_id, text)
    kept, rejected, deleted, refused, ad = (p["id"] for p in settled(rt, 5))
    tg.inject_delete("@donor_a", [3])  # the donor deletes one before its rewrite
    wait_for(lambda: get_post(rt.store, deleted)["state"] == "cancelled", what="the deleted post cancelled")

    # The LLM: two good answers, a refused request (fatal), an ad it skips.
    local_llm.queue(good("<b>Rates</b> go up"), good("Gossip"), error(400, "this request is refused"),
                    completion(answer("", skip=True, skip_reason="an advertisement")))  # fmt: skip
    drain(rt, "rewrite")
    assert [get_post(rt.store, p)["state"] for p in (kept, rejected, refused, ad)] == [
        "scheduled", "scheduled", "failed", "filtered"
    ]  # fmt: skip

    # The operator: rejects one from the CLI, asks the refused one again, takes it off the schedule and approves
    # it from the panel.
    done = runner.invoke(app, ["posts", "reject", str(rejected), "--reason", "off topic"])
    assert done.exit_code == 0, done.output
    local_llm.answers[:] = []  # the last answer repeats until others are queued
    local_llm.queue(good("Refused no more"))
    assert runner.invoke(app, ["rewrite", str(refused)]).exit_code == 0
    drain(rt, "rewrite")
    from tests.web_helpers import client

    tc = client(rt)
    assert tc.delete(f"/api/posts/{refused}/schedule").json()["state"] == "awaiting_approval"
    assert tc.post(f"/api/posts/{refused}/approve").json()["state"] == "scheduled"
    drain(rt, "publish")
    assert [get_post(rt.store, p)["state"] for p in (kept, rejected, refused)] == ["published", "rejected", "published"]

    tg.inject_delete("@donor_a", [1])  # after publishing: ours is deleted too (delete_published)
    wait_for(lambda: rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'donor_change'"), what="the job")
    drain(rt, "publish")
    assert get_post(rt.store, kept)["state"] == "cancelled" and tg.visible("@mine") != []

    assert history_problems(rt.settings.db_path) == []
    user = actors.os_user()
    assert moves_of(rt, deleted) == [("collected", "listen:listen"), ("donor_deleted", "listen:listen")]
    assert moves_of(rt, rejected)[-1] == ("rejected", f"cli:{user}")
    events = moves_of(rt, refused)
    assert [e for e, _ in events] == ["collected", "rewrite_started", "rewrite_failed", "rewrite_requested",
                                      "rewrite_started", "rewritten", "scheduled", "unscheduled", "approved",
                                      "publish_started", "published"]  # fmt: skip
    assert events[2][1].startswith("job:rewrite-") and events[3][1] == f"cli:{user}"
    assert events[7][1].startswith("web:token@") and events[8][1].startswith("web:token@")
    assert moves_of(rt, ad)[-1][0] == "filtered" and moves_of(rt, kept)[-1][1].startswith("job:donor_change-")
    reasons = {h["event"]: h["reason"] for h in lifecycle.history(rt.store, refused)}
    assert "this request is refused" in reasons["rewrite_failed"]

    # Where the history is read: `posts show`, the panel's post page, the live feed.
    shown = runner.invoke(app, ["posts", "show", str(refused)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "history" in shown.output
    assert "rewrite_failed" in shown.output and "approved" in shown.output and "web:token@" in shown.output
    as_json = json.loads(runner.invoke(app, ["posts", "show", str(refused), "--json"]).output)
    assert [h["event"] for h in as_json["history"]] == [e for e, _ in events]
    page = tc.get(f"/posts/{refused}", headers={"Accept": "text/html"}).text
    assert 'id="history"' in page and "unscheduled" in page and "web:token@" in page
    after_jobs = f"{rt.store.scalar('SELECT MAX(id) FROM job_events')}|0"  # every post change, no job event
    changes = rt.store.scalar("SELECT COUNT(*) FROM post_changes")
    with tc.stream("GET", "/api/events", params={"max_events": changes}, headers={"Last-Event-ID": after_jobs}) as got:
        feed = [json.loads(line[6:]) for line in got.iter_lines() if line.startswith("data: ")]
    assert len(feed) == changes
    assert [(p["event"], p["actor"]) for p in feed if p["id"] == refused] == events


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_publication_leaves_a_lawful_history(home: Path, tmp_path: Path) -> None:
    settings = load_settings(
        home=home, worker_heartbeat_ttl=3, worker_maintenance_interval=1, publish_attempts=1,
        publish_min_interval=0, publish_account_budget=0, maintenance_backoff_base=1.0,
    )  # fmt: skip
    write_config(home, '[routes.tech]\ntarget = "@mychan"\nsources = ["@donor"]\nrewriter = "none"\n'
                       "[routes.tech.schedule]\nasap = true\n")  # fmt: skip
    rt = Runtime(settings)
    set_process_runtime(rt)
    done = runner.invoke(app, ["import", str(ROOT / "tests" / "assets" / "export_basic"), "--source", "@donor"])
    assert done.exit_code == 0, done.output
    drain(rt, "rewrite")
    dispatch(rt)
    scheduled = [r["id"] for r in rt.store.query("SELECT id FROM posts WHERE state = 'scheduled' ORDER BY id")]
    assert len(scheduled) >= 3

    tg_db, marker = tmp_path / "telegram.db", tmp_path / "sent"
    fake = {"CONTENTQ_TG_GATEWAY": "tests.shared_telegram:gateway_from_env", "CONTENTQ_FAKE_TG_DB": str(tg_db),
            "CONTENTQ_PUBLISH_ATTEMPTS": "1", "CONTENTQ_PUBLISH_MIN_INTERVAL": "0",
            "CONTENTQ_PUBLISH_ACCOUNT_BUDGET": "0", "CONTENTQ_WORKER_RECONCILE_INTERVAL": "1"}  # fmt: skip
    first = start_worker(settings, "publish", CONTENTQ_FAKE_TG_HANG="after_send", CONTENTQ_FAKE_TG_MARKER=str(marker),
                         **fake)  # fmt: skip
    try:
        wait_for(marker.exists, what="the first message to be sent")
        os.kill(first.pid, signal.SIGKILL)  # mid-publication: sent, not yet recorded
        first.wait(10)
        second = start_worker(settings, "publish", **fake)
        try:
            wait_for(lambda: all(get_post(rt.store, p)["state"] in ("published", "failed") for p in scheduled),
                     timeout=90, what="every post settled")  # fmt: skip
        finally:
            second.terminate()
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    # The shared fake sends text only: the posts with media fail (publish_failed), the text ones go out once each.
    published = [p for p in scheduled if get_post(rt.store, p)["state"] == "published"]
    sent = [m["html"] for m in visible(tg_db, "@mychan")]
    assert len(sent) == len(set(sent)) == len(published) >= 3  # the killed send was settled, not repeated
    assert history_problems(settings.db_path) == []
    [settled_post] = [p for p in scheduled if any(e == "published" and a.startswith("job:settle-")
                                                  for e, a in moves_of(rt, p))]  # fmt: skip
    killed = rt.store.scalar("SELECT post_id FROM jobs WHERE error LIKE 'abandoned: worker %'")
    assert settled_post == killed
    assert [e for e, _ in moves_of(rt, settled_post)] == ["collected", "rewrite_started", "rewritten", "scheduled",
                                                          "publish_started", "published"]  # fmt: skip
    rt.close()


@pytest.mark.timeout(300)
def test_the_demo_records_a_lawful_history(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from contentq import settings as settings_module

    monkeypatch.setattr(settings_module, "_overrides", {})  # `demo --home` remembers it, like test_demo.py
    done = runner.invoke(app, ["demo"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert history_problems(home / "contentq.db") == []
    conn = sqlite3.connect(home / "contentq.db")
    actors_seen = {a.split(":")[0] for (a,) in conn.execute("SELECT DISTINCT actor FROM post_changes")}
    conn.close()
    assert actors_seen == {"cli", "job"}
