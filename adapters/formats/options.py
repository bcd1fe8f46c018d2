"""The options each format takes, typed: one declaration per format, checked in one place.

``OPTIONS[format]`` lists ``Option``s (name, type, default, help). ``parse_options(format,
values)`` turns command-line text (``check_audit=false``) or configuration values (TOML
``true``) into typed values and raises ``ConfigError`` (exit 2) naming the option on an
unknown name or a bad value; formats read only the options declared here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from billing_oss.core.errors import ConfigError

KINDS = ("voice", "sms", "data", "event")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class Option(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    type: str  # shown in help: bool, text, one of ..., list of names, JSON object, IANA zone
    default: Any
    help: str
    parse: Callable[[Any], Any]


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty text, got {value!r}")
    return value


def _char(value: Any) -> str:
    text = {"tab": "\t", "\\t": "\t"}.get(value, value)
    if not isinstance(text, str) or len(text) != 1:
        raise ValueError(f"expected one character (or 'tab'), got {value!r}")
    return text


def _json_or(value: Any, kind: type) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"bad JSON at character {exc.pos}: {exc.msg}") from None
    if not isinstance(value, kind):
        raise ValueError(f"expected a JSON {kind.__name__}, got {value!r}")
    return value


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value[:1] != "[":
        value = [part.strip() for part in value.split(",")]
    names = _json_or(value, list)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError("expected column names (a,b,c or a JSON list of texts)")
    return tuple(names)


def _mapping(value: Any) -> dict[str, Any]:
    mapping: dict[str, Any] = _json_or(value, dict)
    for field, column in mapping.items():
        ok = isinstance(column, str) or (
            field == "event_time" and isinstance(column, list)
            and all(isinstance(c, str) for c in column))
        if not ok:
            raise ValueError(f"field {field!r}: expected a column name, got {column!r}")
    if isinstance(mapping.get("event_time"), str):
        mapping["event_time"] = [mapping["event_time"]]
    return mapping


def _zone(value: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None


OPTIONS: dict[str, tuple[Option, ...]] = {
    "3gpp": (
        Option(name="framing", type="one of auto, 32.297, raw", default="auto",
               parse=_choice("auto", "32.297", "raw"),
               help="32.297 file headers, bare concatenated BER records, or tell by the bytes"),
    ),
    "tap3": (
        Option(name="check_audit", type="bool", default=True, parse=_bool,
               help="check CallEventDetailsCount and TotalCharge against the events"),
    ),
    "csv": (
        Option(name="columns", type="list of names", default=None, parse=_names,
               help="the file's columns (default: by column count, Asterisk 18 or 21)"),
        Option(name="mapping", type="JSON object", default=None, parse=_mapping,
               help='normalised field -> column, e.g. {"calling":"from","event_time":["t"]}'),
        Option(name="timezone", type="IANA zone", default=ZoneInfo("UTC"), parse=_zone,
               help="the zone the timestamps are written in"),
        Option(name="time_format", type="text", default="%Y-%m-%d %H:%M:%S", parse=_text,
               help="strptime format of the timestamps"),
        Option(name="delimiter", type="one character", default=",", parse=_char,
               help="field separator ('tab' for a tab)"),
        Option(name="kind", type=f"one of {', '.join(KINDS)}", default="voice",
               parse=_choice(*KINDS), help="the kind of usage every line records"),
    ),
}


def parse_options(format: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every declared option of ``format``, typed: given values parsed, the rest defaulted."""
    declared = {o.name: o for o in OPTIONS.get(format, ())}
    out = {name: o.default for name, o in declared.items()}
    for name, value in (values or {}).items():
        option = declared.get(name)
        if option is None:
            known = ", ".join(declared) or "none"
            raise ConfigError(f"option {name!r} is not a {format} option (known: {known})")
        try:
            out[name] = option.parse(value)
        except ValueError as exc:
            raise ConfigError(f"option {name}: {exc}") from None
    return out


def split_pairs(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` texts from the command line as a mapping (values still text)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def describe(format: str) -> str:
    """The options of ``format`` as help text, one per line."""
    lines = [f"{format} options:"]
    for o in OPTIONS.get(format, ()):
        default = getattr(o.default, "key", o.default)  # a ZoneInfo by its name
        if isinstance(default, bool):
            default = str(default).lower()
        shown = "" if default is None else f" (default {default!s})"
        lines.append(f"  {o.name}=<{o.type}>{shown}\n      {o.help}")
    return "\n".join(lines)
