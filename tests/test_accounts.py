"""Named Telegram accounts (issue 24): each with its own session, proxy, fingerprint, budget and health; routes
name the account that reads and the one that posts; a logged-out account pauses only its routes, told once."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from pydantic import SecretStr
from rq import Queue
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from telethon import connection, errors
from telethon.crypto import AuthKey
from telethon.sessions import StringSession
from typer.testing import CliRunner, Result

from contentq import accounts
from contentq.cli.app import app
from contentq.clock import iso
from contentq.errors import ConfigError
from contentq.flow.channels import cached_channel
from contentq.integrations.telegram.access import gateway_of, load_profile
from contentq.integrations.telegram.client import load_session_string, make_client, write_session
from contentq.integrations.telegram.profiles import parse_proxy, profile_from_row
from contentq.ops.accounts_check import check_accounts
from contentq.ops.doctor import run_health
from contentq.redact import redact
from contentq.routes import load_routes
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import run_worker
from contentq.settings import Settings
from contentq.store import open_store
from contentq.store.jobs import get_job
from tests.fake_telegram import FakeAccounts
from tests.publish_helpers import write_config
from tests.socks_proxy import SocksProxy
from tests.web_helpers import client

DC2 = ("149.154.167.51", 443)
DC4 = ("149.154.167.91", 443)


def session_string(dc_id: int, address: tuple[str, int]) -> str:
    """A session of a logged-in account (its DC and an auth key), as `contentq login` saves it."""
    session = StringSession()
    session.set_dc(dc_id, *address)
    session.auth_key = AuthKey(bytes(range(256)))
    return str(session.save())


def api_keys(settings: Settings) -> None:
    settings.tg_api_id = 12345
    settings.tg_api_hash = SecretStr("0123456789abcdef0123456789abcdef")


def real_dials(settings: Settings, sessions: dict[str, tuple[int, tuple[str, int]]]) -> dict[str, dict]:
    """Each account's real Telethon client (the production gateways: no stand-in in this runtime) logged in to
    the DC of `sessions` and asked to connect (`accounts list --check`); returns what each recorded."""
    api_keys(settings)
    settings.tg_timeout = 10
    own = Runtime(settings)
    try:
        for name, (dc_id, address) in sessions.items():
            write_session(load_profile(own.store, settings, name).session_path, session_string(dc_id, address))
        rows = {name: accounts.check_account(own, name) for name in sessions}
        rows["_init"] = {n: gateway_of(own, n)._client._init_request for n in sessions}  # type: ignore[attr-defined]
        return rows
    finally:
        own.close()


# -- proxies and fingerprints: the real Telethon client ---------------------------------------------


def test_each_account_dials_telegram_through_its_own_proxy_with_its_own_fingerprint(rt):
    api_keys(rt.settings)
    rt.settings.tg_timeout = 10
    proxy_a = SocksProxy(username="alice", password="pr0xy-pass-a").start()
    proxy_b = SocksProxy().start()
    try:
        accounts.add_account(rt, "alpha", proxy=proxy_a.url, device_model="Pixel 8", system_version="Android 14",
                             app_version="10.14.5")  # fmt: skip
        accounts.add_account(rt, "beta", proxy=proxy_b.url, device_model="ThinkPad X1")
        dials = real_dials(rt.settings, {"alpha": (2, DC2), "beta": (4, DC4)})
        alpha, beta, init = dials["alpha"], dials["beta"], dials["_init"]

        # Each proxy saw its own account's Telegram DC, and only that: the two never share a way out.
        assert proxy_a.connects and {(c.host, c.port) for c in proxy_a.connects} == {DC2}
        assert {c.username for c in proxy_a.connects} == {"alice"}
        assert proxy_b.connects and {(c.host, c.port) for c in proxy_b.connects} == {DC4}
        # The proxy refused: the account is unreachable (not logged out), said with the fix.
        assert alpha["status"] == beta["status"] == "unreachable"
        assert "proxy" in alpha["fix"]
        # Each client presents its own fingerprint.
        assert (init["alpha"].device_model, init["alpha"].system_version, init["alpha"].app_version) == (
            "Pixel 8", "Android 14", "10.14.5")  # fmt: skip
        assert init["beta"].device_model == "ThinkPad X1" and init["beta"].system_version == "Linux"
        # The proxy's password is a secret: shown masked, never in the health rows.
        rows = json.dumps(accounts.health_rows(rt, None))
        assert "pr0xy-pass-a" not in rows and f"socks5://alice:***@127.0.0.1:{proxy_a.port}" in rows
        assert "pr0xy-pass-a" not in redact(f"dialling {proxy_a.url} failed")  # logs and job records
    finally:
        proxy_a.stop()
        proxy_b.stop()


def test_proxy_urls_become_telethons_options_and_bad_ones_say_how_to_write_them(settings):
    api_keys(settings)
    socks = parse_proxy("socks5://bob:p%40ss@10.0.0.1:1080")
    assert socks.client_options() == {"proxy": {"proxy_type": "socks5", "addr": "10.0.0.1", "port": 1080,
                                                "username": "bob", "password": "p@ss", "rdns": True}}  # fmt: skip
    assert socks.shown == "socks5://bob:***@10.0.0.1:1080" and parse_proxy(socks.url) == socks
    assert parse_proxy("http://proxy.local:8080").client_options()["proxy"]["proxy_type"] == "http"

    secret = "dd" + "0123456789abcdef" * 2
    mt = parse_proxy(f"tg://proxy?server=mt.example.org&port=443&secret={secret}")
    assert mt == parse_proxy(f"mtproxy://mt.example.org:443?secret={secret}")
    assert mt.shown == "mtproxy://mt.example.org:443?secret=***"
    profile = profile_from_row(settings, {"name": "m", "session_file": "sessions/m.session",
                                                   "proxy": mt.url})  # fmt: skip
    client = make_client(settings, StringSession(), profile)
    assert client._connection is connection.ConnectionTcpMTProxyRandomizedIntermediate
    assert client._proxy == ("mt.example.org", 443, secret)

    for bad, says in [
        ("ftp://h:1", "unknown kind 'ftp'"),
        ("socks5://h", "give the host and the port"),
        ("mtproxy://h:443", "needs its secret"),
        ("mtproxy://h:443?secret=ee" + "00" * 16 + "676f6f676c652e636f6d", "fake-TLS"),
        ("mtproxy://h:443?secret=xyz", "32 hex digits"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse_proxy(bad)


# -- upgrade: today's single session becomes `main` ------------------------------------------------


def test_an_old_home_is_adopted_as_account_main_with_nothing_to_redo(settings):
    """An old layout: telegram.session in the home, channels resolved in the database, no accounts tables."""
    settings.ensure_home()
    store = open_store(settings.db_path, settings.db_busy_timeout_ms)
    with store.transaction() as conn:
        for table in ("account_channels", "tg_account_health", "tg_accounts"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0180'")
        conn.execute("INSERT INTO channels (ref, role, tg_id, access_hash, title, resolved_at, updated_at)"
                     " VALUES ('@donor', 'source', 777, 4242, 'Donor', ?, ?)", (iso(), iso()))  # fmt: skip
    store.close()
    write_session(settings.session_path, "1OLD-SESSION-STRING")
    with pytest.raises(sqlite3.OperationalError):  # truly the old schema
        sqlite3.connect(settings.db_path).execute("SELECT * FROM tg_accounts")

    runtime = Runtime(settings)  # the upgrade: the store opens and migrates
    try:
        rows = accounts.health_rows(runtime, None)
        assert [(r["name"], r["session_file"], r["status"]) for r in rows] == [("main", "telegram.session", "unknown")]
        profile = load_profile(runtime.store, settings, "main")
        assert profile.session_path == settings.session_path and profile.proxy is None
        assert load_session_string(settings, profile) == ("1OLD-SESSION-STRING", str(settings.session_path))
        assert profile.device_model == settings.tg_device_model  # the fingerprint Telegram knew it by
        cached = cached_channel(runtime.store, "@donor", "main")  # no ResolveUsername again after the upgrade
        assert cached is not None and (cached.id, cached.access_hash) == (777, 4242)
        assert accounts.default_account(runtime.store) == "main"
    finally:
        runtime.close()


# -- two accounts, two routes: one logged out pauses only its routes --------------------------------

TWO_ROUTES = """
[routes.news]
target = "@news_out"
sources = ["@news_in"]
rewriter = "none"
account = "alpha"
[routes.news.schedule]
asap = true

