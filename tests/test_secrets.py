"""Planted secrets never reach anything contentq writes: files under CONTENTQ_HOME (database, AOF, logs), every
Redis key, and what the CLI and the worker print, after a provider that echoes the key and a `doctor` run."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import redis

from contentq.redact import redact, register_secret
from contentq.runtime.context import Runtime
from contentq.runtime.redis import embedded_server
from contentq.settings import load_settings
from tests.conftest import REPO
from tests.llm_server import LocalLLM, local_llm  # noqa: F401 - fixture
from tests.rewrite_helpers import add_post, write_routes

KEY = "sk-plantedKEY0123456789abcdefGHIJ"
PASSWORD = "PlantedPass-Qw3rty9zX"
SESSION = "1" + base64.urlsafe_b64encode(bytes(range(256)) + b"planted-session").decode()
API_HASH = "feedc0ffee0123456789abcdef012345"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contentq", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _expand(value: bytes) -> list[bytes]:
    """A stored value and what it decodes to: RQ keeps exc_string as base64(zlib(...)), exc_info as zlib."""
    out = [value]
    for candidate in (value, value.strip()):
        try:
            decoded = base64.b64decode(candidate, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        for blob in (decoded, candidate):
            with contextlib.suppress(zlib.error):
                out.append(zlib.decompress(blob))
        if decoded:
            out.append(decoded)
    return out


def _redis_everything(conn: redis.Redis) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for raw_key in conn.scan_iter(count=1000):
        key = raw_key.decode("utf-8", "replace")
        values: list[bytes] = [raw_key, conn.dump(raw_key) or b""]
        kind = conn.type(raw_key).decode()
        if kind == "string":
            values.append(conn.get(raw_key) or b"")
        elif kind == "hash":
            for field, value in conn.hgetall(raw_key).items():
                values += [field, value]
        elif kind == "list":
            values += conn.lrange(raw_key, 0, -1)
        elif kind == "set":
            values += list(conn.smembers(raw_key))
        elif kind == "zset":
            values += [member for member, _ in conn.zrange(raw_key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in conn.xrange(raw_key):
                for field, value in fields.items():
                    values += [field, value]
        found[key] = [part for value in values for part in _expand(value)]
    return found


def test_planted_secrets_are_nowhere_after_an_echoing_provider_and_doctor(tmp_path: Path, local_llm: LocalLLM):  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    write_routes(home)
    base_url = local_llm.base_url.replace("://", f"://contentq:{PASSWORD}@", 1)
    basic = base64.b64encode(f"contentq:{PASSWORD}".encode()).decode()
    planted = {"api key": KEY, "base-url password": PASSWORD, "basic auth": basic, "session": SESSION,
               "api hash": API_HASH}  # fmt: skip
    local_llm.echo_auth = True  # "Incorrect API key provided: <whatever Authorization carried>"

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
    env.update(
        PYTHONPATH=str(REPO), COLUMNS="250", CONTENTQ_HOME=str(home), CONTENTQ_OPENAI_API_KEY=KEY,
        CONTENTQ_OPENAI_BASE_URL=base_url, CONTENTQ_TG_SESSION=SESSION, CONTENTQ_TG_API_ID="12345",
        CONTENTQ_TG_API_HASH=API_HASH, CONTENTQ_REWRITE_BACKOFF_BASE="1",
    )  # fmt: skip
    # The embedded Valkey under CONTENTQ_HOME (not the tests' shared one), so its AOF is among the files read.
    settings = load_settings(home=home)
    server = embedded_server(settings)
    rt = Runtime(settings)
    outputs: list[str] = []
    try:
        post_id = add_post(rt, "<b>Frobnicator 3</b> ships today.")
        for args in (
            ("rewrite", str(post_id)),
            ("worker", "rewrite", "--burst"),
            ("posts", "show", str(post_id)),
            ("posts", "show", str(post_id), "--json"),
            ("jobs", "list"),
            ("jobs", "list", "--json"),
            ("jobs", "show", f"rewrite-{post_id}-1"),
            ("jobs", "logs", f"rewrite-{post_id}-1"),
            ("doctor",),
            ("doctor", "--json"),
        ):
            result = _run(env, *args)
            outputs.append(f"$ contentq {' '.join(args)}\n{result.stdout}\n{result.stderr}")

        post = rt.store.one("SELECT state, state_reason FROM posts WHERE id = ?", (post_id,))
        assert post is not None and post["state"] == "failed", outputs
        assert "Incorrect API key provided" in (post["state_reason"] or ""), post  # the echo is there, masked
        job = rt.store.one("SELECT status FROM jobs WHERE post_id = ?", (post_id,))
        assert job is not None and job["status"] == "failed"
        chat = local_llm.chat_requests
        assert chat, "the rewrite never reached the provider"
        assert doctor_ran(outputs)

        where: dict[str, list[bytes]] = {"stdout/stderr": [o.encode() for o in outputs]}
        for path in sorted(p for p in home.rglob("*") if p.is_file() and not p.is_socket()):
            where[str(path.relative_to(home))] = _expand(path.read_bytes())
        dump = "\n".join(sqlite3.connect(str(settings.db_path)).iterdump())
        where["database dump"] = [dump.encode()]
        where.update({f"redis {k}": v for k, v in _redis_everything(rt.redis).items()})
        assert any(k.startswith("redis rq:results:") for k in where), sorted(where)
        leaks = [
            (name, place)
            for place, blobs in where.items()
            for name, secret in planted.items()
            if any(secret.encode() in blob for blob in blobs)
        ]
        assert leaks == [], leaks
        # The key goes as a Bearer token; the URL's userinfo is never sent (as Basic auth or otherwise).
        sent = [v for r in local_llm.requests for k, v in r.headers.items() if k.lower() == "authorization"]
        assert len(sent) == len(local_llm.requests) >= 2 and set(sent) == {f"Bearer {KEY}"}  # rewrite and doctor
    finally:
        rt.close()
        server.stop()


def doctor_ran(outputs: list[str]) -> bool:
    table = next(o for o in outputs if o.startswith("$ contentq doctor\n"))
    as_json = next(o for o in outputs if o.startswith("$ contentq doctor --json"))
    return "llm" in table and '"check": "llm"' in as_json and "127.0.0.1" in as_json


def test_redact_masks_every_known_shape() -> None:
    register_secret("registered-secret-value")
    text = (
        "key sk-proj-abcdefghijklmnop, Authorization: Bearer abc.def-ghi, bearer tokenvalue123,"
        " Basic Y29udGVudHE6cGFzc3dvcmQ=, url https://user:hunter2pass@example.com/v1,"
        " redis://:redispw@localhost:6379/0, token=https://sk-onlyuserinfo@host/x, registered-secret-value,"
        f" session {SESSION}"
    )
    masked = redact(text)
    for secret in ("sk-proj-abcdefghijklmnop", "abc.def-ghi", "tokenvalue123", "Y29udGVudHE6cGFzc3dvcmQ=",
                   "hunter2pass", "redispw", "sk-onlyuserinfo", "registered-secret-value", SESSION):  # fmt: skip
        assert secret not in masked, (secret, masked)
    assert "https://user:***@example.com/v1" in masked  # where it was stays readable
    json_text = json.dumps({"url": "https://u:pw12345@h/"})
    assert "pw12345" not in redact(json_text)


def test_a_placeholder_in_a_help_text_is_not_taken_for_a_credential() -> None:
    help_text = "not logged in: send `Authorization: Bearer <token>` (`contentq web token` prints it)"
    assert redact(help_text) == help_text
    assert redact("set api_key=<your key> in .env") == "set api_key=<your key> in .env"
    # Real values are still masked, and the backtick closing a quoted header stays.
    assert redact("`Authorization: Bearer abcdef123456` sent") == "`Authorization: Bearer ***` sent"
    assert redact("Authorization:Bearer q1w2e3r4t5") == "Authorization:Bearer ***"
    assert redact('{"Authorization": "Basic dXNlcjpwYXNz"}') == '{"Authorization": "Basic ***"}'
    assert redact("api_key=s3cr3tvalue&x=1") == "api_key=***&x=1"


def test_the_api_says_how_to_log_in_word_for_word(rt: Runtime) -> None:
    from tests.web_helpers import client

    response = client(rt, token=False).get("/api/jobs")
    assert response.status_code == 401
    assert response.json()["error"] == (
        "not logged in: send `Authorization: Bearer <token>` (`contentq users token NAME` prints a user's; before"
        " any owner user exists, `contentq web token`)"
    )
