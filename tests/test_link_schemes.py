"""Only http, https, tg and mailto links survive: donor HTML from collect and import, the rewriters (the LLM
keeping a donor's link, the copy rewriter), what is published, and the outbox's browser page."""

from __future__ import annotations

import pytest
from telethon.tl import types as tl

from contentq.content.html import normalize_html, parse_html, safe_href
from contentq.integrations.export import text_to_html
from contentq.integrations.telegram.formatting import entities_to_html, html_to_entities
from contentq.integrations.telegram.gateway import OutgoingPart
from contentq.publish.outbox import write_outbox
from contentq.publish.render import Rendered
from contentq.rewrite.base import RewriteTask
from contentq.rewrite.clean import CopyRewriter
from contentq.routes import Route
from contentq.store.jobs import get_job
from tests.conftest import drain
from tests.rewrite_helpers import add_post, answer, post, rewrite_job

HOSTILE = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
]
SAFE = ["https://example.com/a?b=1", "http://example.com", "tg://resolve?domain=x", "mailto:a@example.com",
        "example.com/path", "/relative"]  # fmt: skip


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_schemes_are_not_links(url: str) -> None:
    assert safe_href(url) is None


@pytest.mark.parametrize("url", SAFE)
def test_allowed_schemes_and_bare_hosts_stay_links(url: str) -> None:
    assert safe_href(url) == url


@pytest.mark.parametrize("url", [*HOSTILE, "&#106;avascript:alert(1)", "javascript&colon;alert(1)"])
def test_a_hostile_link_becomes_plain_text_in_any_html_contentq_reads(url: str) -> None:
    html = f'Read <a href="{url}">this</a> and <a href="https://ok.example">that</a>'
    normalized = normalize_html(html)
    assert normalized == 'Read this and <a href="https://ok.example">that</a>'
    assert any("link scheme not allowed" in p for p in parse_html(html).problems)


def test_collected_messages_keep_no_hostile_link() -> None:
    text = "click here and there"
    entities = [tl.MessageEntityTextUrl(offset=0, length=5, url="javascript:alert(1)"),
                tl.MessageEntityTextUrl(offset=15, length=5, url="https://ok.example")]  # fmt: skip
    assert entities_to_html(text, entities) == 'click here and <a href="https://ok.example">there</a>'


def test_imported_export_text_keeps_no_hostile_link() -> None:
    value = [{"type": "text_link", "text": "click", "href": "data:text/html,<script>x</script>"}, " me"]
    assert text_to_html(value) == "click me"


def test_publishing_sends_no_entity_for_a_hostile_link() -> None:
    text, entities = html_to_entities('<a href="javascript:alert(1)">click</a> <b>bold</b>')
    assert text == "click bold"
    assert [type(e).__name__ for e in entities] == ["MessageEntityBold"]


def test_the_copy_rewriter_drops_a_hostile_donor_link() -> None:
    route = Route(name="r", target="@t", sources=["@d"], rewriter="none")
    task = RewriteTask(post_id=1, route=route, donor_html='See <a href="javascript:steal()">docs</a>.', limit=4096)

    class Quiet:
        def log(self, *args: object, **kwargs: object) -> None: ...

        def notify(self, *args: object, **kwargs: object) -> bool:
            return True

    assert CopyRewriter().rewrite(task, Quiet()).html == "See docs."


def test_the_llm_keeping_a_donor_javascript_link_publishes_plain_text(llm_rt, llmock):  # noqa: F811
    # A post stored before links were checked, and a model that dutifully keeps "the links of the original".
    post_id = add_post(llm_rt, 'Frobnicator 3 <a href="javascript:alert(document.cookie)">ships</a> today.')
    llmock.reply(answer('Frobnicator 3 <a href="javascript:alert(document.cookie)">ships</a> today!'))
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    assert get_job(llm_rt.store, job_id)["status"] == "succeeded"
    assert post(llm_rt, post_id)["rewrite_html"] == "Frobnicator 3 ships today!"


def test_the_outbox_page_links_nothing_hostile(settings) -> None:  # type: ignore[no-untyped-def]
    route = Route(name="news", target="@t", sources=["@d"], publisher="outbox")
    html = 'Hello <a href="javascript:alert(1)">you</a> <a href="https://ok.example">ok</a>'
    rendered = Rendered(html=html, parts=[OutgoingPart(html=html)])
    folder = write_outbox(settings, {"id": 7, "title": None}, route, rendered, dry_run=True)
    page = (folder / "post.html").read_text(encoding="utf-8")
    assert "javascript:" not in page and 'href="https://ok.example"' in page and "Hello you" in page
