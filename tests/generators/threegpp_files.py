"""Writers for 3GPP TS 32.297/32.298 files (TAP3 writers: ``adapters.formats.generate_tap3``).

Two ways to write 32.298 records:
- ``encode_record(name, values)`` — through the pyasn1 schema (``asn1_3gpp``): exact, slow;
  what tests use, so the native decoder is checked against an independent encoder.
- ``FastCdrWriter`` — a hand-rolled BER template writer for large benchmark files
  (≈ 10 µs a record); ``fast_record`` makes the same bytes pyasn1 would for its fields.

``write_3gpp_file(fh, records, ...)`` frames any records in a 32.297 file (header, CDR
headers, optional 0xFF fill); it patches file length and CDR count at the end when ``fh``
is seekable.

Record values (``values`` mapping): digit strings for IMSI / MSISDN / numbers /
recordingEntity / serviceCentre / destinationNumber; ``(epoch, utc_offset_minutes)`` for
TimeStamps; ``bytes`` for callReference / messageReference / msClassmark; ints; gateway
address as dotted IPv4 or 32 hex digits (IPv6); ``listOfTrafficVolumes`` as
``[(up, down), ...]`` and ``listOfServiceData`` as ``[(rating_group, up, down), ...]``
(``None`` leaves a volume out).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Mapping
from typing import IO, Any

from pyasn1.codec.ber import encoder

from billing_oss.adapters.formats import ber_text
from billing_oss.adapters.formats.asn1_3gpp import CallEventRecord

_DIGITS = {"servedIMSI"}
_ADDRESSES = {"servedMSISDN", "callingNumber", "calledNumber", "recordingEntity", "serviceCentre"}
_TIMES = {"seizureTime", "answerTime", "originationTime", "deliveryTime", "recordOpeningTime"}
_GATEWAYS = {"p-GWAddress", "s-GWAddress"}
TS_NUMBER = {"cs": 6, "ps": 7}  # 32.297 "TS number": 32.250 (CS), 32.251 (PS)


def _octets(field: str, value: Any) -> bytes:
    if field in _DIGITS:
        return ber_text.encode_tbcd(value)
    if field in _ADDRESSES:
        return ber_text.encode_address(value)
    if field == "destinationNumber":
        return ber_text.encode_tp_address(value)
    if field in _TIMES or field in ("changeTime", "timeOfReport"):
        return ber_text.encode_timestamp(*value)
    return bytes(value)


def encode_record(name: str, values: Mapping[str, Any]) -> bytes:
    """One CallEventRecord through pyasn1."""
    choice = CallEventRecord()
    rec = choice.getComponentByName(name)
    for field, value in values.items():
        if field in _GATEWAYS:
            addr = rec[field]
            if "." in value:
                addr["iPBinV4Address"] = bytes(int(x) for x in value.split("."))
            else:
                addr["iPBinV6Address"] = bytes.fromhex(value)
        elif field == "listOfTrafficVolumes":
            lst = rec[field]
            for i, (up, down) in enumerate(value):
                c = lst.getComponentByPosition(i)
                if up is not None:
                    c["dataVolumeGPRSUplink"] = up
                if down is not None:
                    c["dataVolumeGPRSDownlink"] = down
                c["changeCondition"] = 0
                c["changeTime"] = ber_text.encode_timestamp(values["recordOpeningTime"][0], 0)
        elif field == "listOfServiceData":
            lst = rec[field]
            for i, (group, up, down) in enumerate(value):
                c = lst.getComponentByPosition(i)
                c["ratingGroup"] = group
                if up is not None:
                    c["datavolumeFBCUplink"] = up
                if down is not None:
                    c["datavolumeFBCDownlink"] = down
                c["timeOfReport"] = ber_text.encode_timestamp(values["recordOpeningTime"][0], 0)
        elif field == "accessPointNameNI":
            rec[field] = value
        elif isinstance(value, int):
            rec[field] = value
        else:
            rec[field] = _octets(field, value)
    return bytes(encoder.encode(choice))


# ---- 32.297 framing ---------------------------------------------------------------

def _release_octet(release: int, version: int = 0) -> tuple[int, bytes]:
    """(release/version octet, extension octets) for a 32.297 header."""
    ids = {99: 0, 4: 1, 5: 2, 6: 3, 7: 4, 8: 5, 9: 6}
    if release in ids:
        return (ids[release] << 5) | version, b""
    return (7 << 5) | version, bytes([release - 10])


def cdr_header(record: bytes, *, release: int = 15, ts_number: int = 7) -> bytes:
    octet, ext = _release_octet(release)
    if len(record) > 0xFFFF:
        raise ValueError("a 32.297 CDR holds at most 65535 bytes")
    return struct.pack(">HBB", len(record), octet, (1 << 5) | ts_number) + ext


def file_header(
    *, file_length: int, cdr_count: int, sequence_number: int, release: int = 15,
    node_ipv4: str = "192.0.2.1", routing_filter: bytes = b"", private: bytes = b"",
) -> bytes:
    octet, ext = _release_octet(release)
    ts = (1 << 28) | (15 << 23) | (10 << 18) | (20 << 12)  # 01-15 10:20 +00:00
    body = (
        struct.pack(">BBIIII", octet, octet, ts, ts, cdr_count, sequence_number)
        + bytes([0])  # closure reason: normal
        + b"\xff" * 16 + bytes(int(x) for x in node_ipv4.split("."))
        + bytes([0])  # lost CDR indicator
        + struct.pack(">H", len(routing_filter)) + routing_filter
        + struct.pack(">H", len(private)) + private
        + (ext * 2 if ext else b"")
    )
    header_length = 8 + len(body)
    return struct.pack(">II", file_length or header_length, header_length) + body


def write_3gpp_file(
    fh: IO[bytes], records: Iterable[bytes], *, sequence_number: int = 1, release: int = 15,
    fill: int = 0, ts_number: int = 7,
) -> int:
    """Write a 32.297 file; returns the CDR count. ``fill`` 0xFF octets after each CDR."""
    start = fh.tell() if fh.seekable() else 0
    header = file_header(file_length=0, cdr_count=0, sequence_number=sequence_number,
                         release=release)
    fh.write(header)
    count, length = 0, len(header)
    for rec in records:
        chunk = cdr_header(rec, release=release, ts_number=ts_number) + rec + b"\xff" * fill
        fh.write(chunk)
        length += len(chunk)
        count += 1
    if fh.seekable():
        end = fh.tell()
        fh.seek(start)
        fh.write(file_header(file_length=length, cdr_count=count,
                             sequence_number=sequence_number, release=release))
        fh.seek(end)
    return count


# ---- fast template writer ---------------------------------------------------------

def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tag(n: int, constructed: bool) -> bytes:
    first = 0xA0 if constructed else 0x80
    if n < 31:
        return bytes([first | n])
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes([first | 0x1F, *reversed(out)])


def _int_octets(v: int) -> bytes:
    return v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True)


def _tlv(n: int, body: bytes, constructed: bool = False) -> bytes:
    return _tag(n, constructed) + _len(len(body)) + body


def fast_record(kind: str, i: int, rng: random.Random, t0: int = 1768472430) -> bytes:
    """A plausible record of ``kind`` (moCall, mtCall, moSMS, mtSMS, sGW, pGW), numbered i."""
    imsi = ber_text.encode_tbcd(f"20801{i % 10**10:010d}")
    msisdn = ber_text.encode_address(f"336{rng.randrange(10**8):08d}")
    other = ber_text.encode_address(f"33{rng.randrange(10**9):09d}")
    ts = ber_text.encode_timestamp(t0 + i, 60)
    if kind in ("moCall", "mtCall"):
        mo = kind == "moCall"
        ref = i.to_bytes(8, "big")
        body = (_tlv(0, b"\x00" if mo else b"\x01") + _tlv(1, imsi) + _tlv(3, msisdn)
                + (_tlv(4, msisdn) + _tlv(5, other) if mo else _tlv(4, other))
                + _tlv(9 if mo else 6, ber_text.encode_address("33609000001"))
                + _tlv(22 if mo else 19, ts) + _tlv(23 if mo else 20, ts)
                + _tlv(25 if mo else 22, _int_octets(rng.randrange(1, 3600)))
                + _tlv(30 if mo else 27, b"\x00") + _tlv(32 if mo else 29, ref))
        return _tlv(0 if mo else 1, body, True)
    if kind == "moSMS":
        body = (_tlv(0, b"\x06") + _tlv(1, imsi) + _tlv(3, msisdn) + _tlv(4, b"\x53\x19\x90")
                + _tlv(5, ber_text.encode_address("33609000999"))
                + _tlv(6, ber_text.encode_address("33609000001"))
                + _tlv(8, (i & 0xFF).to_bytes(1, "big")) + _tlv(9, ts)
                + _tlv(12, ber_text.encode_tp_address(f"33{rng.randrange(10**9):09d}")))
        return _tlv(6, body, True)
    if kind == "mtSMS":
        body = (_tlv(0, b"\x07") + _tlv(1, ber_text.encode_address("33609000999"))
                + _tlv(2, imsi) + _tlv(4, msisdn) + _tlv(5, b"\x53\x19\x90")
                + _tlv(6, ber_text.encode_address("33609000001")) + _tlv(8, ts))
        return _tlv(7, body, True)
    pgw = kind == "pGW"
    up, down = rng.randrange(10**7), rng.randrange(10**8)
    cc = (_tlv(3, _int_octets(up)) + _tlv(4, _int_octets(down)) + _tlv(5, b"\x00")
          + _tlv(6, ts))
    vols = _tlv(12, b"\x30" + _len(len(cc)) + cc, True)
    body = (_tlv(0, bytes([85 if pgw else 84])) + _tlv(3, imsi)
            + _tlv(4, _tlv(0, bytes([10, 0, 0, 1 + i % 4])), True)
            + _tlv(5, _int_octets(i)) + _tlv(7, b"internet") + vols + _tlv(13, ts)
            + _tlv(14, _int_octets(rng.randrange(1, 3600))) + _tlv(15, b"\x00")
            + _tlv(22, msisdn))
    if pgw:
        sd = (_tlv(1, b"\x01") + _tlv(12, _int_octets(up)) + _tlv(13, _int_octets(down))
              + _tlv(14, ts))
        body += _tlv(34, b"\x30" + _len(len(sd)) + sd, True)
    return _tlv(79 if pgw else 78, body, True)


MIX = ("pGW", "pGW", "sGW", "moCall", "mtCall", "moSMS", "mtSMS", "pGW")


def fast_records(n: int, *, seed: int = 1, mix: tuple[str, ...] = MIX) -> Iterable[bytes]:
    rng = random.Random(seed)
    for i in range(n):
        yield fast_record(mix[i % len(mix)], i, rng)


def write_fast_3gpp(
    fh: IO[bytes], n: int, *, seed: int = 1, sequence_number: int = 1, distinct: int | None = None
) -> int:
    """``n`` records; with ``distinct``, that many are built and then repeated in a cycle
    (fast for big benchmark files; record keys then repeat)."""
    records: Iterable[bytes] = fast_records(n, seed=seed)
    if distinct is not None and distinct < n:
        pool = list(fast_records(distinct, seed=seed))
        records = (pool[i % distinct] for i in range(n))
    return write_3gpp_file(fh, records, sequence_number=sequence_number)
