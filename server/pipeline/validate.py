"""Normalise and validate one usage record before it may be rated or stored.

A record that fails gets a ``Failure`` with reason ``BAD_FIELD`` naming the field, and goes
to suspense with its raw form; it is never dropped. Checks are what the database and the
rater rely on: a parseable UTC event time in a sane range, digit strings for numbers,
non-negative 64-bit counters, decimal strings for amounts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from server.errors import Reason
from server.pipeline.ports import Failure
from server.records import UsageRecord

MAX_KEY_LENGTH = 256
MIN_YEAR, MAX_YEAR = 1990, 2199
_INT64_MAX = 2**63 - 1


def parse_event_time(text: str) -> datetime:
    """RFC 3339 with an explicit offset → aware UTC datetime; ValueError otherwise."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError("no UTC offset")
    if not MIN_YEAR <= when.year <= MAX_YEAR:
        raise ValueError(f"year {when.year} outside {MIN_YEAR}..{MAX_YEAR}")
    return when.astimezone(UTC)


def validate(record: UsageRecord) -> tuple[datetime | None, Failure | None]:
    """The record's UTC event time, or the first problem found (with the field's name)."""
    if not record.record_key or len(record.record_key) > MAX_KEY_LENGTH:
        return None, _bad("record_key", f"must be 1..{MAX_KEY_LENGTH} characters")
    try:
        when = parse_event_time(record.event_time)
    except (ValueError, TypeError) as exc:
        return None, _bad("event_time", f"{record.event_time!r} is not RFC 3339 UTC ({exc})")
    problem = _check_numbers(record) or _check_kind(record)
    return (when, None) if problem is None else (when, problem)


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
        return _bad("charge", f"{record.charge!r} is not a decimal string")
    if record.quantity is not None and not _is_decimal(record.quantity):
        return _bad("quantity", f"{record.quantity!r} is not a decimal string")
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
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return False
    return value.is_finite() and len(text) <= 40


def _bad(field: str, message: str) -> Failure:
    return Failure(Reason.BAD_FIELD, f"{field}: {message}")
