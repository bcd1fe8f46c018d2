"""The options formats take, typed: each format declares its ``Option``s in its registry
entry (``Format.options``: name, type, default, help, parser), checked in one place here.

``parse_options(format, values)`` turns command-line text (``check_audit=false``) or
configuration values (TOML ``true``) into typed values and raises ``ConfigError`` (exit 2)
naming the option on an unknown name or a bad value; formats read only the options they
declare. The parsers below (``boolean``, ``choice``, ``zone`` ...) are what declarations use.
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


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    return parse


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty text, got {value!r}")
    return value


def char(value: Any) -> str:
    ch = {"tab": "\t", "\\t": "\t"}.get(value, value)
    if not isinstance(ch, str) or len(ch) != 1:
        raise ValueError(f"expected one character (or 'tab'), got {value!r}")
    return ch


def _json_or(value: Any, kind: type) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"bad JSON at character {exc.pos}: {exc.msg}") from None
    if not isinstance(value, kind):
        raise ValueError(f"expected a JSON {kind.__name__}, got {value!r}")
    return value


def names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value[:1] != "[":
        value = [part.strip() for part in value.split(",")]
    given = _json_or(value, list)
    if not given or not all(isinstance(n, str) and n for n in given):
        raise ValueError("expected column names (a,b,c or a JSON list of texts)")
    return tuple(given)


def mapping(value: Any) -> dict[str, Any]:
    fields: dict[str, Any] = _json_or(value, dict)
    for field, column in fields.items():
        ok = isinstance(column, str) or (
            field == "event_time" and isinstance(column, list)
            and all(isinstance(c, str) for c in column))
        if not ok:
            raise ValueError(f"field {field!r}: expected a column name, got {column!r}")
    if isinstance(fields.get("event_time"), str):
        fields["event_time"] = [fields["event_time"]]
    return fields


def zone(value: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None


def parse_options(format: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every declared option of ``format``, typed: given values parsed, the rest defaulted."""
    declared = {o.name: o for o in _declared(format)}
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
    declared = _declared(format)
    lines = [f"{format} options:" if declared else f"{format} options: none"]
    for o in declared:
        default = getattr(o.default, "key", o.default)  # a ZoneInfo by its name
        if isinstance(default, bool):
            default = str(default).lower()
        shown = "" if default is None else f" (default {default!s})"
        lines.append(f"  {o.name}=<{o.type}>{shown}\n      {o.help}")
    return "\n".join(lines)


def _declared(format: str) -> tuple[Option, ...]:
    from billing_oss.adapters.formats.registry import find

    fmt = find(format)
    return fmt.options if fmt is not None else ()
