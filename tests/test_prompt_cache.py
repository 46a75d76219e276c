"""The prompt laid out for the provider's prompt cache, and cached tokens counted: two posts of one route send a
byte-identical fixed part (instructions, route rules, style examples) with the post last; a server that
caches prompts as OpenAI documents it (tests/llm_server.PromptCache) serves that prefix from its cache, and
the cached tokens, their lower price and what they saved reach `usage`, its CLI and its JSON.

The real OpenAI SDK over loopback, real Valkey and SQLite, the rewrite job in an in-process worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.rewrite.prices import MODEL_PRICES
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import load_settings
from tests.conftest import drain
from tests.llm_server import LocalLLM, PromptCache, completion
from tests.rewrite_helpers import API_KEY, add_media, add_post, answer, post, rewrite_job

STYLE_GUIDE = "\n".join(
    f"- Rule {n}: write short sentences for engineers, keep product names and version numbers exact, explain "
    f"one acronym per post at most, and prefer concrete numbers to adjectives (guide line {n})."
    for n in range(1, 41)
)
"""A route's prompt as operators write them: a style guide of a few thousand characters (over 1024 tokens)."""

ROUTES = f'''
[routes.tech]
target = "@my_channel"
sources = ["@donor"]
prompt = """Rewrite the post for our engineering audience.
{STYLE_GUIDE}"""
description = "Daily technology news, short and to the point."
style_examples = 2
'''

FIRST = "Frobnicator 3 ships today with a faster parser and half the memory use of version 2."
SECOND = "Widgetron 7 is out: its new scheduler cuts tail latency by a third on busy machines."


@pytest.fixture
def caching_llm() -> Iterator[LocalLLM]:
    """tests/llm_server's chat server, answering with the usage block of a provider with a prompt cache."""
    server = LocalLLM()
    server.prompt_cache = PromptCache()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def cache_rt(home: Path, caching_llm: LocalLLM, rewritten_calls: list[int]) -> Iterator[Runtime]:
    (home / "contentq.toml").write_text(ROUTES, encoding="utf-8")
    settings = load_settings(home=home, openai_base_url=caching_llm.base_url, openai_api_key=API_KEY,
                             worker_maintenance_interval=1)  # fmt: skip
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    for text in ("<b>Earlier post</b> about compilers, in our style.", "Another earlier post, on databases."):
        add_post(runtime, "donor text", route="tech", state="published", rewrite_html=text)
    yield runtime
    runtime.close()


def rewrite(rt: Runtime, local_llm: LocalLLM, html: str, *, photo: bool = False) -> int:
    local_llm.queue(completion(answer(html)))
    post_id = add_post(rt, html, route="tech", kind="photo" if photo else "text")
    if photo:
        add_media(rt, post_id)
    rewrite_job(rt, post_id)
    drain(rt, "rewrite")
    assert post(rt, post_id)["state"] == "rewritten"
    return post_id


def test_two_posts_of_a_route_share_a_byte_identical_prefix_with_the_post_last(
    cache_rt: Runtime, caching_llm: LocalLLM
) -> None:
    rewrite(cache_rt, caching_llm, FIRST)
    rewrite(cache_rt, caching_llm, SECOND, photo=True)  # another length rule: a caption
    first, second = (r.body for r in caching_llm.chat_requests)
    assert first is not None and second is not None

    # Everything but the last message is the same, byte for byte: instructions, route rules, style examples.
    fixed = json.dumps(first["messages"][:-1], ensure_ascii=False).encode()
    assert fixed == json.dumps(second["messages"][:-1], ensure_ascii=False).encode()
    assert [m["role"] for m in first["messages"]] == ["system", "user", "user"]
    assert "Rule 40" in first["messages"][0]["content"] and "Earlier post" in first["messages"][1]["content"]

    # The post, and what depends on it (the length rule for a caption), come last and nowhere else.
    for body, text in ((first, FIRST), (second, SECOND)):
        assert text in body["messages"][-1]["content"]
        assert not any(text in m["content"] for m in body["messages"][:-1])
    assert "caption" in second["messages"][-1]["content"] and "caption" not in first["messages"][-1]["content"]

    # As the provider sees it: the rendered prompts share the whole fixed part; one cache key per route.
    shared = PromptCache.render(first["messages"][:-1])
    assert PromptCache.render(second["messages"]).startswith(shared) and len(shared) > 4 * 1024
    assert first["prompt_cache_key"] == second["prompt_cache_key"] == "contentq:tech"


def usage_cli(*args: str) -> tuple[str, dict[str, Any]]:
    runner = CliRunner()
    shown = runner.invoke(app, ["usage", *args], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    data = runner.invoke(app, ["usage", "--json", *args], env={"COLUMNS": "200"})
    assert data.exit_code == 0, data.output
    return shown.output, json.loads(data.output)


def test_cached_prompt_tokens_are_recorded_priced_lower_and_shown_by_usage(
    cache_rt: Runtime, caching_llm: LocalLLM
) -> None:
    first_id = rewrite(cache_rt, caching_llm, FIRST)
    second_id = rewrite(cache_rt, caching_llm, SECOND)
    rows = {r["post_id"]: r for r in cache_rt.store.query("SELECT * FROM usage ORDER BY id")}
    first, second = rows[first_id], rows[second_id]
    served = [r.body for r in caching_llm.chat_requests]
    assert served[0] is not None and served[1] is not None

    # What the server's usage block said is what was recorded: nothing cached the first time, the shared
    # prefix (in steps of 128 tokens) the second.
    assert first["tokens_cached"] == 0 and first["saved"] == 0
    one, two = PromptCache.render(served[0]["messages"]), PromptCache.render(served[1]["messages"])
    shared = next(i for i, (x, y) in enumerate(zip(one, two, strict=False)) if x != y) // 4
    fixed = len(PromptCache.render(served[1]["messages"][:-1])) // 4
    assert second["tokens_cached"] == shared // 128 * 128 >= fixed // 128 * 128 > 1024
    assert second["tokens_cached"] < second["tokens_in"]

    # The cached part is billed at the cached price (gpt-4o-mini: half), and the difference is what it saved.
    price = MODEL_PRICES["gpt-4o-mini"]
    uncached = second["tokens_in"] - second["tokens_cached"]
    expected = uncached * price.input + second["tokens_cached"] * price.cached + second["tokens_out"] * price.output
    assert second["cost"] == pytest.approx(expected / 1e6)
    assert second["saved"] == pytest.approx(second["tokens_cached"] * (price.input - price.cached) / 1e6)

    out, data = usage_cli()
    total = data["total"]
    assert total["tokens_cached"] == second["tokens_cached"]
    assert total["cache_share"] == pytest.approx(second["tokens_cached"] / (first["tokens_in"] + second["tokens_in"]),
                                                 abs=1e-4)  # fmt: skip
    assert total["saved"] == pytest.approx(second["saved"], abs=1e-6)
    assert "cache" in out and "hits" in out and "saved" in out  # the columns (their headings wrap at 80)
    assert f"{total['cache_share'] * 100:.0f}%" in out
    assert f"{second['tokens_cached']} of {first['tokens_in'] + second['tokens_in']} input tokens" in out
    assert f"${total['saved']:.4f} saved" in out
    assert all(len(line) <= 80 for line in out.splitlines())