[routes.sport]
target = "@sport_out"
sources = ["@sport_in"]
rewriter = "none"
read_account = "beta"
post_account = "beta"
{sport_extra}
[routes.sport.schedule]
asap = true
"""


def two_accounts(
    rt: Runtime,
    sport_extra: str = "",
    proxies: tuple[str, str] = ("socks5://127.0.0.1:1081", "socks5://127.0.0.1:1082"),
) -> FakeAccounts:
    write_config(rt.settings.home, TWO_ROUTES.format(sport_extra=sport_extra))
    rt.settings.publish_min_interval = 0
    rt.settings.tg_admin_chat = "@admin"
    rt.settings.tg_account_recheck = 1
    accounts.add_account(rt, "alpha", proxy=proxies[0])
    accounts.add_account(rt, "beta", proxy=proxies[1], send_budget=5)
    tg = FakeAccounts("main", "alpha", "beta")
    for ref in ("@news_in", "@news_out", "@sport_in", "@sport_out"):
        tg.world.add_channel(ref)
    rt.services["telegram"] = tg
    return tg


def run(rt: Runtime, *queues: str) -> None:
    """Burst workers, one queue after the other; publish jobs are run once due (an asap slot may be a second
    ahead), the way a worker's scheduler hands them over."""
    for queue in queues:
        run_worker(rt, [queue], burst=True)
    if "publish" not in queues:
        return
    deadline = time.monotonic() + 5
    due = (
        "SELECT COUNT(*) FROM jobs WHERE kind = 'publish' AND status = 'queued'"
        " AND COALESCE(retry_reason, '') NOT LIKE 'paused:%'"
    )
    while rt.store.scalar(due) and time.monotonic() < deadline:
        time.sleep(0.2)
        RQScheduler([Queue("publish", connection=rt.redis)], connection=rt.redis).enqueue_scheduled_jobs()
        run_worker(rt, ["publish"], burst=True)


