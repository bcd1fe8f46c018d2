"""TAP 3.11/3.12 (GSMA TD.57) TransferBatch and Notification files, decoded by
``native.tap3`` over a memory map (the file is never copied into Python memory).

Normalisation (DESIGN.md §5b): ``event_time`` = CallEventStartTimeStamp (else the
ChargingTimeStamp of a supplementary service event) minus the UTC offset its
UtcTimeOffsetCode names in NetworkInfo; ``charge`` = the sum of the event's charge-type
"00" charges scaled by tapDecimalPlaces (decimal string, currency in ``attrs``). MO/MT calls
with teleservice 20/21/22 and MessagingEvents are ``sms``; GprsCall is ``data``
(``volume_up`` = DataVolumeOutgoing, ``volume_down`` = DataVolumeIncoming); other events
are ``event``.

``record_key`` = ``<sender>:<recipient>:<fileSequenceNumber>:<event index>`` — the TAP3
file identity is unique per sender/recipient pair and the event list is immutable.

After the last batch the audit totals (CallEventDetailsCount, TotalCharge) are checked
against the events; a mismatch raises ``DecodeError`` naming both numbers and the
AuditControlInfo's offset (the records have all been yielded by then). Bytes after the
top-level element (a second TransferBatch appended, garbage) raise ``DecodeError`` at their
offset first: a file holds one batch. A file shorter than its top-level element declares
raises ``DecodeError`` with ``detail["incomplete"]``; a RAP file (ReturnBatch,
Acknowledgement) raises ``NotUsageFile``: it is settlement's, not usage.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from billing_oss.adapters.formats.api import DecodedBatch, FileInfo, RecordProblem
from billing_oss.adapters.formats.completeness import ber_head, tap3_completeness
from billing_oss.adapters.formats.options import Option, boolean, parse_options
from billing_oss.adapters.formats.registry import Format
from billing_oss.core.errors import DecodeError, NotUsageFile, Reason
from billing_oss.core.money import format_scaled
from billing_oss.core.records import Kind, UsageRecord
from billing_oss.native._records import ERR_MALFORMED, ERRORS, RecordBatch
from billing_oss.native.tap3 import EVENT_NAMES, Tap3Walker

SMS_TELESERVICES = {"T20", "T21", "T22"}
MAX_RAW = 4096
RAP_TAGS = {534: "ReturnBatch", 535: "Acknowledgement"}  # TD.32 RapDataInterChange


class Tap3File:
    def __init__(
        self, data: bytes | mmap.mmap, *, source: str, options: Mapping[str, Any] | None = None,
        batch_size: int = 4096, closer: Any = None,
    ) -> None:
        self._data = data
        self._closer = closer
        self.source = source
        self.batch_size = batch_size
        self.check_audit: bool = parse_options("tap3", options)["check_audit"]
        _refuse_rap_and_short(data)
        try:
            self.walker = Tap3Walker(data)
        except ValueError as exc:
            message, offset = _message_offset(exc)
            cut = "runs past the end" in message or "without end-of-contents" in message
            if data[1:2] == b"\x80" and cut:  # indefinite length: only the end tells
                raise DecodeError(
                    f"incomplete TAP3 file: indefinite length and no end-of-contents ({message} "
                    f"at offset {offset}); the bytes stop", offset=len(data),
                    incomplete=True) from None
            raise DecodeError(f"bad TAP3 file: {message}", offset=offset) from None
        self._read_header()

    def _read_header(self) -> None:
        w = self.walker
        head = w.batch_control if w.kind == "TransferBatch" else w.notification
        self.sender = _text(head.get("Sender"))
        self.recipient = _text(head.get("Recipient"))
        self.file_sequence = _text(head.get("FileSequenceNumber"))
        self.decimal_places = w.accounting.get("TapDecimalPlaces", 0)
        if not isinstance(self.decimal_places, int) or not 0 <= self.decimal_places <= 12:
            raise DecodeError(f"bad TAP3 file: TapDecimalPlaces {self.decimal_places!r} "
                              "outside 0..12", offset=0)
        self.currency = _text(w.accounting.get("TapCurrency")) or "SDR"
        digits = self.file_sequence.isascii() and self.file_sequence.isdigit()
        declared = w.audit.get("CallEventDetailsCount")
        self.info = FileInfo(
            format="tap3",
            sequence_number=int(self.file_sequence) if digits else None,
            sender=self.sender, recipient=self.recipient,
            declared_count=declared if isinstance(declared, int) else None,
            header={"kind": w.kind, "batch_control": w.batch_control or w.notification,
                    "accounting": w.accounting, "network": w.network, "audit": w.audit},
        )

    def __enter__(self) -> Tap3File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closer is not None:
            del self.walker
            self._closer()
            self._closer = None

    def batches(self) -> Iterator[DecodedBatch]:
        index, total = 0, 0
        native = RecordBatch(self.batch_size)
        more = True
        while more:
            native.clear()
            error: ValueError | None = None
            try:
                more = self.walker.next_batch(native)
            except ValueError as exc:
                error, more = exc, False
            out = DecodedBatch(first_index=index, records=[])
            for row in native.rows():
                total += row[11] or 0
                if row[3]:
                    out.problems.append(self._problem(row, index))
                else:
                    out.records.append(self.to_usage_record(row, index))
                    out.indexes.append(index)
                index += 1
            if out.records or out.problems:
                yield out
            if error is not None:
                message, offset = _message_offset(error)
                raise DecodeError(str(message), offset=offset, record_index=index)
        self._check_trailing(index)
        if self.walker.kind == "TransferBatch" and self.check_audit:
            self._check_audit(index, total)

    def _check_trailing(self, count: int) -> None:
        """Bytes after the top-level element: a second batch appended, or garbage."""
        end, size = self.walker.top_end, len(self._data)
        if end >= size or not any(bytes(self._data[end:min(size, end + 4096)])):
            return  # nothing, or zero padding
        what = f"{size - end} bytes after the {self.walker.kind}"
        try:
            second = Tap3Walker(self._data[end:])
            head = second.batch_control if second.kind == "TransferBatch" else (
                second.notification)
            seq = _text(head.get("FileSequenceNumber")) or "?"
            what += f": a second {second.kind} (FileSequenceNumber {seq}) not decoded"
        except ValueError:
            what += ": not a TAP3 element"
        raise DecodeError(f"{what}; the file must hold one batch", offset=end,
                          record_index=count, trailing=size - end)

    def _check_audit(self, count: int, total: int) -> None:
        audit = self.walker.audit
        at = self.walker.audit_offset
        if not audit:
            raise DecodeError("TAP3 TransferBatch has no AuditControlInfo: the batch ends",
                              offset=self.walker.top_end, record_index=count)
        declared = audit.get("CallEventDetailsCount")
        if not isinstance(declared, int | None) or not isinstance(
                audit.get("TotalCharge"), int | None):
            raise DecodeError("TAP3 AuditControlInfo is malformed", offset=at,
                              record_index=count)
        if declared is not None and declared != count:
            raise DecodeError(
                f"audit mismatch: CallEventDetailsCount is {declared} but the file holds "
                f"{count} call events (AuditControlInfo)", offset=at, record_index=count,
                expected=declared, actual=count)
        declared_total = audit.get("TotalCharge")
        if declared_total is not None and declared_total != total:
            raise DecodeError(
                f"audit mismatch: TotalCharge is {self._scale(declared_total)} but the call "
                f"events' charges sum to {self._scale(total)} (AuditControlInfo)",
                offset=at, record_index=count, expected=declared_total, actual=total)

    def _scale(self, raw: int) -> str:
        return format_scaled(raw, self.decimal_places)

    def _problem(self, row: tuple[Any, ...], index: int) -> RecordProblem:
        rtype, offset, length, err, err_tag, err_offset = row[:6]
        detail = f"{EVENT_NAMES.get(rtype, rtype)}: {ERRORS[err]}"
        if err_tag:
            detail += f" (tag [APPLICATION {err_tag}])"
        detail += f" at offset {err_offset}"
        raw = bytes(self._data[offset : offset + min(length, MAX_RAW)])
        reason = Reason.MALFORMED if err == ERR_MALFORMED else Reason.BAD_FIELD
        return RecordProblem(index=index, offset=offset, reason=reason, detail=detail, raw=raw)

    def to_usage_record(self, row: tuple[Any, ...], index: int) -> UsageRecord:
        (rtype, offset, _length, _err, _etag, _eoff, event_time, _sz, duration, up, down,
         charge, charging_id, _seq, cause, imsi, msisdn, calling, called, _node, ss_code,
         apn, service) = row
        attrs: dict[str, Any] = {"event_type": EVENT_NAMES.get(rtype, str(rtype)),
                                 "offset": offset, "currency": self.currency}
        kind: Kind = "event"
        if rtype in (9, 10):
            kind = "sms" if service in SMS_TELESERVICES else "voice"
            if rtype == 9:
                calling = msisdn
            else:
                called = msisdn
        elif rtype == 433:
            kind = "sms"
        elif rtype == 14:
            kind = "data"
            attrs["charging_id"] = charging_id
            if apn is not None:
                attrs["apn"] = apn
        if service is not None:
            attrs["teleservice" if service[0] == "T" else "bearer_service"] = service[1:]
        if ss_code is not None:
            attrs["suppl_service_code"] = ss_code
        if cause is not None:
            attrs["cause"] = cause
        if kind != "voice" and duration is not None:
            attrs["duration_s"] = duration
        return UsageRecord(
            record_key=f"{self.sender}:{self.recipient}:{self.file_sequence}:{index}",
            source=self.source, kind=kind, event_time=event_time,
            duration_s=duration if kind == "voice" else None,
            volume_up=up if kind == "data" else None,
            volume_down=down if kind == "data" else None,
            calling=calling, called=called, imsi=imsi, msisdn=msisdn,
            charge=self._scale(charge or 0), attrs=attrs,
        )


def _message_offset(exc: ValueError) -> tuple[str, int]:
    """The native walker raises ValueError(message, offset); anything else names offset 0."""
    if len(exc.args) == 2 and isinstance(exc.args[1], int):
        return str(exc.args[0]), exc.args[1]
    return str(exc), 0


def _refuse_rap_and_short(data: bytes | mmap.mmap) -> None:
    """RAP files are the settlement module's; a file cut short is named as incomplete."""
    parsed = ber_head(bytes(data[:16]))
    if parsed is None:
        return  # the walker names the damage
    tag, hlen, clen = parsed
    if data[:1] and data[0] & 0xE0 == 0x60 and tag in RAP_TAGS:
        raise NotUsageFile(f"RAP file: handled by settlement ({RAP_TAGS[tag]}, not usage)")
    if data[:1] and data[0] & 0xE0 == 0x60 and clen >= 0 and hlen + clen > len(data):
        raise DecodeError(
            f"incomplete TAP3 file: its top-level element declares {hlen + clen} bytes and "
            "the bytes stop", offset=len(data), incomplete=True)


