"""What rating reads from a normalised record, shared by both raters.

Choices (DESIGN.md §5 leaves them open):

- Validity first: a record whose ``event_time`` is not RFC 3339 with an offset, lies
  outside 1970-01-01..2100-01-01 UTC, or lacks its usage (voice without ``duration_s``,
  data without any volume, a negative or > int64 quantity) is ``BAD_FIELD`` before any
  account lookup.
- Account: voice and sms are matched on ``calling``; data on ``msisdn`` then ``imsi``;
  event on ``msisdn``, ``imsi`` then ``calling``. The first candidate that is a known
  identifier wins; none -> ``UNKNOWN_ACCOUNT``.
- Usage ``u``: ``duration_s`` (voice); ``volume_up + volume_down`` (data, a missing side
  counts 0); 1 (sms, event).
- ``called``: an empty string is the same as no ``called``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from billing_oss.core.money import INT64_MAX
from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog.model import EVENT_MAX_US, EVENT_MIN_US

KIND_CODES = {"voice": 0, "sms": 1, "data": 2, "event": 3}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadField(ValueError):
    """A record field rating needs is missing or unusable."""


def event_micros(text: str) -> int:
    """``event_time`` as integer microseconds since the epoch (UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadField(f"event_time {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise BadField(f"event_time {text!r} has no UTC offset")
    delta = moment - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not EVENT_MIN_US <= micros < EVENT_MAX_US:
        raise BadField(f"event_time {text!r} is outside 1970..2100")
    return micros


def usage_of(record: UsageRecord) -> int:
    """The quantity the steps apply to."""
    if record.kind == "voice":
        if record.duration_s is None:
            raise BadField("voice record without duration_s")
        usage = record.duration_s
    elif record.kind == "data":
        if record.volume_up is None and record.volume_down is None:
            raise BadField("data record without volume_up or volume_down")
        up, down = record.volume_up or 0, record.volume_down or 0
        if up < 0 or down < 0:
            raise BadField("negative volume")
        usage = up + down
    else:
        return 1
    if usage < 0:
        raise BadField(f"negative usage {usage}")
    if usage > INT64_MAX:
        raise BadField(f"usage {usage} does not fit in 64 bits")
    return usage


# The fields that name a record's account, tried in this order (DESIGN.md §5, rule 1);
# ``server.rating.accounts`` looks them up.
IDENTIFIER_FIELDS: dict[str, tuple[str, ...]] = {
    "voice": ("calling",), "sms": ("calling",), "data": ("msisdn", "imsi"),
    "event": ("msisdn", "imsi", "calling"),
}