def collect_all(rt: Runtime) -> dict[str, dict]:
    rows = {ref: enqueue(rt, "collect", ref, {"source": ref}) for ref in ("@news_in", "@sport_in")}
    run(rt, "collect", "rewrite", "publish")
    return {ref: get_job(rt.store, row["id"]) for ref, row in rows.items()}


def sent_by(tg: FakeAccounts) -> list[tuple[str, str | None, str]]:
    return [(m.target, m.account, m.html) for m in tg.world.sent]


def account_alerts(rt: Runtime) -> list[dict]:
    return rt.store.query("SELECT * FROM notifications WHERE key LIKE 'account:%' ORDER BY id")


def test_two_accounts_read_and_post_for_their_routes_and_a_logged_out_one_pauses_only_its_own(rt):
    proxy_a, proxy_b = SocksProxy().start(), SocksProxy().start()
    try:
        tg = two_accounts(rt, proxies=(proxy_a.url, proxy_b.url))
        # The real Telethon client of each account dials Telegram through its own proxy …
        real_dials(rt.settings, {"alpha": (2, DC2), "beta": (4, DC4)})
        assert {(c.host, c.port) for c in proxy_a.connects} == {DC2}
        assert {(c.host, c.port) for c in proxy_b.connects} == {DC4}
    finally:
        proxy_a.stop()
        proxy_b.stop()
    # … while the scripted Telegram serves the reading and posting of each account's route.
    tg.world.add_message("@news_in", 1, "news one")
    tg.world.add_message("@sport_in", 1, "sport one")
    collect_all(rt)
    # Each route is read and posted by its own account.
    assert sorted(sent_by(tg)) == [("@news_out", "alpha", "news one"), ("@sport_out", "beta", "sport one")]
    fetched = {n: [c[1][0] for c in tg[n].calls if c[0] == "fetch_messages"] for n in ("alpha", "beta")}
    assert fetched == {"alpha": ["@news_in"], "beta": ["@sport_in"]}
    assert "main" not in tg.opened
    assert {r["name"]: r["status"] for r in accounts.health_rows(rt, None)}["beta"] == "connected"

    # Two more posts are waiting to go out when Telegram logs beta out.
    tg.world.add_message("@news_in", 2, "news two")
    tg.world.add_message("@sport_in", 2, "sport two")
    for ref in ("@news_in", "@sport_in"):
        enqueue(rt, "collect", ref, {"source": ref})
    run(rt, "collect", "rewrite")
    tg.log_out("beta")
    run(rt, "publish")

    # news goes on; sport waits with the reason on its post and its job; nothing failed.
    assert ("@news_out", "alpha", "news two") in sent_by(tg)
    assert ("@sport_out", "beta", "sport two") not in sent_by(tg)
    sport = rt.store.one("SELECT * FROM posts WHERE route = 'sport' AND text_html = 'sport two'")
    assert sport["state"] == "scheduled"
    assert "Telegram account 'beta' is logged out" in sport["state_reason"]
    assert "contentq accounts login beta" in sport["state_reason"]
    job = rt.store.one("SELECT * FROM jobs WHERE kind = 'publish' AND post_id = ?", (sport["id"],))
    assert job["status"] == "queued" and job["retry_reason"].startswith("paused: Telegram account 'beta'")
    assert rt.store.scalar("SELECT COUNT(*) FROM posts WHERE state = 'failed'") == 0

    # Exactly one alert, through an account that works, with what to do.
    alerts = account_alerts(rt)
    assert len(alerts) == 1 and alerts[0]["key"].startswith("account:beta:logged_out:")
    assert "contentq accounts login beta" in alerts[0]["message"] and "routes wait" in alerts[0]["message"]
    assert len(tg.world.admin_messages) == 1

    # More of beta's work meets the pause without asking Telegram and without another alert; news goes on.
    calls_before = len(tg["beta"].calls)
    tg.world.add_message("@news_in", 3, "news three")
    tg.world.add_message("@sport_in", 3, "sport three")
    jobs = collect_all(rt)
    assert jobs["@sport_in"]["status"] == "queued" and "paused" in jobs["@sport_in"]["retry_reason"]
    assert jobs["@news_in"]["status"] == "succeeded"
    assert ("@news_out", "alpha", "news three") in sent_by(tg)
    assert len(tg["beta"].calls) == calls_before
    assert len(account_alerts(rt)) == 1
    row = next(r for r in accounts.health_rows(rt, load_routes(rt.settings.config_path)) if r["name"] == "beta")
    assert row["status"] == "logged_out" and row["paused_routes"] == ["sport"]
    assert row["routes"] == {"sport": ["read", "post"]}

    # The login comes back: the waiting publication goes out at its next look, once.
    tg["beta"].revoked = None
    accounts.logged_in(rt, "beta", tg["beta"].account())
    queue = Queue("publish", connection=rt.redis)
    assert ScheduledJobRegistry(queue=queue).get_job_ids()  # waiting for its next look
    time.sleep(rt.settings.tg_account_recheck + 0.2)
    RQScheduler([queue], connection=rt.redis).enqueue_scheduled_jobs()  # what a worker's scheduler does
    run(rt, "publish")
    assert sent_by(tg).count(("@sport_out", "beta", "sport two")) == 1


