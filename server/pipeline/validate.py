"""Normalise and validate one usage record before it may be rated or stored.

A record that fails gets a ``Failure`` with reason ``BAD_FIELD`` naming the field, and goes
to suspense with its raw form; it is never dropped. Checks are what the database and the
rater rely on: a parseable UTC event time in a sane range, digit strings for numbers,
non-negative 64-bit counters, decimal strings for amounts.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

import msgspec

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Failure
from billing_oss.core.records import UsageRecord, parse_event_time

_encode = msgspec.json.encode

# record_key and source form the primary key of usage_keys: a btree entry must fit in a
# third of a page (~2.7 kB), and no decoder makes keys anywhere near this long.
MAX_KEY_LENGTH = 256
# charge and quantity are stored as numeric, as sent: below 1e15 in magnitude, and written
# with an exponent PostgreSQL's numeric and asyncpg's encoder take ("1e-999999" is not;
# "34.5600000000002", a meter difference of JSON floats, is).
MAX_DIGITS = 15  # integer digits: |value| < 1e15
MAX_SCALE = 1000  # digits after the point, as written
_INT64_MAX = 2**63 - 1


def validate(record: UsageRecord) -> tuple[datetime | None, Failure | None]:
    """The record's UTC event time, or the first problem found (with the field's name)."""
    problem = key_problem(record)
    if problem is not None:
        return None, problem
    try:
        when = parse_event_time(record.event_time)
    except (ValueError, TypeError) as exc:
        return None, _bad("event_time", f"{record.event_time!r} is not RFC 3339 UTC ({exc})")
    problem = (_check_numbers(record) or _check_kind(record) or _check_nul(record)
               or _check_group(record))
    return (when, None) if problem is None else (when, problem)


def key_problem(record: UsageRecord) -> Failure | None:
    """What makes the record's dedupe key (source, record_key) unusable: such a record
    claims no key and goes to suspense every time it comes."""
    key, source = record.record_key, record.source
    if not key or len(key) > MAX_KEY_LENGTH:
        return _bad("record_key", f"must be 1..{MAX_KEY_LENGTH} characters")
    if "\x00" in key:
        return _bad("record_key", "contains a NUL character")
    if len(source) > MAX_KEY_LENGTH:
        return _bad("source", f"must be at most {MAX_KEY_LENGTH} characters")
    if "\x00" in source:
        return _bad("source", "contains a NUL character")
    return None


def _check_nul(record: UsageRecord) -> Failure | None:
    # PostgreSQL text and jsonb cannot hold U+0000. The digit and decimal fields are checked
    # already; the kind is one of four. Straight-line, like _check_numbers: it runs per record.
    if "\x00" in record.event_time:
        return _bad("event_time", "contains a NUL character")
    unit = record.unit
    if unit is not None and "\x00" in unit:
        return _bad("unit", "contains a NUL character")
    attrs = record.attrs
    # msgspec's encoder (C) writes U+0000 as \u0000: only then walk the attributes, which
    # also tells that from a literal backslash-u0000 in some string.
    if attrs and b"\\u0000" in _encode(attrs) and _has_nul(attrs):
        return _bad("attrs", "contains a NUL character")
    return None


def _check_group(record: UsageRecord) -> Failure | None:
    # A partial part's group key is in the primary key of partial_records.
    if record.partial_seq is None:
        return None
    for name in ("merge_key", "charging_id"):
        value = record.attrs.get(name)
        if value is not None:
            if len(str(value)) > MAX_KEY_LENGTH:
                return _bad(f"attrs.{name}", f"must be at most {MAX_KEY_LENGTH} characters")
            return None
    return None


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _check_numbers(record: UsageRecord) -> Failure | None:
    # Straight-line: this runs for every record, and most fields are absent.
    duration, up, down = record.duration_s, record.volume_up, record.volume_down
    if duration is not None and not 0 <= duration <= _INT64_MAX:
        return _bad("duration_s", f"{duration} is not a counter in 0..2^63-1")
    if up is not None and not 0 <= up <= _INT64_MAX:
        return _bad("volume_up", f"{up} is not a counter in 0..2^63-1")
    if down is not None and not 0 <= down <= _INT64_MAX:
        return _bad("volume_down", f"{down} is not a counter in 0..2^63-1")
    calling, called, imsi, msisdn = record.calling, record.called, record.imsi, record.msisdn
    if calling is not None and not _is_digits(calling):
        return _bad_digits("calling", calling)
    if called is not None and not _is_digits(called):
        return _bad_digits("called", called)
    if imsi is not None and not _is_digits(imsi):
        return _bad_digits("imsi", imsi)
    if msisdn is not None and not _is_digits(msisdn):
        return _bad_digits("msisdn", msisdn)
    if record.charge is not None and not _is_decimal(record.charge):
        return _bad_decimal("charge", record.charge)
    if record.quantity is not None and not _is_decimal(record.quantity):
        return _bad_decimal("quantity", record.quantity)
    if record.partial_seq is not None and not 1 <= record.partial_seq <= 2**31 - 1:
        return _bad("partial_seq", f"{record.partial_seq} is not a sequence number >= 1")
    return None


def _is_digits(text: str) -> bool:
    return text.isdigit() and text.isascii() and len(text) <= 32


def _bad_digits(name: str, text: str) -> Failure:
    return _bad(name, f"{text!r} is not a digit string of at most 32 digits")


def _check_kind(record: UsageRecord) -> Failure | None:
    if record.kind == "voice" and record.duration_s is None:
        return _bad("duration_s", "a voice record needs a duration")
    if record.kind == "data" and record.volume_up is None and record.volume_down is None:
        return _bad("volume_up", "a data record needs volume_up or volume_down")
    return None


def _is_decimal(text: str) -> bool:
    if len(text) > 40:
        return False
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return False
    if not value.is_finite():
        return False
    # The value is stored as written ("0e999999" is zero but not encodable): bound the
    # written exponent, and the magnitude through the leading digit's position.
    exponent = value.as_tuple().exponent
    return (isinstance(exponent, int) and -MAX_SCALE <= exponent <= MAX_DIGITS
            and value.adjusted() < MAX_DIGITS)


def _bad_decimal(name: str, text: str) -> Failure:
    shown = text if len(text) <= 40 else text[:40] + "..."
    return _bad(name, f"{shown!r} is not a decimal string below 1e{MAX_DIGITS} in magnitude "
                      f"with at most {MAX_SCALE} decimal places")


def _bad(field: str, message: str) -> Failure:
    return Failure(Reason.BAD_FIELD, f"{field}: {message}")
