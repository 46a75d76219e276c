"""Property-based tests: whatever the input, the export parser, the settings and the supervisor env quoting give a
result or a ContentqError (one line for the user), never another exception."""

from __future__ import annotations

import configparser
import contextlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supervisor.datatypes import dict_of_key_value_pairs

from contentq.errors import ContentqError
from contentq.integrations.export import export_groups, read_export
from contentq.ops.supervisor import render
from contentq.settings import QUEUES, Settings, load_settings

PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- the export parser -------------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["message", "service", "photo", "1714557600", "2024-05-01T10:00:00", "(File not included)",
                     "../../etc/passwd", "\ud800", "²", "text_link", "pre", "mention_name", "9" * 30]),
)  # fmt: skip
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(["id", "type", "date", "date_unixtime", "text", "photo", "file", "media_type", "mime_type",
                         "width", "height", "file_size", "photo_file_size", "forwarded_from"])  # fmt: skip
_text_part = st.one_of(
    st.text(max_size=10),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["plain", "bold", "text_link", "pre", "mention_name", "blockquote", "x"]),
            "text": st.one_of(st.text(max_size=10), _scalars),
        },
        optional={"href": _scalars, "language": _json, "user_id": _scalars, "collapsed": _scalars},
    ),  # fmt: skip
    _scalars,
)
_message = st.one_of(
    st.dictionaries(_keys, _json, max_size=8),
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.integers(min_value=-5, max_value=2**70), _scalars),
            "type": st.sampled_from(["message", "service"]),
            "date_unixtime": st.one_of(st.integers(min_value=0, max_value=10**20).map(str), _scalars),
            "text": st.one_of(st.text(max_size=20), st.lists(_text_part, max_size=5)),
        },
        optional={"date": _scalars, "photo": _scalars, "file": _scalars, "width": _scalars, "mime_type": _scalars},
    ),  # fmt: skip
    _json,
)
_export = st.one_of(
    st.fixed_dictionaries({"name": _scalars, "messages": st.lists(_message, max_size=6)}),
    _json,
)


@PROFILE
@given(data=_export)
def test_read_export_on_generated_structures(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        export = read_export(path)
    except ContentqError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000  # one bounded line
        return
    ids = [m.id for m in export.messages]
    assert len(ids) == len(set(ids)) and all(0 < i < 2**63 for i in ids)
    for message in export.messages:
        message.html.encode("utf-8")  # storable
        assert message.date.tzinfo is not None
    export_groups(export.messages)


@PROFILE
@given(blob=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_read_export_on_generated_bytes(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(blob)
    with contextlib.suppress(ContentqError):
        read_export(path)


# -- the settings -----------------------------------------------------------------------------------------------

_FIELDS = sorted(name for name in Settings.model_fields if name not in ("home", "config"))
_env_value = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "-0", "0", "1", "true", "", " ", "2000", "1e-300", "0x10",
                     "１２", "²", "9" * 400]),
    st.text(max_size=30).filter(lambda t: "\x00" not in t),
)  # fmt: skip


@PROFILE
@given(values=st.dictionaries(st.sampled_from(_FIELDS), _env_value, min_size=1, max_size=6))
def test_settings_from_generated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, values: dict[str, str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as env:
        env.setenv("CONTENTQ_HOME", str(tmp_path / "home"))
        for name, value in values.items():
            env.setenv(f"CONTENTQ_{name.upper()}", value)
        try:
            loaded = load_settings()
        except ContentqError as exc:
            assert "\n" not in str(exc)
            named = [f"CONTENTQ_{n.upper()}" for n in values]
            assert any(n in str(exc) for n in named), str(exc)
            return
    # What was accepted is usable: every queue's policy, its retry plan and its timeout.
    for queue in QUEUES:
        policy = loaded.policy(queue)
        intervals = policy.retry_intervals()
        assert policy.attempts >= 1 and len(intervals) == policy.attempts - 1
        assert all(1 <= i <= 86400 for i in intervals) and 1 <= policy.timeout <= 86400
    for name in _FIELDS:
        value = getattr(loaded, name)
        if isinstance(value, float):
            assert math.isfinite(value), name


@PROFILE
@given(line=st.binary(max_size=60))
def test_settings_from_a_generated_env_file(tmp_path_factory: pytest.TempPathFactory, line: bytes) -> None:
    home = tmp_path_factory.mktemp("home")
    (home / ".env").write_bytes(b"CONTENTQ_PUBLISH_ATTEMPTS=" + line + b"\n")
    try:
        load_settings(home=home)
    except ContentqError as exc:
        assert "\n" not in str(exc)


# -- supervisor environment --------------------------------------------------------------------------------------


@PROFILE
@given(value=st.text(max_size=30))
def test_supervisor_env_values_read_back_exactly_or_are_refused(home: Path, value: str) -> None:
    try:
        text = render(load_settings(), extra_env={"EXTRA": value})
    except ContentqError:
        return
    parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";", "#"))  # as supervisord reads
    parser.read_string(text)
    programs = [s for s in parser.sections() if s.startswith("program:")]
    assert programs and all(s.startswith("program:contentq-") for s in programs)  # no injected section
    for section in programs:
        env = dict_of_key_value_pairs(parser[section]["environment"].replace("%%", "%"))
        assert env["EXTRA"] == value
