"""Message payloads: JSON or MessagePack, one record, a batch, or meter readings.

Shapes (the same in both encodings):

- one record: ``{"record_key": ..., "kind": ..., "event_time": ..., ...}`` (DESIGN.md §5b);
- a batch: ``{"records": [record, ...]}`` or a bare array ``[record, ...]``;
- a meter reading: ``{"meter": "M-1", "reading": "1234.5", "unit": "kWh", "ts": ...}``, or
  ``{"readings": [reading, ...]}``; readings become usage in ``adapters.meters``.

A record may leave out ``source`` and ``kind`` (the transport supplies them: the topic, the
API key) and ``record_key`` (the transport derives a stable one from the message). A payload
that cannot be parsed at all raises ``DecodeError``; a batch entry that is not a valid record
becomes a ``Reject`` naming its index, and the other entries go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from operator import attrgetter
from typing import Any, Literal

import msgspec

from billing_oss.core.contract import Reject
from billing_oss.core.errors import DecodeError, Reason
from billing_oss.core.records import UsageRecord

Encoding = Literal["json", "msgpack"]
CONTENT_TYPES: dict[str, Encoding] = {
    "application/json": "json",
    "application/msgpack": "msgpack",
    "application/x-msgpack": "msgpack",
    "application/vnd.msgpack": "msgpack",
}


class RecordIn(UsageRecord, kw_only=True, omit_defaults=True):
    """A record as a device sends it: the transport fills what it leaves out."""

    record_key: str = ""
    source: str = ""
    kind: Literal["voice", "sms", "data", "event", ""] = ""  # type: ignore[assignment]


class Reading(msgspec.Struct, kw_only=True, frozen=True):
    """A cumulative register value. ``rollover``: the register wraps to 0 after this value;
    ``serial``: the physical meter (a new serial is a replacement starting at ``start``)."""

    meter: str
    reading: Decimal
    unit: str
    ts: str
    serial: str | None = None
    rollover: Decimal | None = None
    start: Decimal | None = None
    msisdn: str | None = None
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)


class _Shape(msgspec.Struct):
    records: list[RecordIn] | None = None
    readings: list[Reading] | None = None
    meter: str | None = None


class _RawShape(msgspec.Struct):
    records: list[msgspec.Raw] | None = None
    readings: list[msgspec.Raw] | None = None


@dataclass(slots=True)
class Decoded:
    records: list[RecordIn] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class _Codec:
    def __init__(self, module: Any) -> None:
        self.shape = module.Decoder(_Shape)
        self.raw_shape = module.Decoder(_RawShape)
        self.record = module.Decoder(RecordIn)
        self.records = module.Decoder(list[RecordIn])
        self.raw_list = module.Decoder(list[msgspec.Raw])
        self.reading = module.Decoder(Reading)


_CODECS: dict[Encoding, _Codec] = {"json": _Codec(msgspec.json), "msgpack": _Codec(msgspec.msgpack)}


def sniff(payload: bytes) -> Encoding:
    """JSON text starts with ``{``/``[`` (after blanks); anything else is taken as MessagePack."""
    head = payload.lstrip()[:1]
    return "json" if head in (b"{", b"[") else "msgpack"


# Nesting levels (objects and arrays, the envelope included) a payload may have. Only
# ``attrs`` nests freely; a bound keeps a hostile body from exhausting the decoder's stack.
MAX_DEPTH = 32


def decode(payload: bytes, encoding: Encoding | None = None) -> Decoded:
    """Parse a payload into records, readings and per-entry rejects."""
    enc = encoding or sniff(payload)
    if enc == "msgpack" and not _is_msgpack_container(payload):
        raise DecodeError(_not_a_payload(payload, sniffed=encoding is None))
    try:
        decoded = _decode(payload, enc)
    except RecursionError:  # far deeper than the bound: the parser gave up first
        raise DecodeError(f"the payload nests deeper than {MAX_DEPTH} levels (objects and"
                          f" arrays); at most {MAX_DEPTH} are accepted") from None
    _check_depth(decoded, _record_level(payload, enc, decoded))
    return decoded


def _record_level(payload: bytes, enc: Encoding, decoded: Decoded) -> int:
    """How deep a record (or reading) object sits: 1 alone, 2 in a bare array, 3 in
    ``{"records": [...]}``."""
    if _is_array(payload, enc):
        return 2
    one = len(decoded.records) + len(decoded.readings) + len(decoded.rejects) == 1
    return 1 if one and _is_single(payload, enc) else 3


def _is_single(payload: bytes, enc: Encoding) -> bool:
    try:
        shape = _CODECS[enc].raw_shape.decode(payload)
    except msgspec.MsgspecError:
        return True
    return shape.records is None and shape.readings is None


_attrs_of = attrgetter("attrs")
_CONTAINER_TYPES = frozenset({dict, list})


def _check_depth(decoded: Decoded, level: int) -> None:
    """Refuse a payload whose ``attrs`` nest the whole deeper than ``MAX_DEPTH``."""
    room = MAX_DEPTH - level  # levels left for an attrs object and what it holds
    groups: tuple[tuple[str, list[dict[str, Any]]], ...] = (
        ("records", list(map(_attrs_of, decoded.records))),
        ("readings", list(map(_attrs_of, decoded.readings))))
    for name, all_attrs in groups:
        # Most attrs are flat (one level, well within room): their values' types, gathered
        # in C, say so without walking each record's attrs in Python.
        if room >= 1 and not _CONTAINER_TYPES.intersection(map(type, chain.from_iterable(
                map(dict.values, all_attrs)))):
            continue
        for index, attrs in enumerate(all_attrs):
            if attrs and (depth := _nesting(attrs, room)) > room:
                where = f"{name}[{index}].attrs" if level > 1 else "attrs"
                raise DecodeError(
                    f"{where} nests the payload more than {MAX_DEPTH} levels deep (objects and"
                    f" arrays, at least {level + depth}); at most {MAX_DEPTH} are accepted")


def _nesting(value: Any, room: int) -> int:
    """Levels of objects/arrays in ``value`` (a scalar is 0), counted up to ``room + 1``."""
    if not isinstance(value, dict | list):
        return 0
    if room <= 0:
        return 1
    children = value.values() if isinstance(value, dict) else value
    deepest = 0
    for child in children:
        if isinstance(child, dict | list):
            deepest = max(deepest, _nesting(child, room - 1))
            if deepest >= room:
                break
    return 1 + deepest


def _decode(payload: bytes, enc: Encoding) -> Decoded:
    codec = _CODECS[enc]
    if _is_array(payload, enc):
        return _decode_list(payload, codec)
    try:
        shape = codec.shape.decode(payload)
    except msgspec.ValidationError:
        return _decode_entries(payload, codec)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not valid {_NAMES[enc]}: {exc}") from None
    if shape.records is not None:
        return Decoded(records=shape.records)
    if shape.readings is not None:
        return Decoded(readings=shape.readings)
    if shape.meter is not None:
        return _one(payload, codec.reading, "reading", lambda r: Decoded(readings=[r]))
    return _one(payload, codec.record, "record", lambda r: Decoded(records=[r]))


_NAMES: dict[Encoding, str] = {"json": "JSON", "msgpack": "MessagePack"}


def _is_msgpack_container(payload: bytes) -> bool:
    """A MessagePack map or array (what a record, a batch or readings encode to)."""
    return bool(payload) and (0x80 <= payload[0] <= 0x9F or payload[0] in _CONTAINERS)


_CONTAINERS = frozenset({0xDC, 0xDD, 0xDE, 0xDF})  # array 16/32, map 16/32


def _not_a_payload(payload: bytes, *, sniffed: bool) -> str:
    """Say what was expected: plain text taken for MessagePack reads as a stray integer."""
    expected = ("a JSON object or array, or a MessagePack map or array" if sniffed
                else "a MessagePack map or array")
    start = payload[:24]
    got = "an empty payload" if not payload else f"one starting with {start!r}"
    return f"expected {expected} (a record, a batch or readings); got {got}"


def _is_array(payload: bytes, enc: Encoding) -> bool:
    if enc == "json":
        return payload.lstrip()[:1] == b"["
    return bool(payload) and (0x90 <= payload[0] <= 0x9F or payload[0] in (0xDC, 0xDD))


def _decode_list(payload: bytes, codec: _Codec) -> Decoded:
    try:
        return Decoded(records=codec.records.decode(payload))
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not a valid array of records: {exc}") from None
    try:
        raws = codec.raw_list.decode(payload)
    except msgspec.DecodeError as exc:  # an entry failed validation before the syntax error
        raise DecodeError(f"not a valid array of records: {exc}") from None
    return _per_entry(raws, codec.record, "", Decoded().records, [])


def _decode_entries(payload: bytes, codec: _Codec) -> Decoded:
    """Slow path when something in the payload has the wrong type: find which entry."""
    try:
        raw = codec.raw_shape.decode(payload)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"not a record, batch or reading: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed payload: {exc}") from None
    out = Decoded()
    if raw.records is not None:
        return _per_entry(raw.records, codec.record, "records", out.records, out.rejects, out)
    if raw.readings is not None:
        return _per_entry(raw.readings, codec.reading, "readings", out.readings, out.rejects, out)
    kind = "reading" if _has_meter(payload, codec) else "record"
    decoder = codec.reading if kind == "reading" else codec.record
    try:
        decoder.decode(payload)
    except msgspec.ValidationError as exc:
        out.rejects.append(Reject(reason=Reason.BAD_FIELD, detail=f"{kind}: {exc}",
                                  raw=payload, where=_where(exc)))
    return out


def _has_meter(payload: bytes, codec: _Codec) -> bool:
    try:
        return codec.shape.decode(payload).meter is not None
    except msgspec.ValidationError as exc:
        return "$.meter" in str(exc)


def _per_entry(raws: list[msgspec.Raw], decoder: Any, name: str, good: list[Any],
               rejects: list[Reject], out: Decoded | None = None) -> Decoded:
    for index, raw in enumerate(raws):
        try:
            good.append(decoder.decode(raw))
        except msgspec.ValidationError as exc:
            where = f"{name}[{index}]" if name else f"[{index}]"
            rejects.append(Reject(reason=Reason.BAD_FIELD, detail=f"{where}: {exc}",
                                  raw=bytes(raw), where=where))
    if out is not None:
        return out
    return Decoded(records=good, rejects=rejects)


def _one(payload: bytes, decoder: Any, kind: str, wrap: Callable[[Any], Decoded]) -> Decoded:
    try:
        return wrap(decoder.decode(payload))
    except msgspec.ValidationError as exc:
        return Decoded(rejects=[Reject(reason=Reason.BAD_FIELD, detail=f"{kind}: {exc}",
                                       raw=payload, where=_where(exc))])


def _where(exc: msgspec.ValidationError) -> str | None:
    _, sep, path = str(exc).rpartition(" - at `")
    return path.rstrip("`") if sep else None


def complete(records: list[RecordIn], *, source: str, kind: str | None,
             key_prefix: str | None, own_sources: bool = False) -> list[Reject]:
    """Fill what the transport supplies, in place; records still missing a field, or naming
    another source than the transport's, are rejected (and removed from ``records``).
    ``own_sources``: the records' sources stand (CloudEvents name theirs; the caller
    checked them against the sender's)."""
    rejects: list[Reject] = []
    kept = 0
    for index, record in enumerate(records):
        # the transport's source is authoritative: a sender may not write another's keys
        foreign = (record.source if record.source and record.source != source
                   and not own_sources else None)
        if not record.source:
            record.source = source
        if not record.kind and kind in _KINDS:
            record.kind = kind  # type: ignore[assignment]
        if not record.record_key and key_prefix is not None:
            record.record_key = f"{key_prefix}#{index}"
        problem = (f"source {foreign!r} is not this sender's source {source!r}" if foreign
                   else "record_key is required (or send an Idempotency-Key)"
                   if not record.record_key
                   else "kind is required (voice, sms, data or event)" if not record.kind
                   else None)
        if problem is None:
            records[kept] = record
            kept += 1
        else:
            rejects.append(Reject(reason=Reason.BAD_FIELD, detail=f"records[{index}]: {problem}",
                                  raw=msgspec.json.encode(record), where=f"records[{index}]"))
    del records[kept:]
    return rejects


_KINDS = frozenset({"voice", "sms", "data", "event"})
