"""Donor footers are stripped, not taken for ads; every post that is not taken says why (issue 10).

tests/assets/export_donor_footer: a tech channel (@donor_channel) whose 26 posts end with "Подписывайтесь:
@donor_channel | Наш чат" (a link to its chat), among them a real ad, a photo, a photo whose file was not
exported, a poll, two service messages, and a reworded copy of a post of tests/assets/export_other_footer
(@other_news, with a footer of its own).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.content.filters import PostFacts, advertisement
from contentq.content.footer import Footer, Patterns, learn, strip
from contentq.errors import ConfigError
from contentq.intake.collect import ForegroundContext
from contentq.intake.imports import import_export
from contentq.routes import parse_routes
from contentq.store.footers import load_footer
from tests.fake_telegram import FakeTelegram

ASSETS = Path(__file__).parent / "assets"
DONOR = ASSETS / "export_donor_footer"
OTHER = ASSETS / "export_other_footer"
FOOTER = "Подписывайтесь: @donor_channel | Наш чат"

ROUTES = """
[routes.tech]
target = "@mine"
sources = ["@donor_channel", "@other_news"]
rewriter = "clean"
{extra}
[routes.tech.filters]
skip_ads = true
"""

runner = CliRunner()


def configure(rt, extra: str = "") -> None:
    (rt.settings.home / "contentq.toml").write_text(ROUTES.format(extra=extra))


@pytest.fixture
def routes(rt):
    configure(rt)
    return rt


def run_import(rt, path: Path, source: str):
    return import_export(ForegroundContext(rt), path, source)


def by_text(rt, words: str) -> dict:
    (row,) = rt.store.query("SELECT * FROM posts WHERE text_html LIKE ?", (f"%{words}%",))
    return row


def test_a_donor_footer_is_stripped_and_its_posts_are_not_ads(routes):
    rt = routes
    run_import(rt, OTHER, "@other_news")
    report = run_import(rt, DONOR, "@donor_channel")

    counts = report.counts
    assert (counts.collected, counts.duplicate, counts.filtered) == (24, 1, 1)
    assert counts.footer_stripped == 26 and report.skipped == {"poll": 1, "service message": 2}
    assert report.missing_files == 1
    assert report.footer == [FOOTER]

    ordinary = by_text(rt, "Python 3.13")
    assert ordinary["state"] == "collected" and ordinary["source"] == "@donor_channel"
    assert "Подписывайтесь" not in ordinary["text_html"] and "donor_chat" not in ordinary["text_html"]
    assert ordinary["text_html"].startswith("<strong>Вышел</strong> Python 3.13")
    assert ordinary["text_html"].endswith("многострочным редактированием.")
    assert "Подписывайтесь: @donor_channel | " in ordinary["original_html"]  # the donor's text, for the record
    photo = by_text(rt, "Copilot Workspace изнутри")
    assert photo["state"] == "collected" and photo["kind"] == "photo" and "donor_chat" not in photo["text_html"]

    ad = by_text(rt, "SkillFactory")
    assert ad["state"] == "filtered" and ad["state_reason"] == "skip_ads: ad marker '#реклама'"

    original, copy = by_text(rt, "Cloudflare запустила"), by_text(rt, "Cloudflare выпустила")
    assert original["source"] == "@other_news" and "подпишись" not in original["text_html"]
    assert copy["state"] == "duplicate" and copy["duplicate_of"] == original["id"]
    assert 0.65 <= copy["similarity"] < 1.0
    assert copy["state_reason"] == f"near duplicate of post {original['id']} (similarity {copy['similarity']:.2f})"
    assert counts.near_duplicates == [
        {"post_id": copy["id"], "duplicate_of": original["id"], "similarity": round(copy["similarity"], 2)}
    ]
    assert report.lines() == [
        "collected 24",
        "duplicate 1: 1 of other posts",
        f"near duplicate: post {copy['id']} of post {original['id']} (similarity {copy['similarity']:.2f})",
        "filtered 1: skip_ads: ad marker '#реклама'",
        "footer stripped from 26",
        "skipped 1 poll, 2 service messages",
        "1 media file missing from the export (stored without the file)",
    ]

    # The learned footer is kept per source, with the donor's own channels named in it.
    footer = load_footer(rt.store.conn, "@donor_channel")
    assert footer is not None and footer.refs == {"@donor_channel", "@donor_chat"} and footer.sample == 26

    # The rewriter is given the body: the footer does not come back.
    from contentq.rewrite.core import build_task, load_route

    task = build_task(rt, ordinary, load_route(rt.settings, "tech"))
    assert "Подписывайтесь" not in task.donor_html and all("Подписывайтесь" not in h for h in task.donor_recent)


def test_import_prints_one_line_per_reason_and_the_same_in_json(routes):
    runner.invoke(app, ["import", str(OTHER), "--source", "@other_news"])
    result = runner.invoke(app, ["import", str(DONOR), "--source", "@donor_channel"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for line in ("collected 24", "filtered 1: skip_ads: ad marker '#реклама'", "footer stripped from 26",
                 "skipped 1 poll, 2 service messages", "1 media file missing from the export"):  # fmt: skip
        assert line in result.stdout

    listed = runner.invoke(app, ["posts", "list", "--state", "filtered"], env={"COLUMNS": "200"})
    assert "skip_ads: ad marker '#реклама'" in listed.stdout
    listed = json.loads(runner.invoke(app, ["posts", "list", "--state", "duplicate", "--json"]).stdout)
    assert [(p["duplicate_of"] is not None, p["similarity"] >= 0.65) for p in listed] == [(True, True)]
    shown = runner.invoke(app, ["posts", "show", str(listed[0]["id"])], env={"COLUMNS": "200"})
    assert f"{listed[0]['similarity']:.2f}" in shown.stdout and "near duplicate of post" in shown.stdout

    again = runner.invoke(app, ["import", str(DONOR), "--source", "@donor_channel", "--json"])
    data = json.loads(again.stdout[again.stdout.index("{") :])
    assert {"source", "route", "messages", "posts", "service_skipped", "missing_files", "collected", "duplicate",
            "filtered", "already_stored", "footer_stripped", "filtered_reasons", "near_duplicates", "skipped",
            "footer", "summary"} <= set(data)  # fmt: skip
    assert data["duplicate"] == data["already_stored"] == 26 and data["collected"] == 0
    assert data["skipped"] == {"poll": 1, "service message": 2} and data["missing_files"] == 1
    assert data["summary"][:2] == ["collected 0", "duplicate 26: 26 already stored"]


def test_without_stripping_a_donor_naming_its_own_chat_is_still_not_an_ad(rt):
    configure(rt, "strip_footer = false")
    report = run_import(rt, DONOR, "@donor_channel")
    assert report.counts.footer_stripped == 0
    assert report.counts.filtered_reasons == {"skip_ads: ad marker '#реклама'": 1}
    assert "Подписывайтесь" in by_text(rt, "Python 3.13")["text_html"]


def test_self_promotion_is_not_an_ad_but_a_foreign_channel_is():
    own = frozenset({"@donor_chat", "t.me/+donorsecret"})
    ours = PostFacts("Обсуждаем в чате, подписывайтесь: t.me/donor_chat", "text", links=("https://t.me/donor_chat",),
                     source="@donor_channel", self_refs=own)  # fmt: skip
    assert advertisement(ours) is None
    invite = PostFacts("Наш закрытый чат: https://t.me/+donorsecret", "text", links=("https://t.me/+donorsecret",),
                       source="@donor_channel", self_refs=own)  # fmt: skip
    assert advertisement(invite) is None
    rival = PostFacts("Подписывайтесь на канал @rival_news, там лучше", "text", source="@donor_channel", self_refs=own)
    assert advertisement(rival) == "advertises @rival_news"


def _posts(n: int, footer: str = "", header: str = "") -> list[str]:
    return [f"{header}Новость номер {i}: что-то случилось, подробности ниже.\nВторая строка {i}.{footer}"
            for i in range(n)]  # fmt: skip


def test_learning_needs_a_sample_and_a_share():
    footer = '\n\n<a href="https://t.me/donor_chat">Наш чат</a> | @donor'
    assert learn(_posts(4, footer)).empty  # too few posts to tell
    learned = learn(_posts(6, footer) + _posts(4))
    assert learned.lines == ("Наш чат | @donor",) and learned.refs == {"@donor_chat", "@donor"}
    assert learn(_posts(3, footer) + _posts(7)).empty  # 30 % of the posts: not the donor's footer
    # Same text, another link: another line.
    other = learn(_posts(4, footer) + _posts(4, footer.replace("donor_chat", "rival")) + _posts(4))
    assert other.empty and other.sample == 12
    header = learn(_posts(8, header="⚡️ Срочно\n"))
    assert header.lines == ("⚡️ Срочно",) and not header.trailer


def test_strip_keeps_the_body_formatting_and_uses_route_patterns():
    footer = learn(_posts(6, '\n\n<a href="https://t.me/donor_chat">Наш чат</a> | @donor'))
    post = '<b>Заголовок</b>\nТекст <i>поста</i>.\n\n<a href="https://t.me/donor_chat">Наш  чат</a> | @Donor\n'
    stripped = strip(post, footer)
    assert stripped.html == "<b>Заголовок</b>\nТекст <i>поста</i>." and stripped.removed == ["Наш  чат | @Donor"]
    assert strip("Текст без подвала", footer).html == "Текст без подвала"
    patterns = Patterns.parse(["Реклама: @ads_bot", "re:^#\\w+( #\\w+)*$"])
    cleaned = strip("Текст.\n#новости #ит\nреклама: @ADS_bot", Footer(), patterns)
    assert cleaned.html == "Текст." and cleaned.removed == ["#новости #ит", "реклама: @ADS_bot"]


def test_footer_patterns_are_checked_with_the_routes():
    with pytest.raises(ConfigError, match=r"route 'x': footer_patterns: .*bad regex '\('"):
        parse_routes({"routes": {"x": {"target": "@a", "sources": ["@b"], "footer_patterns": ["re:("]}}})


def test_collect_learns_the_footer_and_prints_the_summary(rt, monkeypatch):
    (rt.settings.home / "contentq.toml").write_text(
        ROUTES.format(extra="").replace('"@other_news"', '"@other_news", "@donor_a"')
    )
    tg = FakeTelegram()
    tg.add_channel("@donor_a", 111, "Donor A")
    monkeypatch.setattr("contentq.integrations.telegram.client.build_gateway", lambda runtime: tg)
    tail = '\n\nПодписывайтесь: @donor_a | <a href="https://t.me/donor_a_chat">Наш чат</a>'
    for i, html in enumerate(_posts(6), start=1):
        tg.add_message("@donor_a", i, html + tail)
    tg.add_message("@donor_a", 7, "#реклама Лучший курс, промокод SALE" + tail)
    result = runner.invoke(app, ["collect", "--now", "@donor_a"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "collected 6" in result.stdout and "footer stripped from 7" in result.stdout
    assert "filtered 1: skip_ads: ad marker '#реклама'" in result.stdout
    stored = rt.store.query("SELECT state, text_html FROM posts ORDER BY id")
    assert [p["state"] for p in stored] == ["collected"] * 6 + ["filtered"]
    assert not any("Подписывайтесь" in p["text_html"] for p in stored)

    # The next run fetches one post: the footer learned before (with the stored posts) still applies.
    tg.add_message("@donor_a", 8, "Ещё одна новость: вышла новая версия, подробности по ссылке." + tail)
    data = json.loads(runner.invoke(app, ["collect", "--now", "@donor_a", "--json"]).stdout)
    assert data[0]["collected"] == 1 and data[0]["footer_stripped"] == 1
    assert data[0]["summary"] == ["collected 1", "footer stripped from 1"]


def test_a_post_that_is_nothing_but_the_footer_is_filtered_with_that_reason(rt):
    # Issue 29, item 7: it was kept whole, then published as "Подписывайся на" by the clean rewriter.
    configure(rt)
    tg = FakeTelegram()
    tg.add_channel("@donor_a", 111, "Donor A")
    rt.services["telegram"] = tg
    (rt.settings.home / "contentq.toml").write_text(ROUTES.format(extra="").replace('"@other_news"', '"@donor_a"'))
    tail = "\n\nПодписывайся на @donor_a"
    for i, html in enumerate(_posts(6), start=1):
        tg.add_message("@donor_a", i, html + tail)
    tg.add_message("@donor_a", 7, "Подписывайся на @donor_a")
    from tests.collect_helpers import collect

    collect(rt, "@donor_a")
    only = rt.store.one("SELECT * FROM posts WHERE source_msg_id = 7")
    assert only is not None and only["state"] == "filtered"
    assert only["state_reason"] == "empty after cleaning: the post is nothing but the donor's footer"
    assert only["original_html"] == "Подписывайся на @donor_a"  # kept for the record
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'rewrite'") == 6  # none for it
