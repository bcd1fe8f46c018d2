"""A delivery's outcome as ``source_offsets.result`` keeps it, for a replay to answer the same.

Kept by column rather than as a list of result objects: the record keys once each, and
every other field (status, amount, currency, reason, detail) once for the whole delivery
when all its records share the value, else as one list. A message of a hundred charged
records at one price is then its keys and four values, about a quarter of the JSON the
objects took — less for PostgreSQL to parse into jsonb in the commit, which every MQTT
message and HTTP request pays. ``decode`` reads both forms (rows stored before keep the
objects).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import msgspec

from billing_oss.core.contract import Counts, Outcome, RecordResult

_FIELDS = ("status", "reason", "detail", "amount", "currency")
_DEFAULTS: dict[str, str | None] = {"status": "charged"} | dict.fromkeys(_FIELDS[1:])
_GETTERS = tuple((name, attrgetter(name)) for name in _FIELDS)
Column = str | list[str | None] | None  # one value for every result, or one each


class _Columns(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A value per result (a list), or one value for all of them."""

    position: str
    counts: Counts
    keys: list[str | None]
    status: str | list[str] = "charged"
    reason: Column = None
    detail: Column = None
    amount: Column = None
    currency: Column = None


class _Either(msgspec.Struct, kw_only=True):
    """Either form, told apart by ``keys`` (columns) or ``results`` (objects)."""

    position: str
    counts: Counts
    replay: bool = False
    results: list[RecordResult] | None = None
    keys: list[str | None] | None = None
    status: str | list[str] = "charged"
    reason: Column = None
    detail: Column = None
    amount: Column = None
    currency: Column = None


_encode = msgspec.json.encode
_key = attrgetter("record_key")
_decoder = msgspec.json.Decoder(_Either)


def encode(outcome: Outcome) -> bytes:
    results = outcome.results
    columns: dict[str, Any] = {}
    for name, field in _GETTERS:
        values = list(map(field, results))  # in C: a message's worth per field
        # one value for all (the same object, mostly: a cheap comparison) is stored once
        first = values[0] if values else _DEFAULTS[name]
        columns[name] = first if values.count(first) == len(values) else values
    return _encode(_Columns(position=outcome.position, counts=outcome.counts,
                            keys=list(map(_key, results)), **columns))


def decode(raw: bytes) -> Outcome:
    """The outcome stored (``replay`` as it was stored: False)."""
    stored = _decoder.decode(raw)
    if stored.results is not None or stored.keys is None:
        return Outcome(position=stored.position, replay=stored.replay, counts=stored.counts,
                       results=stored.results or [])
    n = len(stored.keys)
    columns = [value if isinstance(value, list) else [value] * n
               for value in (stored.status, stored.reason, stored.detail, stored.amount,
                             stored.currency)]
    if any(len(column) != n for column in columns):
        raise ValueError(f"stored outcome of {stored.position!r}: columns of unequal length")
    return Outcome(position=stored.position, replay=False, counts=stored.counts, results=[
        RecordResult(record_key=key, status=status, reason=reason, detail=detail,
                     amount=amount, currency=currency)
        for key, status, reason, detail, amount, currency in zip(stored.keys, *columns,
                                                                 strict=True)])
