"""The API's contract (issue 25): Schemathesis with every check against `contentq web` on uvicorn with a seeded
database, and the answers Schemathesis found wrong before: 405 with Allow, refusals that are conflicts, the
event stream's media type, every answer's code in the document with one error model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contentq.runtime.context import Runtime
from contentq.web.auth import load_token
from tests.panel_helpers import seeded_panel
from tests.publish_helpers import add_post, route_toml, write_config
from tests.web_helpers import client, failed_job, json_of

pytest.importorskip("schemathesis")

CONFIG = """
# Stricter than Schemathesis's defaults: no 5xx, 3xx or 429 anywhere; a body over the size limit is refused
# with 413 before it is read, which is a refusal too.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422"]

# A JSON schema cannot say that a job kind needs a key or a post, that '25:99' is no time, or that a text is not
# valid Telegram HTML: these three answer such a request 400 (documented) after reading it.
[[operations]]
include-path = "/api/jobs"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413"]

[[operations]]
include-path-regex = "^/api/posts/\\\\{post_id\\\\}/(schedule|text)$"
include-method-regex = "^(POST|PUT)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]
"""


PATHS = [
    "/api/posts/{post_id}", "/api/posts/{post_id}/approve", "/api/posts/{post_id}/reject", "/api/posts/{post_id}/text",
    "/api/posts/{post_id}/schedule", "/api/posts/{post_id}/publish", "/api/jobs/{job_id}", "/api/jobs/{job_id}/events",
    "/api/jobs/{job_id}/retry", "/api/jobs/{job_id}/cancel",
]  # fmt: skip
"""The operations on one post or job, run again on a seeded one."""


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[tuple[Runtime, str, dict[str, int]]]:
    with seeded_panel(tmp_path_factory.mktemp("contract"), valkey_url) as served:
        yield served


@pytest.fixture(scope="module")
def api(panel: tuple[Runtime, str, dict[str, int]]) -> Iterator[httpx.Client]:
    rt, url, _ = panel
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {load_token(rt.settings)}"}) as client:
        yield client


def schemathesis(rt: Runtime, url: str, folder: Path, config: str, *args: str, token: str | None = None) -> str:
    """`st run` against the live API with every check; fails the test on any failure; returns its report.
    As the panel's shared token unless `token` (a user's) is given."""
    (folder / "schemathesis.toml").write_text(config)
    command = [
        sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()",
        "--config-file", str(folder / "schemathesis.toml"), "--no-color", "run", f"{url}/api/openapi.json",
        "--header", f"Authorization: Bearer {token or load_token(rt.settings)}",
        "--checks", "all", "--seed", "25", "--workers", "1", "--request-timeout", "10",
        "--exclude-path", "/api/events",  # a live stream: its contract is checked below
        "--suppress-health-check", "all", *args,
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("schemathesis_hooks.py"))}
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    report = run.stdout + run.stderr
    (folder / "schemathesis.txt").write_text(report)
    summary = report[report.rfind("SUMMARY") :]
    assert run.returncode == 0, report[:8000] + "\n…\n" + summary
    assert "Failures:" not in summary and " passed" in summary, summary
    return summary


def test_schemathesis_with_every_check_finds_nothing(panel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every operation, generated and mutated values (examples, coverage, fuzzing, stateful phases)."""
    rt, url, _ = panel
    # /api/users has its own run (below): adding an owner there ends the shared token this run is made with.
    summary = schemathesis(rt, url, tmp_path, CONFIG, "--max-examples", "40", "--exclude-path-regex", "^/api/users")
    print(summary)


