"""Outbound TAP 3.12 files (GSMA TD.57): TransferBatch and Notification, BER-encoded by
``native.tap3enc``.

A file is the header (BatchControlInfo, AccountingInfo with the file's exchange rates,
NetworkInfo), the CallEventDetailList and the AuditControlInfo whose count, total charge and
earliest/latest times are computed here from the very events written. ``write_transfer_batch``
streams: events arrive in chunks, are encoded into a spool file, and the outer lengths are
written once their size is known, so memory stays flat whatever the file's size.
``adapters.formats.reference_tap3_encode`` writes the same bytes with pyasn1.

Events are ``native.tap3enc.EVENT_FIELDS`` tuples; their start times are local
``CCYYMMDDhhmmss`` strings on the sender's clock, UTC offset code 1 (``header.utc_offset``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

import msgspec

from billing_oss.native.tap3enc import encode_events, header, integer, tlv

SPECIFICATION_VERSION, RELEASE_VERSION = 3, 12
UTC_CODE = 1
Event = tuple[Any, ...]


class TapHeader(msgspec.Struct, frozen=True, kw_only=True):
    sender: str                      # TADIG of the visited network (us)
    recipient: str                   # TADIG of the home network (the partner)
    fsn: int                         # 1..99999
    rap_fsn: int | None = None       # set when the file answers a fatal RAP return
    created: str                     # CCYYMMDDhhmmss on the sender's clock
    cutoff: str
    available: str
    utc_offset: str                  # "+0100"
    test: bool = False
    local_currency: str = "EUR"
    tap_currency: str = "SDR"
    decimal_places: int = 3
    exchange_rates: tuple[tuple[int, int, int], ...] = ()  # (code, decimal places, rate)
    rec_entities: tuple[tuple[int, int, str], ...] = ()    # (code, type, id)


class TapTotals(msgspec.Struct, kw_only=True):
    count: int = 0
    total_charge: int = 0
    earliest: str | None = None
    latest: str | None = None
    size: int = 0

    def add(self, events: Sequence[Event]) -> None:
        if not events:
            return
        self.count += len(events)
        self.total_charge += sum(ev[12] for ev in events)
        first = min(ev[4] for ev in events)
        last = max(ev[4] for ev in events)
        self.earliest = first if self.earliest is None else min(self.earliest, first)
        self.latest = last if self.latest is None else max(self.latest, last)


def fsn_text(n: int) -> str:
    if not 1 <= n <= 99999:
        raise ValueError(f"file sequence number {n} outside 1..99999")
    return f"{n:05d}"


def _text(tag: int, value: str) -> bytes:
    return tlv(tag, value.encode("ascii"), False)


def _time_long(tag: int, local: str, offset: str) -> bytes:
    return tlv(tag, _text(16, local) + _text(231, offset))


def batch_control(h: TapHeader) -> bytes:
    body = (_text(196, h.sender) + _text(182, h.recipient) + _text(109, fsn_text(h.fsn))
            + _time_long(108, h.created, h.utc_offset)
            + _time_long(227, h.cutoff, h.utc_offset)
            + _time_long(107, h.available, h.utc_offset)
            + integer(201, SPECIFICATION_VERSION) + integer(189, RELEASE_VERSION))
    if h.test:
        body += _text(110, "T")
    if h.rap_fsn is not None:
        body += _text(181, fsn_text(h.rap_fsn))
    return tlv(4, body)


def accounting(h: TapHeader) -> bytes:
    rates = b"".join(tlv(106, integer(105, code) + integer(159, places) + integer(104, rate))
                     for code, places, rate in h.exchange_rates)
    body = _text(135, h.local_currency) + _text(210, h.tap_currency)
    if h.exchange_rates:
        body += tlv(80, rates)
    return tlv(5, body + integer(244, h.decimal_places))


def network(h: TapHeader) -> bytes:
    offsets = tlv(234, tlv(233, integer(232, UTC_CODE) + _text(231, h.utc_offset)))
    entities = b"".join(tlv(183, integer(184, code) + integer(186, kind) + _text(400, ident))
                        for code, kind, ident in h.rec_entities)
    return tlv(6, offsets + (tlv(188, entities) if h.rec_entities else b""))


def audit(h: TapHeader, totals: TapTotals) -> bytes:
    if not -(2**63) <= totals.total_charge < 2**63:
        raise ValueError(f"TotalCharge {totals.total_charge} does not fit in 64 bits: "
                         "split the period into smaller files")
    body = b""
    if totals.earliest is not None and totals.latest is not None:
        body += _time_long(101, totals.earliest, h.utc_offset)
        body += _time_long(133, totals.latest, h.utc_offset)
    body += (integer(415, totals.total_charge) + integer(226, 0) + integer(225, 0)
             + integer(43, totals.count))
    return tlv(15, body)


def write_transfer_batch(out: BinaryIO, h: TapHeader,
                         chunks: Iterable[Sequence[Event]]) -> TapTotals:
    """Write a TransferBatch of the events in ``chunks`` to ``out``; return its totals."""
    totals = TapTotals()
    with tempfile.TemporaryFile() as spool:
        length = 0
        for chunk in chunks:
            data = encode_events(list(chunk))
            spool.write(data)
            length += len(data)
            totals.add(chunk)
        head = batch_control(h) + accounting(h) + network(h)
        events_head = header(3, length)
        tail = audit(h, totals)
        outer = header(1, len(head) + len(events_head) + length + len(tail))
        out.write(outer + head + events_head)
        spool.seek(0)
        shutil.copyfileobj(spool, out, 1 << 20)
        out.write(tail)
        totals.size = len(outer) + len(head) + len(events_head) + length + len(tail)
    return totals


def encode_transfer_batch(h: TapHeader, events: Sequence[Event]) -> tuple[bytes, TapTotals]:
    """A whole TransferBatch in memory (files of ordinary size)."""
    totals = TapTotals()
    totals.add(events)
    data = encode_events(list(events))
    body = batch_control(h) + accounting(h) + network(h) + tlv(3, data) + audit(h, totals)
    content = tlv(1, body)
    totals.size = len(content)
    return content, totals


def encode_notification(h: TapHeader) -> bytes:
    """The Notification that stands for a TransferBatch when the period had no traffic."""
    body = _text(196, h.sender) + _text(182, h.recipient) + _text(109, fsn_text(h.fsn))
    if h.rap_fsn is not None:
        body += _text(181, fsn_text(h.rap_fsn))
    body += (_time_long(108, h.created, h.utc_offset)
             + _time_long(107, h.available, h.utc_offset)
             + _time_long(227, h.cutoff, h.utc_offset)
             + integer(201, SPECIFICATION_VERSION) + integer(189, RELEASE_VERSION))
    if h.test:
        body += _text(110, "T")
    return tlv(2, body)
