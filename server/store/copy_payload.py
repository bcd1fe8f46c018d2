"""Binary COPY payloads of the pipeline's rows, built before the write transaction.

``encode(rows, kinds)`` is ``native.pgcopy.encode``; ``encode_reference`` is its pure-Python
twin (the tests compare them). ``KINDS`` gives, per table, the encoding of each column the
pipeline writes; it must follow the columns' types (``tests`` check it against the database).
Numeric columns have no kind: a batch that fills one is copied through asyncpg instead.
``decode`` reads a payload back into rows (for the rare caller that needs the tuples of a
payload built without them, ``server.pipeline.columnar``); it also reads the kinds of the
rollup payloads the columnar path builds natively: D date, N numeric (to a Decimal).
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from billing_oss.native.pgcopy import encode

__all__ = ["KINDS", "decode", "encode", "encode_reference", "kinds_of"]

# t text/varchar/char/json, j jsonb, q int8, i int4, h int2, T timestamptz, b bytea, ? bool
KINDS: dict[str, dict[str, str]] = {
    "usage_keys": {"source": "t", "record_key": "t", "account_id": "t", "event_time": "T",
                   "usage_id": "q"},
    "usage_records": {"account_id": "t", "usage_id": "q", "event_time": "T", "source": "t",
                      "record_key": "t", "kind": "t", "duration_s": "q", "volume_up": "q",
                      "volume_down": "q", "unit": "t", "calling": "t", "called": "t",
                      "imsi": "t", "msisdn": "t", "partial_seq": "i", "attrs": "t",
                      "source_file_id": "q"},
    "charges": {"account_id": "t", "event_time": "T", "usage_id": "q", "kind": "t",
                "amount_micros": "q", "currency": "t", "tariff_version_id": "q", "zone": "t",
                "band": "t", "source_file_id": "q"},
}


def kinds_of(table: str, columns: Sequence[str]) -> str | None:
    """The kinds string of these columns of ``table``; None if one has no binary encoder here."""
    known = KINDS[table]
    if any(column not in known for column in columns):
        return None
    return "".join(known[column] for column in columns)


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_RANGES = {"q": (-(1 << 63), (1 << 63) - 1), "i": (-(1 << 31), (1 << 31) - 1),
           "h": (-(1 << 15), (1 << 15) - 1)}
_FORMATS = {"q": ">iq", "i": ">ii", "h": ">ih"}


def encode_reference(rows: list[tuple[Any, ...]], kinds: str) -> bytes:
    """``native.pgcopy.encode`` in Python: same bytes, same errors."""
    for c, kind in enumerate(kinds):
        if kind not in "tjqihTb?":
            raise ValueError(f"column {c}: unknown kind {kind!r} (one of tjqihTb?)")
    out = bytearray(_SIGNATURE + bytes(8))
    for r, row in enumerate(rows):
        if len(row) != len(kinds):
            raise ValueError(f"row {r}: {len(row)} values for {len(kinds)} columns")
        out += struct.pack(">h", len(kinds))
        for c, (kind, value) in enumerate(zip(kinds, row, strict=True)):
            if value is None:
                out += b"\xff\xff\xff\xff"
            else:
                out += _field(kind, value, r, c)
    out += b"\xff\xff"
    return bytes(out)


def _field(kind: str, value: Any, r: int, c: int) -> bytes:
    where = f"row {r} column {c}"
    if kind in "tj":
        if type(value) is not str:
            raise TypeError(f"{where}: expected str, got {type(value).__name__}")
        data = (b"\x01" if kind == "j" else b"") + value.encode()
        return struct.pack(">i", len(data)) + data
    if kind in _RANGES:
        if type(value) is not int:
            raise TypeError(f"{where}: expected int, got {type(value).__name__}")
        low, high = _RANGES[kind]
        if not low <= value <= high:
            raise OverflowError(f"{where}: {value} out of range")
        return struct.pack(_FORMATS[kind], struct.calcsize(_FORMATS[kind]) - 4, value)
    if kind == "T":
        if not isinstance(value, dt.datetime):
            raise TypeError(f"{where}: expected datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise TypeError(f"{where}: naive datetime for timestamptz")
        return struct.pack(">iq", 8, (value - _EPOCH) // dt.timedelta(microseconds=1))
    if kind == "b":
        if type(value) is not bytes:
            raise TypeError(f"{where}: expected bytes, got {type(value).__name__}")
        return struct.pack(">i", len(value)) + value
    if type(value) is not bool:
        raise TypeError(f"{where}: expected bool, got {type(value).__name__}")
    return b"\x00\x00\x00\x01" + (b"\x01" if value else b"\x00")


def decode(payload: bytes, kinds: str) -> list[tuple[Any, ...]]:
    """The rows of a binary COPY ``payload`` of columns of ``kinds`` (``encode``'s inverse)."""
    view = memoryview(payload)
    if bytes(view[:11]) != _SIGNATURE:
        raise ValueError("not a binary COPY payload")
    pos = 19 + struct.unpack_from(">i", view, 15)[0]
    rows: list[tuple[Any, ...]] = []
    while True:
        (count,) = struct.unpack_from(">h", view, pos)
        pos += 2
        if count == -1:
            return rows
        if count != len(kinds):
            raise ValueError(f"row {len(rows)}: {count} values for {len(kinds)} columns")
        row: list[Any] = []
        for kind in kinds:
            (size,) = struct.unpack_from(">i", view, pos)
            pos += 4
            if size == -1:
                row.append(None)
                continue
            data = bytes(view[pos : pos + size])
            pos += size
            row.append(_value(kind, data))
        rows.append(tuple(row))


def _value(kind: str, data: bytes) -> Any:
    if kind == "t":
        return data.decode()
    if kind == "j":
        return data[1:].decode()
    if kind in _FORMATS:
        return int.from_bytes(data, "big", signed=True)
    if kind == "T":
        return _EPOCH + dt.timedelta(microseconds=int.from_bytes(data, "big", signed=True))
    if kind == "b":
        return data
    if kind == "D":
        return _EPOCH.date() + dt.timedelta(days=int.from_bytes(data, "big", signed=True))
    if kind == "N":
        return _numeric(data)
    return data != b"\x00"


def _numeric(data: bytes) -> Decimal:
    """PostgreSQL's binary numeric (digit count, weight, sign, display scale, base-10000
    digits) as the Decimal of its value."""
    ndigits, weight, sign, _scale = struct.unpack_from(">hhHh", data)
    if sign == 0xC000:
        return Decimal("NaN")
    number = 0
    for digit in struct.unpack_from(f">{ndigits}h", data, 8):
        number = number * 10000 + digit
    return Decimal((int(sign == 0x4000), tuple(map(int, str(number))),
                    4 * (weight + 1 - ndigits)))
