"""The normalised usage record (DESIGN.md §5b): what `decode` prints and the pipeline stores."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Kind = Literal["voice", "sms", "data", "event"]


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
