"""Reference twin of ``native.cdr3gpp``: pure Python framing + pyasn1 decoding.

Produces the same row tuples as ``native._records.RecordBatch.rows()`` (``ROW_FIELDS``
order), so tests can compare the two record by record. Slow by design; never used on the
ingest path.
"""

from __future__ import annotations

from typing import Any

from pyasn1.codec.ber import decoder
from pyasn1.error import PyAsn1Error

from billing_oss.adapters.formats import ber_text
from billing_oss.adapters.formats.asn1_3gpp import RECORD_CLASSES, CallEventRecord
from billing_oss.native import cdr3gpp
from billing_oss.native._records import ERR_BAD_TIMESTAMP as R_BAD_TIMESTAMP
from billing_oss.native._records import ERR_MALFORMED as R_MALFORMED
from billing_oss.native._records import ERR_NO_EVENT_TIME as R_NO_EVENT_TIME
from billing_oss.native._records import ERR_NOT_BER as R_NOT_BER
from billing_oss.native._records import ERR_UNSUPPORTED as R_UNSUPPORTED

_TAG_BY_NAME = {name: n for name, (n, _) in RECORD_CLASSES.items()}
# pyasn1 itself fails on some malformed input with these instead of PyAsn1Error
# (a length beyond sys.maxsize, an indefinite-length SEQUENCE with surplus components)
PYASN1_FAILURES = (PyAsn1Error, IndexError, OverflowError)
Row = tuple[Any, ...]


def decode_records(data: bytes, *, framed: bool, start: int = 0) -> tuple[list[Row], str | None]:
    """Rows for every record in ``data[start:]``; the message of a framing error, if any."""
    rows: list[Row] = []
    pos, end = start, len(data)
    while True:
        while pos < end and (data[pos] == 0xFF or (not framed and data[pos] == 0)):
            pos += 1
        if pos >= end:
            return rows, None
        if framed:
            if end - pos < 4 or (data[pos + 2] >> 5 == 7 and end - pos < 5):
                return rows, "truncated CDR header"
            clen = int.from_bytes(data[pos : pos + 2], "big")
            hdr = 5 if data[pos + 2] >> 5 == 7 else 4
            if clen == 0:
                return rows, "CDR header says length 0"
            if clen > end - pos - hdr:
                return rows, f"CDR length {clen} runs past the end of the file"
            rstart, pos = pos + hdr, pos + hdr + clen
            if data[rstart - hdr + 3] >> 5 != 1:
                rows.append(_error_row(-1, rstart, clen, R_NOT_BER))
                continue
            rows.append(_row(data[rstart:pos], rstart, clen))
        else:
            length = _tlv_length(data, pos)
            if length is None:
                return rows, "bad BER record"
            if length > cdr3gpp.MAX_RECORD_BYTES:
                return rows, f"BER record longer than {cdr3gpp.MAX_RECORD_BYTES} bytes"
            rows.append(_row(data[pos : pos + length], pos, length))
            pos += length


def _tlv_length(data: bytes, pos: int) -> int | None:
    try:
        _, rest = decoder.decode(data[pos:])
    except PYASN1_FAILURES:
        return None
    return len(data) - pos - len(rest)


def _error_row(rtype: int, offset: int, length: int, err: int) -> Row:
    return (rtype, offset, length, err, 0, offset) + (None,) * 17


def _row(octets: bytes, offset: int, length: int) -> Row:
    rtype = octets[0] & 0x1F if octets else -1
    if octets and rtype == 0x1F and len(octets) > 1:
        rtype = octets[1] & 0x7F
    try:
        choice, _ = decoder.decode(octets, asn1Spec=CallEventRecord())
    except PYASN1_FAILURES:
        known = rtype in _TAG_BY_NAME.values() and octets[0] & 0xE0 == 0xA0
        return _error_row(rtype, offset, length, R_MALFORMED if known else R_UNSUPPORTED)
    name = choice.getName()
    rec = choice.getComponent()
    try:
        return _normalise(_TAG_BY_NAME[name], rec, offset, length)
    except ber_text.FieldError:
        return _error_row(_TAG_BY_NAME[name], offset, length, R_BAD_TIMESTAMP)


