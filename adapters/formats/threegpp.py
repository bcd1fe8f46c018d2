"""3GPP TS 32.297 CDR files carrying TS 32.298 BER records, streamed through the native
decoder (``native.cdr3gpp``) in a fixed window: memory stays flat whatever the file size.

Options (``options`` mapping): ``framing`` = ``"auto"`` (default), ``"32.297"`` or ``"raw"``
(bare concatenated BER records, 0x00/0xFF fill tolerated).

Normalisation (DESIGN.md §5b): ``event_time`` = answerTime, else seizureTime (calls),
originationTime / deliveryTime (SMS), recordOpeningTime (S-GW/P-GW); volumes from
listOfServiceData when present, else listOfTrafficVolumes. ``partial_seq`` =
sequenceNumber / recordSequenceNumber; ``duration_s`` = callDuration / duration (packet records
too); ``attrs["charging_id"]`` and ``attrs["node"]`` for packet records, ``attrs["cause"]`` the
causeForTerm / causeForRecClosing.

``record_key`` (stable across re-decoding, unique per source):
  calls  ``<recordType name>:<recordingEntity>:<callReference hex>:<sequenceNumber or 0>``
  SMS    ``moSMS:<recordingEntity>:<IMSI>:<event_time>:<messageReference hex>`` /
         ``mtSMS:<recordingEntity>:<IMSI>:<event_time>``
  packet ``<sGW|pGW>:<gateway address>:<chargingID>:<recordSequenceNumber or 0>`` — the
         partial records of one bearer share ``<gateway>:<chargingID>``
         (``attrs["merge_key"]``) and differ by ``partial_seq``.

Partial records (a sequence number is present) carry ``attrs["partial_last"]``: false when
the closing cause says more parts follow (``core.closing_causes``: calls partialRecord,
partialRecordCallReestablishment; packet volumeLimit .. aPNAMBRChange, 16-26).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from billing_oss.adapters.formats.api import DecodedBatch, FileInfo, RecordProblem
from billing_oss.adapters.formats.completeness import HEADER_3GPP as HEADER_LENGTH
from billing_oss.adapters.formats.completeness import threegpp_completeness
from billing_oss.adapters.formats.options import Option, choice, parse_options
from billing_oss.adapters.formats.registry import Format
from billing_oss.core.closing_causes import BEARER_PARTIAL, CALL_PARTIAL
from billing_oss.core.contract import Reject
from billing_oss.core.errors import DecodeError, Reason
from billing_oss.core.ports import Item
from billing_oss.core.records import UsageRecord
from billing_oss.native import _records as native_records
from billing_oss.native import cdr3gpp
from billing_oss.native._records import ERRORS, RecordBatch

CHUNK = 1 << 22  # bytes read per step
MAX_RAW = 256  # bytes of a bad record kept for suspense
_NAMES = cdr3gpp.RECORD_TYPES
_SHORT = {0: "moCall", 1: "mtCall", 6: "moSMS", 7: "mtSMS", 78: "sGW", 79: "pGW"}
_MALFORMED_ERRORS = frozenset({native_records.ERR_MALFORMED, native_records.ERR_UNSUPPORTED,
                               native_records.ERR_NOT_BER})


def detect_framing(head: bytes, file_size: int) -> bool:
    """True when the bytes start with a 32.297 file header rather than a BER record."""
    if len(head) >= 50:
        file_length = int.from_bytes(head[0:4], "big")
        header_length = int.from_bytes(head[4:8], "big")
        if 50 <= header_length <= min(file_size, 1 << 20) and file_length in (0, file_size):
            return True
    return not (head[:1] and 0xA0 <= head[0] <= 0xBF)


class Cdr3gppFile:
    """A 32.297 file (or raw BER stream) opened for batch decoding."""

    def __init__(
        self, stream: IO[bytes], *, source: str, size: int,
        options: Mapping[str, Any] | None = None, batch_size: int = 4096,
    ) -> None:
        self._fh = stream
        self.source = source
        self.size = size
        self.batch_size = batch_size
        framing = parse_options("3gpp", options)["framing"]
        head = stream.read(CHUNK)
        if framing == "auto":
            self.framed = detect_framing(head, size)
        else:
            self.framed = framing == "32.297"
        self.info = FileInfo(format="3gpp")
        self._start = 0
        if self.framed:
            try:
                header = cdr3gpp.parse_file_header(head)
            except ValueError as exc:
                message, offset = exc.args
                raise DecodeError(f"bad 32.297 file header: {message}", offset=offset) from None
            self.info = FileInfo(
                format="3gpp", sequence_number=header["file_sequence_number"],
                declared_count=header["cdr_count"], header=header,
            )
            self._start = header["header_length"]
        self._head = head

    def __enter__(self) -> Cdr3gppFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    def native_batches(self, *, fresh: bool = False
                       ) -> Iterator[tuple[RecordBatch, bytes | bytearray, int]]:
        """The raw native batches with the window and its file offset (for the benchmark
        and for callers that want the columns); raises DecodeError at framing damage.
        One batch is refilled each step, unless ``fresh``: then each is new (a caller
        that keeps them)."""
        buf: bytes | bytearray = self._head
        base, pos = 0, self._start
        final = len(buf) < CHUNK
        batch = RecordBatch(self.batch_size)
        seen = 0
        while True:
            if fresh and len(batch):
                batch = RecordBatch(self.batch_size)
            batch.clear()
            pos, status, message = cdr3gpp.decode_cdrs(buf, pos, batch, base, self.framed, final)
            if len(batch):
                yield batch, buf, base
                seen += len(batch)
            if status == cdr3gpp.STATUS_FULL:
                continue
            if status == cdr3gpp.STATUS_DONE:
                return
            if status == cdr3gpp.STATUS_ERROR:
                raise DecodeError(str(message), offset=base + pos, record_index=seen)
            more = self._fh.read(CHUNK)
            final = len(more) < CHUNK
            buf = bytes(memoryview(buf)[pos:]) + more
            base += pos
            pos = 0

    def batches(self) -> Iterator[DecodedBatch]:
        index = 0
        with self._completeness(lambda: index):
            for native, buf, base in self.native_batches():
                out = DecodedBatch(first_index=index, records=[])
                for row in native.rows():
                    if row[3]:
                        out.problems.append(_problem(row, index, buf, base))
                    else:
                        out.records.append(to_usage_record(row, self.source))
                        out.indexes.append(index)
                    index += 1
                yield out

    def column_batches(self) -> Iterator[NativeChunk]:
        """The file as native batches, each kept (``NativeChunk``): the columnar path of
        ingest reads them, and turns into objects only the records it does not carry."""
        index = 0
        with self._completeness(lambda: index):
            for native, buf, base in self.native_batches(fresh=True):
                yield NativeChunk(native, buf, base, self.source)
                index += len(native)

    @contextlib.contextmanager
    def _completeness(self, seen: Callable[[], int]) -> Iterator[None]:
        """A file that stops short of what its 32.297 header declares is incomplete: said
        when the bytes run out (a cut record) or after the last record."""
        try:
            yield
        except DecodeError as exc:
            short = self._shortfall(seen())
            if short is None:
                raise
            error = DecodeError(f"{short} at offset {self.size}: {exc.message}",
                                record_index=seen(), incomplete=True)
            error.offset = error.detail["offset"] = exc.offset  # where the cut record starts
            raise error from None
        short = self._shortfall(seen())
        if short is not None:
            raise DecodeError(short, offset=self.size, record_index=seen(), incomplete=True)

    def _shortfall(self, seen: int) -> str | None:
        """What the 32.297 header declares beyond the bytes here, if it does."""
        if not self.framed:
            return None
        length, count = self.info.header["file_length"], self.info.header["cdr_count"]
        unset = length in (0, self.info.header["header_length"])
        if not unset and self.size < length:
            return f"incomplete file: its header declares {length} bytes and the bytes stop"
        if unset and count and seen < count:
            return (f"incomplete file: its header declares {count} CDRs, {seen} are here, "
                    "and the bytes stop")
        return None


class NativeChunk:
    """One native batch of a file and the window its offsets point into: the records as
    C structs, and on demand as the items the object path takes (``objects``)."""

    __slots__ = ("base", "batch", "buf", "source")

    def __init__(self, batch: RecordBatch, buf: bytes | bytearray, base: int,
                 source: str) -> None:
        self.batch, self.buf, self.base, self.source = batch, buf, base, source

    def __len__(self) -> int:
        return len(self.batch)

    def objects(self, indexes: Sequence[int] | None = None) -> list[Item]:
        """Items i of ``indexes`` (all by default) as ``FormatDecoder`` yields them:
        ``UsageRecord``s (partial calls keyed by ``call_partial_key``) and ``Reject``s."""
        out: list[Item] = []
        for i, row in zip(range(len(self.batch)) if indexes is None else indexes,
                          self.batch.rows(indexes), strict=True):
            if row[3]:
                p = _problem(row, i, self.buf, self.base)
                out.append(Reject(reason=p.reason, detail=p.detail, raw=p.raw,
                                  where=f"offset {p.offset}"))
                continue
            record = to_usage_record(row, self.source)
            if record.partial_seq is not None and "merge_key" not in record.attrs:
                key = call_partial_key(record)
                if key is not None:
                    record.attrs["merge_key"] = key
            out.append(record)
        return out


def open_3gpp(
    path: Path, *, source: str, options: Mapping[str, Any] | None = None, batch_size: int = 4096
) -> Cdr3gppFile:
    fh = open(path, "rb")
    try:
        return Cdr3gppFile(fh, source=source, size=path.stat().st_size,
                           options=options, batch_size=batch_size)
    except BaseException:
        fh.close()
        raise


def _problem(row: tuple[Any, ...], index: int, buf: bytes | bytearray, base: int) -> RecordProblem:
    rtype, offset, length, err, err_tag, err_offset = row[:6]
    name = _NAMES.get(rtype) or (f"record type [{rtype}]" if rtype >= 0 else "unreadable record")
    detail = f"{name}: {ERRORS[err]}"
    if err_tag:
        detail += f" (field [{err_tag}])"
    detail += f" at offset {err_offset}"
    start = offset - base
    raw = bytes(buf[start : start + min(length, MAX_RAW)]) if 0 <= start < len(buf) else b""
    reason = Reason.MALFORMED if err in _MALFORMED_ERRORS else Reason.BAD_FIELD
    return RecordProblem(index=index, offset=offset, reason=reason, detail=detail, raw=raw)


def to_usage_record(row: tuple[Any, ...], source: str) -> UsageRecord:
    """One ``ROW_FIELDS`` tuple (native or reference) as the normalised record."""
    (rtype, offset, _length, _err, _etag, _eoff, event_time, seizure_time, duration,
     up, down, _charge, charging_id, seq, cause, imsi, msisdn, calling, called, node,
     ref, apn, _service) = row
    attrs: dict[str, Any] = {"record_type": _NAMES[rtype], "offset": offset}
    if cause is not None:
        attrs["cause"] = cause
    short = _SHORT[rtype]
    if rtype in (0, 1):
        attrs["recording_entity"] = node
        attrs["call_reference"] = ref
        if seizure_time is not None:
            attrs["seizure_time"] = seizure_time
        if seq is not None:
            attrs["partial_last"] = cause not in CALL_PARTIAL
        if rtype == 0:
            calling = calling if calling is not None else msisdn
        else:
            called = msisdn
        return UsageRecord(
            record_key=f"{short}:{node}:{ref}:{seq or 0}", source=source, kind="voice",
            event_time=event_time, duration_s=duration, calling=calling, called=called,
            imsi=imsi, msisdn=msisdn, partial_seq=seq, attrs=attrs,
        )
    if rtype in (6, 7):
        attrs["recording_entity"] = node
        if rtype == 6:
            key = f"moSMS:{node}:{imsi}:{event_time}:{ref}"
            attrs["message_reference"] = ref
            calling = msisdn
        else:
            key = f"mtSMS:{node}:{imsi}:{event_time}"
            called = msisdn
        return UsageRecord(
            record_key=key, source=source, kind="sms", event_time=event_time,
            calling=calling, called=called, imsi=imsi, msisdn=msisdn, attrs=attrs,
        )
    attrs["charging_id"] = charging_id
    attrs["node"] = node
    if seq is not None:
        attrs["merge_key"] = f"{short}:{node}:{charging_id}"
        attrs["partial_last"] = cause not in BEARER_PARTIAL
    if apn is not None:
        attrs["apn"] = apn
    return UsageRecord(
        record_key=f"{short}:{node}:{charging_id}:{seq or 0}", source=source, kind="data",
        event_time=event_time, duration_s=duration, volume_up=up, volume_down=down, imsi=imsi,
        msisdn=msisdn, partial_seq=seq, attrs=attrs,
    )


def sniff(head: bytes) -> bool:
    """A 32.297 file header (a plausible header length, a file length that covers it) or a
    BER record's first octet (context-specific, constructed: the 32.298 record choice)."""
    if len(head) >= HEADER_LENGTH:
        file_length = int.from_bytes(head[0:4], "big")
        header_length = int.from_bytes(head[4:8], "big")
        plausible = HEADER_LENGTH <= header_length <= 1 << 20
        if plausible and (file_length == 0 or file_length >= header_length):
            return True
    return bool(head) and 0xA0 <= head[0] <= 0xBF


def call_partial_key(record: UsageRecord) -> str | None:
    """The parts of one partial MSC call share recording entity and call reference (packet
    records get their ``merge_key`` from the decoder: gateway + charging id)."""
    attrs = record.attrs
    if "call_reference" not in attrs:
        return None
    return (f"{record.record_key.split(':', 1)[0]}:{attrs.get('recording_entity')}:"
            f"{attrs['call_reference']}")


def _from_bytes(data: bytes, *, source: str, options: Mapping[str, Any] | None = None
                ) -> Cdr3gppFile:
    return Cdr3gppFile(io.BytesIO(data), source=source, size=len(data), options=options)


FORMAT = Format(
    name="3gpp", title="3GPP TS 32.297 CDR files of TS 32.298 BER records (or raw BER)",
    suffixes=(".cdr", ".ber", ".asn", ".dat"), sniff=sniff, open=open_3gpp, read=_from_bytes,
    options=(
        Option(name="framing", type="one of auto, 32.297, raw", default="auto",
               parse=choice("auto", "32.297", "raw"),
               help="32.297 file headers, bare concatenated BER records, or tell by the bytes"),
    ),
    partial_key=call_partial_key, completeness=threegpp_completeness)
