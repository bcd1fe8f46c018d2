"""Typed format options (adapters.formats.options)."""

from __future__ import annotations

import pytest

from billing_oss.adapters.formats.options import describe, parse_options
from billing_oss.adapters.formats.registry import formats
from billing_oss.core.errors import ConfigError


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("false", False), ("no", False), ("1", True), (False, False)])
def test_bools_from_text_and_toml(text: object, value: bool) -> None:
    assert parse_options("tap3", {"check_audit": text})["check_audit"] is value


@pytest.mark.parametrize(("format", "name", "value", "message"), [
    ("tap3", "check_audit", "", "option check_audit: expected true or false, got ''"),
    ("3gpp", "framing", "ber", "option framing: expected one of auto, 32.297, raw"),
    ("csv", "mapping", "{bad", "option mapping: bad JSON at character 1"),
    ("csv", "mapping", '{"calling": 3}', "option mapping: field 'calling'"),
    ("csv", "delimiter", ";;", "option delimiter: expected one character"),
    ("csv", "kind", "video", "option kind: expected one of voice, sms, data, event"),
    ("csv", "check_audit", "true", "'check_audit' is not a csv option"),
])
def test_bad_values_name_the_option(format: str, name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_options(format, {name: value})
    assert message in info.value.message and info.value.exit_status == 2


def test_csv_values_are_typed() -> None:
    opts = parse_options("csv", {"columns": "id, from ,to", "delimiter": "tab",
                                 "mapping": '{"event_time": "t"}', "timezone": "Europe/Paris"})
    assert opts["columns"] == ("id", "from", "to") and opts["delimiter"] == "\t"
    assert opts["mapping"] == {"event_time": ["t"]} and opts["timezone"].key == "Europe/Paris"
    assert parse_options("csv", {"columns": '["a","b"]'})["columns"] == ("a", "b")
    assert parse_options("csv", None)["time_format"] == "%Y-%m-%d %H:%M:%S"


def test_every_option_is_described() -> None:
    for fmt in formats():
        text = describe(fmt.name)
        assert all(f"  {o.name}=<" in text for o in fmt.options)