def _get(rec: Any, field: str) -> Any:
    if field not in rec or not rec[field].isValue:
        return None
    return rec[field]


def _normalise(rtype: int, rec: Any, offset: int, length: int) -> Row:
    def octets(field: str) -> bytes | None:
        v = _get(rec, field)
        return None if v is None else bytes(v)

    def integer(field: str) -> int | None:
        v = _get(rec, field)
        return None if v is None else int(v)

    imsi = octets("servedIMSI")
    msisdn = octets("servedMSISDN")
    calling = octets("callingNumber")
    called = octets("calledNumber")
    dest = octets("destinationNumber")
    seizure = octets("seizureTime")
    answer = octets("answerTime")
    seizure_t = ber_text.timestamp(seizure) if seizure is not None else None
    answer_t = ber_text.timestamp(answer) if answer is not None else None
    node: str | None = None
    ref: str | None = None
    apn = None
    up = down = None
    if rtype in (0, 1, 6, 7):
        node = ber_text.address(octets("recordingEntity") or b"")
    if rtype in (0, 1):
        event_t = answer_t if answer_t is not None else seizure_t
        duration = integer("callDuration")
        ref = (octets("callReference") or b"").hex()
        seq = integer("sequenceNumber")
        cause = integer("causeForTerm")
    elif rtype in (6, 7):
        stamp = octets("originationTime" if rtype == 6 else "deliveryTime")
        event_t = ber_text.timestamp(stamp or b"")
        duration = seq = cause = None
        ref = octets("messageReference").hex() if rtype == 6 else None  # type: ignore[union-attr]
    else:
        event_t = ber_text.timestamp(octets("recordOpeningTime") or b"")
        duration = integer("duration")
        seq = integer("recordSequenceNumber")
        cause = integer("causeForRecClosing")
        addr = rec["s-GWAddress" if rtype == 78 else "p-GWAddress"]
        kind, value = addr.getName(), addr.getComponent()
        if kind == "iPBinV4Address":
            node = ".".join(str(b) for b in bytes(value))
        elif kind == "iPBinV6Address":
            node = bytes(value).hex()
        else:
            node = str(value)
        apn_v = _get(rec, "accessPointNameNI")
        apn = None if apn_v is None else str(apn_v)
        up, down = _volumes(rec)
    if event_t is None:
        return _error_row(rtype, offset, length, R_NO_EVENT_TIME)
    charging_id = integer("chargingID") if rtype in (78, 79) else None
    return (
        rtype, offset, length, 0, 0, offset,
        ber_text.rfc3339(event_t),
        ber_text.rfc3339(seizure_t) if seizure_t is not None else None,
        duration, up, down, None, charging_id, seq, cause,
        ber_text.tbcd(imsi) if imsi is not None else None,
        ber_text.address(msisdn) if msisdn is not None else None,
        ber_text.address(calling) if calling is not None else None,
        ber_text.address(called) if called is not None
        else (ber_text.tp_address(dest) if dest is not None else None),
        node, ref, apn, None,
    )


def _volumes(rec: Any) -> tuple[int, int]:
    service = _get(rec, "listOfServiceData")
    if service is not None:
        pairs = [(_get(c, "datavolumeFBCUplink"), _get(c, "datavolumeFBCDownlink"))
                 for c in service]
    else:
        traffic = _get(rec, "listOfTrafficVolumes") or []
        pairs = [(_get(c, "dataVolumeGPRSUplink"), _get(c, "dataVolumeGPRSDownlink"))
                 for c in traffic]
    return (
        sum(int(u) for u, _ in pairs if u is not None),
        sum(int(d) for _, d in pairs if d is not None),
    )
