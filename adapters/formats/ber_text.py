"""Pure-Python readings of the octet formats inside CDRs (the native twins live in
``native/_ber.pxd``): TBCD digits, address strings, TS 32.298 TimeStamps, GSN addresses.
Used by the reference decoders and by the writers (``encode_*``)."""

from __future__ import annotations

import calendar

_TBCD = "0123456789*#abc"


class FieldError(ValueError):
    """A field's octets do not follow their format."""


def tbcd(octets: bytes) -> str:
    out = []
    for byte in octets:
        for nib in (byte & 0x0F, byte >> 4):
            if nib != 0x0F:
                out.append(_TBCD[nib])
    return "".join(out)


def address(octets: bytes) -> str:
    """ISDN-AddressString / BCDDirectoryNumber: TON/NPI octet dropped."""
    return tbcd(octets[1:])


def tp_address(octets: bytes) -> str:
    """TS 23.040 TP-Destination-Address: digit count, TON/NPI, semi-octets."""
    if len(octets) < 2 or (octets[0] + 1) // 2 > len(octets) - 2:
        raise FieldError("bad TP address")
    return tbcd(octets[2 : 2 + (octets[0] + 1) // 2])[: octets[0]]


def timestamp(octets: bytes) -> int:
    """TS 32.298 TimeStamp (YYMMDDhhmmss BCD, sign, hhmm BCD) to UTC epoch seconds."""
    if len(octets) not in (6, 9):
        raise FieldError("bad TimeStamp length")
    digits = []
    for byte in octets[:6]:
        if byte >> 4 > 9 or byte & 0x0F > 9:
            raise FieldError("bad TimeStamp digit")
        digits.append((byte >> 4) * 10 + (byte & 0x0F))
    yy, mo, dd, hh, mi, ss = digits
    if not (1 <= mo <= 12 and 1 <= dd <= calendar.monthrange(2000 + yy, mo)[1]):
        raise FieldError("bad TimeStamp date")
    if hh > 23 or mi > 59 or ss > 59:
        raise FieldError("bad TimeStamp time")
    offset = 0
    if len(octets) == 9:
        sign = octets[6]
        if sign not in (0x2B, 0x2D):
            raise FieldError("bad TimeStamp sign")
        oh, om = [(b >> 4) * 10 + (b & 0x0F) for b in octets[7:9]]
        if any(b >> 4 > 9 or b & 0x0F > 9 for b in octets[7:9]) or oh > 23 or om > 59:
            raise FieldError("bad TimeStamp offset")
        offset = (oh * 60 + om) * (-1 if sign == 0x2D else 1)
    local = calendar.timegm((2000 + yy, mo, dd, hh, mi, ss))
    return local - offset * 60


def rfc3339(epoch: int) -> str:
    t = __import__("time").gmtime(epoch)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"
    )


def encode_tbcd(digits: str) -> bytes:
    nibs = [_TBCD.index(c) for c in digits]
    if len(nibs) % 2:
        nibs.append(0x0F)
    return bytes(nibs[i] | (nibs[i + 1] << 4) for i in range(0, len(nibs), 2))


def encode_address(digits: str, ton_npi: int = 0x91) -> bytes:
    return bytes([ton_npi]) + encode_tbcd(digits)


def encode_tp_address(digits: str, ton_npi: int = 0x91) -> bytes:
    return bytes([len(digits), ton_npi]) + encode_tbcd(digits)


def encode_timestamp(epoch: int, offset_minutes: int = 0) -> bytes:
    """UTC epoch + the offset of the local clock that wrote it -> 9-octet TimeStamp."""
    t = __import__("time").gmtime(epoch + offset_minutes * 60)
    parts = [t.tm_year % 100, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec]
    sign = b"-" if offset_minutes < 0 else b"+"
    oh, om = divmod(abs(offset_minutes), 60)
    bcd = bytes(((v // 10) << 4) | (v % 10) for v in parts)
    return bcd + sign + bytes(((v // 10) << 4) | (v % 10) for v in (oh, om))