def test_collection_falls_back_to_an_account_that_reads_the_donor_while_its_reader_is_logged_out(rt):
    tg = two_accounts(rt, sport_extra='fallback_accounts = ["alpha"]')
    tg.log_out("beta", errors.SessionRevokedError(request=None))
    tg.world.add_message("@sport_in", 1, "read by the fallback")
    jobs = collect_all(rt)
    assert jobs["@sport_in"]["status"] == "succeeded"
    events = rt.store.query("SELECT message FROM job_events WHERE job_id = ? AND event = 'fallback'",
                            (jobs["@sport_in"]["id"],))  # fmt: skip
    assert any("trying the next account" in e["message"] for e in events)
    assert [c[1][0] for c in tg["alpha"].calls if c[0] == "fetch_messages"] == ["@news_in", "@sport_in"]
    post = rt.store.one("SELECT * FROM posts WHERE route = 'sport'")
    assert post is not None  # collected by alpha …
    assert post["state"] == "scheduled" and "'beta' is logged out" in post["state_reason"]  # … posted by beta: waits
    assert len(account_alerts(rt)) == 1 and "SessionRevokedError" in account_alerts(rt)[0]["message"]


def test_a_banned_account_pauses_its_routes_and_says_it_cannot_be_used(rt):
    tg = two_accounts(rt)
    tg.log_out("beta", errors.UserDeactivatedBanError(request=None))
    tg.world.add_message("@sport_in", 1, "never read")
    tg.world.add_message("@news_in", 1, "still read")
    jobs = collect_all(rt)
    assert jobs["@sport_in"]["status"] == "queued" and jobs["@news_in"]["status"] == "succeeded"
    health = rt.store.one("SELECT * FROM tg_account_health WHERE account = 'beta'")
    assert health["status"] == "banned"
    (alert,) = account_alerts(rt)
    assert "is banned" in alert["message"] and "name another account on its routes" in alert["message"]