def test_schemathesis_on_the_seeded_posts_and_jobs_finds_nothing(panel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The actions on posts and jobs that exist (a generated id rarely does): approve, reject, edit, schedule,
    publish, retry, cancel reach the posts' and jobs' states, and their refusals (409) are in the document."""
    rt, url, ids = panel
    failed = rt.store.scalar("SELECT id FROM jobs WHERE status = 'failed' ORDER BY id LIMIT 1")
    post_paths = [p for p in PATHS if p.startswith("/api/posts/{post_id}")]
    job_paths = [p for p in PATHS if p.startswith("/api/jobs/{job_id}")]
    pinned = (
        CONFIG
        + f"""
[[operations]]
include-path = {json.dumps(post_paths)}
parameters = {{ post_id = {ids["awaiting_approval"]} }}

[[operations]]
include-path = {json.dumps(job_paths)}
parameters = {{ job_id = "{failed}" }}
"""
    )
    only = [arg for path in post_paths + job_paths for arg in ("--include-path", path)]
    summary = schemathesis(
        rt, url, tmp_path, pinned, *only, "--max-examples", "25", "--phases", "examples,coverage,fuzzing"
    )
    print(summary)


USERS_CONFIG = """
# A JSON schema cannot say that two passwords must match, that a route must be in contentq.toml or that only an
# editor has routes: these answer such a request 422, with the CLI's sentence (documented).
[[operations]]
include-path-regex = "^/api/users(/\\\\{user\\\\}(/password)?)?$"
include-method-regex = "^(POST|PATCH|PUT)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""


def test_schemathesis_on_the_users_operations_finds_nothing(panel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """/api/users as an owner user (its own run, last in this module: its first owner ends the shared token):
    add, change, reset, remove, tokens and sessions, with generated and mutated values and stateful links."""
    from contentq.people import users

    rt, url, _ = panel
    users.add_user(rt, "root-owner", "owner", "root-owner-password")
    users.add_user(rt, "eddie", "editor", "eddie-password-1", ["news"])
    token = users.issue_token(rt, "root-owner", "schemathesis")
    summary = schemathesis(
        rt, url, tmp_path, CONFIG[: CONFIG.index("[[operations]]")] + USERS_CONFIG,
        "--include-path-regex", "^/api/users", "--max-examples", "25",
        token=token,
    )  # fmt: skip
    print(summary)
    pinned = (
        CONFIG[: CONFIG.index("[[operations]]")] + USERS_CONFIG
        + """
[[operations]]
include-path-regex = "^/api/users/"
parameters = { user = "eddie" }
"""
    )  # fmt: skip
    summary = schemathesis(
        rt, url, tmp_path, pinned, "--include-path-regex", "^/api/users/", "--max-examples", "15",
        "--phases", "examples,coverage,fuzzing", token=token,
    )  # fmt: skip
    print(summary)
    assert users.find(rt, "root-owner") is not None


# -- what Schemathesis found before, one by one (each failed on the code before issue 25) ----------------------


def test_a_405_names_every_method_of_the_path_in_allow(rt: Runtime) -> None:
    tc = client(rt)
    put = tc.put("/api/posts/1/schedule")  # POST and DELETE are two routes of one path: Starlette named only POST
    assert put.status_code == 405 and put.headers["allow"] == "DELETE, POST", put.headers
    assert json_of(put) == {"error": "PUT is not allowed on /api/posts/1/schedule: it takes DELETE, POST"}
    get = tc.get("/api/queues/publish/pause")
    assert get.status_code == 405 and get.headers["allow"] == "POST"
    old_cancel = tc.delete("/api/jobs/noop-x")  # cancel is POST …/cancel now: the job is not deleted
    assert old_cancel.status_code == 405 and old_cancel.headers["allow"] == "GET"


def test_every_operation_documents_its_errors_with_the_one_error_model(rt: Runtime) -> None:
    spec = client(rt).get("/api/openapi.json").json()
    error = {"$ref": "#/components/schemas/Error"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            codes = operation["responses"]
            assert {"401", "422", "503"} <= set(codes), (method, path, sorted(codes))
            for code, answer in codes.items():
                if code.startswith(("4", "5")):
                    assert answer["content"] == {"application/json": {"schema": error}}, (method, path, code)
            if method != "get":
                assert {"403", "413"} <= set(codes), (method, path)
            if "{post_id}" in path or "{job_id}" in path:
                assert "404" in codes, (method, path)
            if (
                method == "post"
                and "{" in path
                and path.endswith(("/approve", "/reject", "/publish", "/retry", "/cancel"))
            ):
                assert "409" in codes, (method, path)
    assert spec["components"]["schemas"]["Error"]["required"] == ["error"]


def test_the_event_stream_is_declared_and_served_as_text_event_stream(rt: Runtime) -> None:
    tc = client(rt)
    spec = tc.get("/api/openapi.json").json()
    ok = spec["paths"]["/api/events"]["get"]["responses"]["200"]
    assert list(ok["content"]) == ["text/event-stream"]
    failed_job(rt, "streamed")
    with tc.stream("GET", "/api/events", params={"since_start": True, "once": True}) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    assert "event: job" in body and "retry: 3000" in body
    bad = tc.get("/api/events", headers={"Last-Event-ID": "nonsense"})
    assert bad.status_code == 400 and "400" in spec["paths"]["/api/events"]["get"]["responses"]
    assert bad.headers["content-type"] == "application/json"


def test_a_refusal_because_of_the_state_is_a_409(rt: Runtime) -> None:
    tc = client(rt)
    write_config(rt.settings.home, route_toml(extra="approval = true"))
    published = add_post(rt, "Out already", state="published")
    succeeded = failed_job(rt, "fine")
    rt.store.execute("UPDATE jobs SET status = 'succeeded' WHERE id = ?", (succeeded,))
    for method, url, said in [
        ("POST", f"/api/posts/{published}/approve", "not awaiting approval"),
        ("POST", f"/api/posts/{published}/reject", "only posts not yet published"),
        ("DELETE", f"/api/posts/{published}/schedule", "not scheduled"),
        ("POST", f"/api/posts/{published}/publish", "already published"),
        ("POST", f"/api/jobs/{succeeded}/retry", "nothing to retry"),
        ("POST", f"/api/jobs/{succeeded}/cancel", "already succeeded"),
    ]:
        answer = tc.request(method, url)
        assert answer.status_code == 409 and said in json_of(answer)["error"], (url, answer.text)
    edit = tc.put(f"/api/posts/{published}/text", json={"html": "new"})
    assert edit.status_code == 409 and "can be edited" in json_of(edit)["error"]
    when = tc.post(f"/api/posts/{published}/schedule", json={"at": "+2h"})
    assert when.status_code == 409, when.text
    unreadable = tc.post(f"/api/posts/{published}/schedule", json={"at": "yesterday-ish"})
    assert unreadable.status_code == 400, unreadable.text  # the time itself: a bad request


def test_a_body_that_is_not_json_is_a_422_not_an_undocumented_400(rt: Runtime) -> None:
    tc = client(rt)
    answer = tc.post("/api/bulk/retry", content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and "not valid JSON" in json_of(answer)["error"]
    typed = tc.post("/api/bulk/retry", json={"dry_run": 0})  # 0 is not a boolean: the schema's types hold
    assert typed.status_code == 422 and "dry_run" in json_of(typed)["error"]


def test_an_error_of_a_text_operation_is_json_as_documented(rt: Runtime) -> None:
    tc = client(rt, token=False)
    spec = client(rt).get("/api/openapi.json").json()
    metrics = spec["paths"]["/api/metrics"]["get"]["responses"]
    assert list(metrics["200"]["content"]) == ["text/plain"] and list(metrics["401"]["content"]) == ["application/json"]
    answer = tc.get("/api/metrics")
    assert answer.status_code == 401 and answer.headers["content-type"] == "application/json"
