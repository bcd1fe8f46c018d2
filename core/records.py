"""The normalised usage record (DESIGN.md §5b): what `decode` prints and the pipeline stores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

Kind = Literal["voice", "sms", "data", "event"]
MIN_YEAR, MAX_YEAR = 1990, 2199  # an event time outside these years is a bad field


class UsageRecord(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One usage event after decoding and normalisation.

    ``event_time`` is RFC 3339 UTC (``2026-01-15T10:20:30Z``); numbers are plain digit
    strings; ``charge`` is a decimal string (never a float).
    """

    record_key: str
    source: str
    kind: Kind
    event_time: str
    duration_s: int | None = None
    volume_up: int | None = None
    volume_down: int | None = None
    quantity: str | None = None
    unit: str | None = None
    calling: str | None = None
    called: str | None = None
    imsi: str | None = None
    msisdn: str | None = None
    charge: str | None = None
    partial_seq: int | None = None
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)


def parse_event_time(text: str) -> datetime:
    """RFC 3339 with an explicit offset → aware UTC datetime; ValueError otherwise."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError("no UTC offset")
    if not MIN_YEAR <= when.year <= MAX_YEAR:
        raise ValueError(f"year {when.year} outside {MIN_YEAR}..{MAX_YEAR}")
    return when.astimezone(UTC)