def test_routes_name_accounts_that_exist_and_the_default_is_the_only_one(rt):
    write_config(rt.settings.home, TWO_ROUTES.format(sport_extra=""))
    route = load_routes(rt.settings.config_path).get("sport")
    with pytest.raises(ConfigError, match="names Telegram account 'beta' .*contentq accounts add beta"):
        accounts.reader_of(rt.store, route, "@sport_in")
    plain = load_routes(rt.settings.config_path).get("news").model_copy(update={"account": ""})
    assert accounts.poster_of(rt.store, plain, "@news_out") == "main"  # the only account
    accounts.add_account(rt, "beta")
    assert accounts.reader_of(rt.store, route, "@sport_in") == "beta"
    assert accounts.poster_of(rt.store, plain, "@news_out") == "main"  # several: main
    with pytest.raises(ConfigError, match="used by route\\(s\\) sport \\(read/post\\)"):
        accounts.remove_account(rt, "beta", load_routes(rt.settings.config_path))


# -- where the operator sees it: accounts list, doctor, health, the panel -------------------------------

runner = CliRunner()


def said(result: Result) -> str:
    """What a command told the user (its error as the entry point prints it, too)."""
    return result.output + (str(result.exception) if result.exception else "")


def test_accounts_commands_add_set_list_and_remove_without_showing_a_secret(rt):
    write_config(rt.settings.home, TWO_ROUTES.format(sport_extra=""))
    added = runner.invoke(app, ["accounts", "add", "beta", "--proxy", "socks5://u:s3cr3t-pw@127.0.0.1:1080",
                                "--device-model", "Galaxy S23", "--budget", "7"])  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "contentq accounts login beta" in added.output
    again = runner.invoke(app, ["accounts", "add", "beta"])
    assert again.exit_code == 1 and "exists already" in said(again)
    bad = runner.invoke(app, ["accounts", "add", "gamma", "--proxy", "ftp://h:1"])
    assert bad.exit_code == 1 and "unknown kind 'ftp'" in said(bad)
    assert runner.invoke(app, ["accounts", "add", "Bad Name"]).exit_code == 1

    listed = runner.invoke(app, ["accounts", "list", "--json"])
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert sorted(rows) == ["beta", "main"]  # gamma was refused whole
    beta = rows["beta"]
    assert beta["proxy"] == "socks5://u:***@127.0.0.1:1080" and beta["device_model"] == "Galaxy S23"
    assert beta["send_budget"] == 7 and beta["session_file"] == "sessions/beta.session"
    assert beta["status"] == "not_logged_in" and beta["fix"] == "log it in: `contentq accounts login beta`"
    assert beta["routes"] == {"sport": ["read", "post"]}
    table = runner.invoke(app, ["accounts", "list", "--wide"], env={"COLUMNS": "200"})
    assert "beta" in table.output and "sport:read/post" in table.output
    assert "s3cr3t-pw" not in listed.output + table.output + added.output
    assert load_profile(rt.store, rt.settings, "beta").proxy is not None
    assert runner.invoke(app, ["accounts", "set", "beta", "--proxy", ""]).exit_code == 0
    assert load_profile(rt.store, rt.settings, "beta").proxy is None

    refused = runner.invoke(app, ["accounts", "remove", "beta", "--yes"])
    assert refused.exit_code == 1 and "used by route(s) sport (read/post)" in said(refused)
    write_config(rt.settings.home, TWO_ROUTES.format(sport_extra="").replace('"beta"', '"main"'))
    write_session(rt.settings.home / "sessions" / "beta.session", "1BETA")
    removed = runner.invoke(app, ["accounts", "remove", "beta", "--yes"])
    assert removed.exit_code == 0, removed.output
    assert not (rt.settings.home / "sessions" / "beta.session").exists()
    assert [r["name"] for r in json.loads(runner.invoke(app, ["accounts", "list", "--json"]).stdout)] == ["main"]