def rap_kind(path: Path) -> str | None:
    """"ReturnBatch" / "Acknowledgement" when ``path`` is a RAP file (TD.32), else None:
    RAP files travel with TAP files but belong to settlement, not to usage decoding."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    parsed = ber_head(head)
    if parsed is None or head[0] & 0xE0 != 0x60:
        return None
    return RAP_TAGS.get(parsed[0])


def _text(value: object) -> str:
    """A header field that should be a string (a damaged file may nest or omit it)."""
    return value if isinstance(value, str) else ""


def open_tap3(
    path: Path, *, source: str, options: Mapping[str, Any] | None = None, batch_size: int = 4096
) -> Tap3File:
    fh = open(path, "rb")
    try:
        if path.stat().st_size == 0:
            raise DecodeError("bad TAP3 file: empty file", offset=0)
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except BaseException:
        fh.close()
        raise

    def close() -> None:
        try:
            mm.close()
        except BufferError:  # a walker built before a header error is still referenced
            pass  # by the error being raised; the map closes when it is collected
        fh.close()

    try:
        return Tap3File(mm, source=source, options=options, batch_size=batch_size, closer=close)
    except BaseException:
        close()
        raise


def sniff(head: bytes) -> bool:
    """A TAP3 DataInterChange: [APPLICATION 1] TransferBatch or [APPLICATION 2] Notification."""
    return head[:1] in (b"\x61", b"\x62")


def _from_bytes(data: bytes, *, source: str, options: Mapping[str, Any] | None = None
                ) -> Tap3File:
    return Tap3File(data, source=source, options=options)


def _rap_reason(path: Path) -> str | None:
    kind = rap_kind(path)
    return None if kind is None else f"RAP file: handled by settlement ({kind})"


FORMAT = Format(
    name="tap3", title="GSMA TAP 3.11/3.12 transfer batches (TD.57); RAP files are refused",
    # TAP files travel as .tap, and as BER files beside 32.297 ones: the first octet tells.
    suffixes=(".tap", ".rap", ".ber", ".cdr", ".asn", ".dat"), sniff=sniff, open=open_tap3,
    read=_from_bytes,
    options=(
        Option(name="check_audit", type="bool", default=True, parse=boolean,
               help="check CallEventDetailsCount and TotalCharge against the events"),
    ),
    completeness=tap3_completeness, not_usage=_rap_reason)
