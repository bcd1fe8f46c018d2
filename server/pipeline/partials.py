"""3GPP partial records: which group a part belongs to, when a group is complete, the merge.

A long call or data session is closed in several partial CDRs sharing a charging id, numbered
by ``recordSequenceNumber`` (``partial_seq``) from 1; the last one is closed for a reason other
than "partial record". The group is rated as one usage once parts 1..n are all there and part
n is the last. The decoder puts the charging id in ``attrs["charging_id"]`` and marks the last
part with ``attrs["partial_last"] = true`` (or gives ``attrs["cause_for_record_closing"]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from billing_oss.core.closing_causes import more_parts_follow
from billing_oss.core.records import UsageRecord


def group_key(record: UsageRecord) -> str:
    """Parts of one usage share this key: the decoder's ``merge_key`` (record type, node
    address and charging id: two gateways may hand out the same charging id), else the
    charging id, else the record key itself."""
    for name in ("merge_key", "charging_id"):
        value = record.attrs.get(name)
        if value is not None:
            return str(value)
    return record.record_key


def is_last(record: UsageRecord) -> bool:
    flag = record.attrs.get("partial_last")
    if flag is not None:
        return bool(flag)
    cause = record.attrs.get("cause_for_record_closing")
    if cause is not None:
        return not more_parts_follow(cause)
    return False


def missing(parts: Sequence[tuple[int, bool]]) -> list[int] | None:
    """Sequence numbers still missing from ``(seq, is_last)`` parts; None when unknown (no
    last part yet, so the count is unknown), [] when complete."""
    seqs = {seq for seq, _ in parts}
    last = max((seq for seq, final in parts if final), default=None)
    if last is None:
        return None
    return [seq for seq in range(1, last + 1) if seq not in seqs]


def merge(group: str, parts: Sequence[UsageRecord]) -> UsageRecord:
    """One usage from the complete, ordered parts: counters summed, first part's start time."""
    ordered = sorted(parts, key=lambda p: p.partial_seq or 0)
    first = ordered[0]
    attrs = dict(first.attrs)
    attrs.pop("partial_last", None)
    attrs["partial_parts"] = [p.record_key for p in ordered]
    return UsageRecord(
        record_key=f"{group}/merged",
        source=first.source,
        kind=first.kind,
        event_time=first.event_time,
        duration_s=_sum(p.duration_s for p in ordered),
        volume_up=_sum(p.volume_up for p in ordered),
        volume_down=_sum(p.volume_down for p in ordered),
        quantity=first.quantity,
        unit=first.unit,
        calling=first.calling,
        called=first.called,
        imsi=first.imsi,
        msisdn=first.msisdn,
        charge=first.charge,
        attrs=attrs,
    )


def _sum(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None