def test_doctor_health_and_the_panel_show_a_logged_out_account_and_the_routes_it_pauses(rt):
    tg = two_accounts(rt)
    write_session(rt.settings.home / "sessions" / "alpha.session", "1ALPHA")
    write_session(rt.settings.home / "sessions" / "beta.session", "1BETA")
    tg.world.add_message("@news_in", 1, "news")
    tg.log_out("beta")
    tg.world.add_message("@sport_in", 1, "sport")
    collect_all(rt)

    health = {p.check: p for p in run_health(rt.settings, workers=False)}
    beta, alpha = health["telegram account beta"], health["telegram account alpha"]
    assert beta.status == "fail" and "logged out since" in beta.detail and "sport" in beta.detail
    assert beta.fix == "log it in again: `contentq accounts login beta`"
    assert alpha.status == "ok" and alpha.detail.startswith("connected as @alpha")
    checks = {p.check: p for p in check_accounts(rt.settings, load_routes(rt.settings.config_path))}
    assert checks["telegram account beta"].status == "fail"
    assert checks["telegram account main"].status == "ok"  # no route uses it: not logged in is no problem

    page = client(rt).get("/workers")
    assert page.status_code == 200
    row = page.text[page.text.index('data-account="beta"') :]
    row = row[: row.index("</tr>")]
    assert "logged out" in row and "paused" in row and "contentq accounts login beta" in row
    assert "socks5://127.0.0.1:1082" in row


def test_an_accounts_flood_wait_and_budget_hold_back_its_sends_only(rt):
    tg = two_accounts(rt)  # beta's budget: 5 sends a minute
    tg.world.add_message("@news_in", 1, "news")
    tg.world.add_message("@sport_in", 1, "sport")
    tg["beta"].fail_next("send", errors.FloodWaitError(request=None, capture=600))
    collect_all(rt)
    health = rt.store.one("SELECT * FROM tg_account_health WHERE account = 'beta'")
    assert health["flood_during"] == "send" and health["flood_seconds"] == 600
    assert 590 < accounts.flood_left(rt, "beta", "send") <= 600
    assert accounts.flood_left(rt, "beta", "read") == 0 and accounts.flood_left(rt, "alpha", "send") == 0
    assert ("@news_out", "alpha", "news") in sent_by(tg)  # alpha is not held back by beta's wait

    # Another of beta's publications waits the flood out without asking Telegram.
    tg.world.add_message("@sport_in", 2, "sport again")
    sends_before = [c for c in tg["beta"].calls if c[0] == "send"]
    collect_all(rt)
    waiting = rt.store.query("SELECT * FROM jobs WHERE kind = 'publish' AND status = 'queued'")
    assert waiting and all("FLOOD_WAIT" in j["retry_reason"] for j in waiting)
    assert [c for c in tg["beta"].calls if c[0] == "send"] == sends_before
    row = next(r for r in accounts.health_rows(rt, None) if r["name"] == "beta")
    assert row["flood_until"] and row["status"] == "connected"
    assert accounts.send_budget(rt, "beta") == 5 and accounts.send_budget(rt, "alpha") == 20


def test_a_restricted_account_is_reported_once_and_its_routes_go_on(rt):
    tg = two_accounts(rt)
    tg.world.add_message("@sport_in", 1, "limited")
    tg["beta"].fail_next("send", errors.PeerFloodError(request=None))
    collect_all(rt)
    assert rt.store.scalar("SELECT status FROM tg_account_health WHERE account = 'beta'") == "restricted"
    (alert,) = account_alerts(rt)
    assert "is restricted" in alert["message"] and "@SpamBot" in alert["message"]
    assert "routes go on" in alert["message"]
    assert accounts.pause_reason(rt, "beta") is None  # not paused
    tg.world.add_message("@sport_in", 2, "goes out")
    collect_all(rt)
    assert ("@sport_out", "beta", "goes out") in sent_by(tg)
    assert rt.store.scalar("SELECT status FROM tg_account_health WHERE account = 'beta'") == "connected"
    tg["beta"].fail_next("send", errors.PeerFloodError(request=None))  # limited again: not told again at once
    tg.world.add_message("@sport_in", 3, "limited again")
    collect_all(rt)
    assert len(account_alerts(rt)) == 1 and account_alerts(rt)[0]["suppressed"] == 1
