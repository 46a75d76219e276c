"""Settings precedence and contentq.toml validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from contentq.errors import ConfigError
from contentq.routes import load_routes, normalize_channel_ref
from contentq.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_flag_beats_env_beats_dotenv_beats_default(tmp_path, monkeypatch):
    for key in ("CONTENTQ_PUBLISH_ATTEMPTS", "CONTENTQ_HOME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_settings().policy("publish").attempts == 5
    (tmp_path / ".env").write_text("CONTENTQ_PUBLISH_ATTEMPTS=7\nCONTENTQ_PUBLISH_TIMEOUT=50\n")
    assert load_settings().policy("publish").attempts == 7
    monkeypatch.setenv("CONTENTQ_PUBLISH_ATTEMPTS", "6")
    settings = load_settings()
    assert settings.policy("publish").attempts == 6 and settings.publish_timeout == 50
    assert load_settings(publish_attempts=9).policy("publish").attempts == 9


def test_home_relocates_everything(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTENTQ_HOME", str(tmp_path / "h"))
    s = load_settings()
    for path in (s.db_path, s.media_dir, s.redis_dir, s.session_path, s.outbox_dir):
        assert path.is_relative_to(tmp_path / "h")


def test_retry_policy_backoff_is_exponential():
    policy = load_settings(rewrite_attempts=4).policy("rewrite")
    assert policy.retry_intervals() == [2, 4, 8]
    assert policy.timeout == 300


def test_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("CONTENTQ_PUBLISH_ATTEMPTS", "many")
    with pytest.raises(ConfigError, match="CONTENTQ_PUBLISH_ATTEMPTS"):
        load_settings()


def test_example_files_are_valid(tmp_path, monkeypatch):
    config = load_routes(ROOT / "contentq.example.toml", required=True)
    assert config.routes
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    load_settings()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[routes.news]\nsources = ["@a"]\n', "route 'news': target: give the target channel"),
        ('[routes.news]\ntarget = "@t"\nsources = ["@a"]\nrewriter = "gpt"\n', "route 'news': rewriter:"),
        (
            '[routes.news]\ntarget = "@t"\nsources = ["@a"]\n[routes.news.schedule]\nslots = ["25:00"]\n',
            "route 'news': schedule.slots: '25:00' is not a time of day",
        ),
        (
            '[routes.news]\ntarget = "@t"\nsources = ["@a"]\n[routes.news.schedule]\nslots = ["09:00"]\n'
            'timezone = "Mars/Olympus"\n',
            "route 'news': schedule.timezone: unknown time zone",
        ),
        ('[routes.news]\ntarget = "@t"\n', "route 'news': a route needs donor channels"),
        ("[routes\n", "not valid TOML"),
        ('[routes.news]\ntarget = "@t"\nsources = ["@a"]\ncolour = "red"\n', "route 'news': colour: Extra inputs"),
    ],
)
def test_route_errors_name_file_route_and_field(tmp_path, body, message):
    path = tmp_path / "contentq.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_routes(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_routes_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="copy contentq.example.toml"):
        load_routes(tmp_path / "contentq.toml", required=True)


def test_channel_refs_are_normalised():
    assert normalize_channel_ref("https://t.me/SomeChannel") == "@somechannel"
    assert normalize_channel_ref("@SomeChannel") == normalize_channel_ref("somechannel")
    assert normalize_channel_ref("-1001234") == "-1001234"


def test_home_flag_reads_the_dotenv_in_that_home(tmp_path, monkeypatch):
    monkeypatch.delenv("CONTENTQ_HOME", raising=False)
    monkeypatch.delenv("CONTENTQ_REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "h"
    home.mkdir()
    (home / ".env").write_text("CONTENTQ_REDIS_URL=redis://example.invalid:6379/3\n")
    assert load_settings(home=home).redis_url == "redis://example.invalid:6379/3"


def test_unusable_home_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create CONTENTQ_HOME"):
        load_settings(home=blocker / "home").ensure_home()
